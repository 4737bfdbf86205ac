"""The renewal pipeline's use cases (LC-3), one door per stage the `renewal` flow takes.

Each takes the `Services` and ids (plain values), owns its transaction (or composes doors that
do), and returns a frozen outcome from `certpilot.core.outcomes` whose enum says what happened.
Normal outcomes are results: an order awaiting payment is a `RenewalStep` in state
AWAITING_PAYMENT, a DNS record a human must add is a `SubmitOutcome` of kind MANUAL_DNS with the
records as data, a review that goes on is a `ReviewOutcome` UNDER_REVIEW. Exceptions are left
for refusals (a rule said no) and failures (transient ones are retried by the tasks).

The stages, in the design card's order: `entry` (where a run starts from the database state),
`renew`/`pay` (payment), `prepare` (csr), `submit` (validation), `wait_review` (ca-review), the
deployment doors of `deployments` (deploy), `verify`. The Prefect tasks in `tasks/pipeline.py`
are one call each into this module (or into the doors of `orders`, `deployments`,
`emergency`, `importing`); nothing here knows of Prefect.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from certpilot.adapters.dns.checks import wait_until_visible
from certpilot.adapters.dns.manual import ManualActionRequired, ManualRecord
from certpilot.adapters.http01.manual import ManualFileRequired
from certpilot.adapters.issuers.base import OrderStatus
from certpilot.adapters.probe.scale import verify_served
from certpilot.core.deployment import DeploymentState, default_endpoints
from certpilot.core.errors import PermanentError, TransientError
from certpilot.core.models import Certificate, Contact, CsrMode, Status, ValidationMethod
from certpilot.core.outcomes import (
    ApplicationStatus,
    DnsRecord,
    EntryStage,
    FileToPlace,
    KeyAndCsrMade,
    RenewalEntry,
    RenewalStep,
    ReviewOutcome,
    SubmitKind,
    SubmitOutcome,
    VerifyOutcome,
)
from certpilot.core.plans import submits_first_now
from certpilot.core.status import derive_status
from certpilot.core.verification import TrustFault
from certpilot.operations import applications, deployments, notices, orders, runs, validation
from certpilot.operations.scan import CA_REJECTED, record_notice
from certpilot.store.repository import Repository

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from certpilot.runtime import Services

log = logging.getLogger(__name__)


Gate = Callable[[tuple[str, ...]], AbstractContextManager[object]]
"""A caller's limit on concurrent calls to remote APIs: given the names of the limits a call
needs (`api_limits`), a context manager held around the call (the tasks pass Prefect's global
concurrency; this module never knows of Prefect)."""

CA_LIMIT = "certpilot-ca-api"
"""The limit on calls to a remote CA's API (ACME rate limits are per account)."""
DNS_LIMIT = "certpilot-dns-api"
"""The limit on DNS provider API writes (Route 53 throttles at 5 requests/s; RFC 2136 updates)."""
API_LIMITS = {CA_LIMIT: 4, DNS_LIMIT: 4}
"""Default slots of each limit (created by `certpilot setup`/`certpilot up`)."""
_DNS_API_METHODS = frozenset({ValidationMethod.DNS_AUTO, ValidationMethod.DELEGATED})
"""Validation methods whose records a DNS provider writes through its API (DV-2); a manual
record (DV-3) or an HTTP file calls no DNS API."""


def _no_gate(_names: tuple[str, ...]) -> AbstractContextManager[object]:
    return nullcontext()


def api_limits(issuer: object, cert: Certificate, stage: str) -> tuple[str, ...]:
    """The remote-API limits a stage's calls need for a certificate: none for an issuer that says
    it calls no remote API (`remote_api = False`: the embedded private CA signs locally); for any other issuer
    the CA's limit, and in the validation stage the DNS provider's when the records are written
    through a provider's API (DNS-01 by a provider, or delegated).

    Args:
        issuer: the issuer the stage calls (`Services.issuer_for`).
        cert: the certificate applied for.
        stage: "validation" or "ca-review".
    """
    if not getattr(issuer, "remote_api", True):  # an issuer that does not say so is remote: limited
        return ()
    if stage == "validation" and cert.validation_method in _DNS_API_METHODS:
        return (CA_LIMIT, DNS_LIMIT)
    return (CA_LIMIT,)


# ---------------------------------------------------------------- where a run starts

_APPLYING = frozenset({Status.NOT_ACTIVATED, Status.PENDING_APPLICATION, Status.UNDER_REVIEW, Status.REJECTED})
"""States whose next step is the application (a not-activated one is refused there, PL-4)."""


def common_name(svc: Services, certificate_id: str) -> str:
    """The certificate's common name (what a renewal run is named after), in one short read.

    Raises:
        NotFoundError: no such certificate.
    """
    with svc.session(readonly=True) as s:
        return Repository(s).certificate_model(certificate_id).common_name


def entry(svc: Services, certificate_id: str) -> RenewalEntry:
    """Where a `renewal` run starts for a certificate, from its database state (re-entrancy).

    Pending, under review or rejected: the application (a rerun after a crash, a managed start,
    a purchase, a resubmission). An issued successor (it has a parent) not yet deployed where
    its predecessor served (`_deployment_unfinished`), or not due for renewal itself:
    deployment (nothing left to deploy: the verify stage only). Otherwise the certificate is the
    active one: its renewal order is placed or found again (PAYMENT; a rerun finds the same
    order and goes on to its certificate; a certificate not due is refused there, saying when
    renewal opens).

    Raises:
        NotFoundError: no such certificate.
    """
    with svc.session(readonly=True) as s:
        cert = Repository(s).certificate_model(certificate_id)
        if cert.state in _APPLYING:
            stage = EntryStage.APPLICATION
        elif cert.state is Status.ISSUED and cert.parent_id is not None and (
                _deployment_unfinished(s, cert) or derive_status(cert, svc.now(), svc.policy) is Status.VALID):
            stage = EntryStage.DEPLOYMENT
        else:
            stage = EntryStage.PAYMENT
    return RenewalEntry(certificate_id=cert.id, common_name=cert.common_name, state=cert.state, stage=stage)


def start(svc: Services, certificate_id: str, flow_run_id: str) -> RenewalEntry:
    """Where a `renewal` run starts for a certificate (`entry`), and the run's claim on it
    (`runs.claim`: the scanner tells a live run from a dead one by it), in one call.

    Raises:
        NotFoundError: no such certificate (nothing claimed).
        BadInputError: no flow run id (called outside a flow run).
    """
    found = entry(svc, certificate_id)
    runs.claim(svc, certificate_id, flow_run_id)
    return found


def claim(svc: Services, certificate_id: str, flow_run_id: str) -> None:
    """The run's claim on the certificate it now works on (the order's new one, after payment).

    Raises:
        BadInputError: no flow run id (called outside a flow run).
    """
    runs.claim(svc, certificate_id, flow_run_id)


def _deployment_unfinished(session: Session, cert: Certificate) -> bool:
    """DEP-1/DEP-2: an issued certificate that replaces another and is not yet everywhere the
    other served: one of its deployment tasks did not succeed, or a target still sits with its
    parent or an earlier certificate of its plan without a task of its own (a deployment that
    succeeds moves its target to the new certificate, so nothing left behind means done)."""
    tasks = deployments.list_tasks(session, cert.id)
    if any(t.state not in (DeploymentState.SUCCEEDED, DeploymentState.UNVERIFIED) for t in tasks):
        return True
    planned = {t.target_id for t in tasks}
    repo = Repository(session)
    earlier = [c.id for c in repo.certificates_for_order(cert.order_id)
               if c.plan_index < cert.plan_index] if cert.order_id else []
    return any(t.id not in planned for holder in (*earlier, cert.parent_id)
               for t in deployments.targets_of(session, holder))


# ---------------------------------------------------------------- stage 1: order and payment


def _step(result: orders.OrderResult) -> RenewalStep:
    order = result.order
    return RenewalStep(certificate_id=order.certificate_id, order_id=order.id, state=order.state,
                       certificate_ids=result.certificate_ids, shortfall=result.shortfall,
                       message=result.pending.message if result.pending is not None else "",
                       managed_fee=order.managed_fee, submit_first_now=submits_first_now(order.managed_fee))


def renew(svc: Services, certificate_id: str, *, years: int, csr_mode: CsrMode | str = CsrMode.SYSTEM,
          actor: str = "flow:renewal", csr_pem: str | None = None) -> RenewalStep:
    """Place (or find again) the renewal order of a certificate and pay it from quota (PAY-1).

    A rerun of the same attempt finds the same order; after a declined or cancelled order the
    next attempt places a new one (`core.payment.renewal_attempt_key`, PAY-4). A private-CA
    certificate's order is its reissue at no quota (EL-4).

    Args:
        certificate_id: the certificate to renew.
        years: 1, 2 or 3 (PL-1, PL-2).
        csr_mode: system | reuse | manual (CSR-1..CSR-3; `PLAN_MODE`: system for a new order).
        actor: who is acting, for the audit trail.
        csr_pem: the CSR of a manual renewal (CSR-2), checked and kept with the order.

    Returns:
        The step: PAID with the new certificate ids, or AWAITING_PAYMENT with the shortfall and
        the sentence saying what to approve (nothing debited).

    Raises:
        RefusedError: a rule refused (EL, PL years, CSR, ALREADY_RENEWED); nothing written.
        NotFoundError: no such certificate.
    """
    mode = CsrMode.SYSTEM if csr_mode == PLAN_MODE else CsrMode(csr_mode)
    return _step(orders.renew(svc, certificate_id, years=years, csr_mode=mode, rerun_safe=True, actor=actor,
                              csr_pem=csr_pem.encode() if csr_pem else None))


def pay(svc: Services, order_id: str, *, approve: bool, actor: str) -> RenewalStep:
    """Approve or decline an order's shortfall (the payment form's answer), exactly once (PAY-4).

    Returns:
        The step: PAID with the new certificate ids, or DECLINED (nothing debited).

    Raises:
        NotFoundError: no such order.
        RefusedError: ORDER_CLOSED (approving an expired, declined or cancelled order; declining a
            cancelled or expired one), ORDER_PAID (declining a paid order): nothing changed.
    """
    return _step(orders.pay(svc, order_id, approve=approve, actor=actor))


# ---------------------------------------------------------------- stage 2: key, CSR, CA


def application_status(svc: Services, certificate_id: str) -> ApplicationStatus:
    """Where a certificate stands for stage 2 (state, application, contact, key held, attempt).

    Raises:
        RefusedError: nothing to apply for (PL-4, LC-5), saying what to do instead.
        NotFoundError: no such certificate.
    """
    with svc.session(readonly=True) as s:
        status = applications.status(s, certificate_id)
        return status.model_copy(update={"attempt": _attempt(Repository(s), certificate_id)})


def _attempt(repo: Repository, certificate_id: str) -> int:
    """Which application of the certificate is current: 1 + its rejections (its REJECTED moves
    in the audit trail, as `applications.record_rejection` counts them)."""
    return 1 + sum(1 for a in repo.audit(certificate_id)
                   if a.entity_type == "certificate" and a.to_state == Status.REJECTED.value)


PLAN_MODE = "plan"
"""A run's `csr_mode` that means "the mode of the certificate's plan" (CSR-3: the mode chosen at
order time carries to every certificate of the plan; system for a certificate outside one)."""


def csr_mode_of(svc: Services, certificate_id: str, csr_mode: CsrMode | str) -> CsrMode:
    """CSR-1..CSR-3: the mode to make a certificate's key and CSR with: the one given, or for
    `PLAN_MODE` the mode its order was placed with (system outside an order)."""
    if csr_mode != PLAN_MODE:
        return CsrMode(csr_mode)
    with svc.session(readonly=True) as s:
        repo = Repository(s)
        cert = repo.certificate_model(certificate_id)
        return repo.get_order(cert.order_id).csr_mode if cert.order_id else CsrMode.SYSTEM


def prepare(svc: Services, certificate_id: str, csr_mode: CsrMode | str = CsrMode.SYSTEM, *,
            actor: str = "flow:renewal", csr_pem: str | None = None) -> ApplicationStatus:
    """The csr stage: start a rejected application over (CA-2), then make the key and CSR
    (CSR-1..CSR-5) unless the CA's contact must be asked for first (DV-6: `asks_contact`; call
    again once it is set). Re-entrant: an existing key and CSR are kept.

    Returns:
        Where the certificate stands afterwards.

    Raises:
        RefusedError: nothing to apply for (PL-4, LC-5), or the CSR fails its check (CSR-4).
        NotFoundError: no such certificate.
    """
    with svc.session() as s:
        applications.submit_by_hand(s, certificate_id, now=svc.now(), actor=actor)
    status = application_status(svc, certificate_id)
    if status.state is Status.REJECTED:
        status = resubmit(svc, certificate_id, actor=actor)
    if status.needs_key and not status.asks_contact:
        create_key_and_csr(svc, certificate_id, csr_mode_of(svc, certificate_id, csr_mode), actor=actor,
                           csr_pem=csr_pem)
        status = application_status(svc, certificate_id)
    return status


def resubmit(svc: Services, certificate_id: str, *, actor: str = "flow:renewal") -> ApplicationStatus:
    """CA-2: start a rejected application over (the next steps make a new key, CSR and CA order).

    Returns:
        The certificate's status after it went back to PENDING_APPLICATION.

    Raises:
        IllegalTransitionError: the certificate is not REJECTED.
    """
    with svc.session() as s:
        applications.resubmit(s, certificate_id, now=svc.now(), actor=actor)
    return application_status(svc, certificate_id)


def create_key_and_csr(svc: Services, certificate_id: str, csr_mode: CsrMode | str = CsrMode.SYSTEM, *,
                       actor: str = "flow:renewal", csr_pem: str | None = None) -> KeyAndCsrMade:
    """CSR-1..CSR-5: the certificate's key (sealed into the vault) and its checked CSR.

    Idempotent: an existing CSR is returned. Only ids and fingerprints come back.

    Raises:
        RefusedError: the CSR fails its check (CSR-4), or REUSE without the original key (CSR-3).
    """
    with svc.session() as s:
        made = applications.create_key_and_csr(s, certificate_id, CsrMode(csr_mode), vault=svc.vault,
                                               now=svc.now(), actor=actor,
                                               csr_pem=csr_pem.encode() if csr_pem else None)
    return KeyAndCsrMade(certificate_id=made.certificate_id, key_id=made.key_id,
                         public_fingerprint=made.public_fingerprint, key_held=made.key_held,
                         warnings=tuple(w.message for w in made.warnings))


def _record(r: ManualRecord) -> DnsRecord:
    return DnsRecord(fqdn=r.fqdn, type=r.type, value=r.value, ttl=r.ttl, action=r.action, zone_line=r.zone_line,
                     instruction=r.instruction)


_SUBMIT_KIND = {OrderStatus.VALID: SubmitKind.ISSUED, OrderStatus.INVALID: SubmitKind.REJECTED}
"""What the CA's order status means for the certificate; any other status: still under review."""


def submit(svc: Services, certificate_id: str, *, emergency: bool = False, gate: Gate = _no_gate,
           actor: str = "flow:renewal") -> SubmitOutcome:
    """Submit (or resume) the CA application and drive validation (CA-1, DV-2, DV-3, DV-7).

    A sequence of short transactions of its own (`applications.submit` over `svc.session`), the
    CA called between them: the order reference is committed before any challenge is answered,
    so a rerun resumes the same CA order. When a human must add a DNS record (DV-3: no provider
    writes the zone), the outcome is MANUAL_DNS with the records as data; submit again once they
    are served. A rejection is told to the owner once (`_tell_rejection`).

    Issuers: a new order goes to the certificate's issuer (`Services.issuer_chain`); when it
    cannot take the order (TransientError or PermanentError before an order exists: the CA is
    down, refuses the order, or rate-limits beyond what a worker waits), the next fallback is
    tried, recorded in the audit trail and told to the operator (`notices.issuer_fallback`). An
    order that exists is followed at the issuer that placed it. A long Retry-After with no
    fallback left is RETRY_LATER with `retry_at` (nothing asked of the CA before then).

    Args:
        emergency: submit through the emergency issuer (EM-1) instead of the certificate's own;
            a temporary certificate (EM-2) always goes there, whoever resumes it.
        gate: held once around the whole sequence of calls to the CA (and the DNS provider)
            when `api_limits` names limits for it; never entered for the embedded private CA.

    Raises:
        RefusedError: CONTACT_REQUIRED (DV-6), or the issuer's refusals (DV-4, DV-7); nothing
            was placed at the CA.
        TransientError: retry later (the rerun resumes the same order), or the CA rejected it
            and no channel delivered the owner's notice (the rejection was not kept: the rerun
            asks the CA again and tells the owner then).
    """
    with svc.session(readonly=True) as s:
        cert = Repository(s).certificate_model(certificate_id)
        ordered = applications.application_state(s, certificate_id)
    emergency = emergency or cert.temporary
    placed = ordered is not None and bool(ordered["order_ref"])
    if placed:  # an order exists: follow it where it was placed
        chain = [(svc.issuer_ref(issuer), issuer) for issuer in (svc.issuer_for(cert, emergency=emergency),)]
    else:
        chain = svc.issuer_chain(cert, emergency=emergency)
    for index, (ref, issuer) in enumerate(chain):
        try:
            out = _submit_to(svc, cert, ref, issuer, gate=gate, actor=actor, placed=placed)
        except (TransientError, PermanentError) as exc:
            if index + 1 >= len(chain) or _order_placed(svc, certificate_id):
                if isinstance(exc, PermanentError):
                    _tell_refused(svc, certificate_id, ref, exc)
                raise
            _tell_fallback(svc, certificate_id, ref, chain[index + 1][0], exc)
            continue
        if out.kind is SubmitKind.RETRY_LATER and index + 1 < len(chain) and not out.order_ref:
            _tell_fallback(svc, certificate_id, ref, chain[index + 1][0],
                           TransientError(f"{out.detail} (retry at {out.retry_at:%Y-%m-%d %H:%M}Z)"))
            _unpark(svc, certificate_id)
            continue
        return out
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def _submit_to(svc: Services, cert: Certificate, ref: str, issuer, *, gate: Gate, actor: str,
               placed: bool = False) -> SubmitOutcome:
    """One issuer's turn at the application (see `submit`); `placed`: its order existed when
    `submit` read the application (a resumed submission: nothing to decide, no write)."""
    certificate_id = cert.id
    if not placed and getattr(issuer, "validates_domains", True):
        with svc.session() as s:
            app = applications.application_state(s, certificate_id)
            if app is not None and app["order_ref"] is None:
                # DV-1..DV-4: decided when the CA order is about to be placed (the policy may have changed).
                validation.record_method(s, certificate_id, dns_writable=svc.dns_writable, delegated=svc.delegated,
                                         http_responder=svc.http01 is not None, now=svc.now(), actor=actor)
                cert = Repository(s).certificate_model(certificate_id)
    limits = api_limits(issuer, cert, "validation")
    try:
        with gate(limits) if limits else nullcontext():
            res = applications.submit(svc.session, certificate_id, issuer, now=svc.now(), actor=actor,
                                      on_rejected=partial(_tell_rejection, svc), rules=(svc.policy, svc.schedule),
                                      issuer_ref=ref)
    except ManualActionRequired as exc:
        return SubmitOutcome(certificate_id=certificate_id, kind=SubmitKind.MANUAL_DNS,
                             records=tuple(_record(r) for r in exc.records), issuer=ref)
    except ManualFileRequired as exc:
        return SubmitOutcome(certificate_id=certificate_id, kind=SubmitKind.MANUAL_FILE,
                             files=tuple(FileToPlace(url=f.url, path=f.path, content=f.content,
                                                     instruction=f.instruction) for f in exc.files), issuer=ref)
    if res.retry_at is not None:
        return SubmitOutcome(certificate_id=certificate_id, kind=SubmitKind.RETRY_LATER, order_ref=res.order_ref,
                             detail=res.detail, resumed=res.resumed, retry_at=res.retry_at, issuer=ref)
    kind = _SUBMIT_KIND.get(res.status, SubmitKind.UNDER_REVIEW)
    if kind is SubmitKind.ISSUED:
        _emit_issued(svc, certificate_id)
    return SubmitOutcome(certificate_id=certificate_id, kind=kind, order_ref=res.order_ref, detail=res.detail,
                         resumed=res.resumed, issuer=ref)


def _emit_issued(svc: Services, certificate_id: str) -> None:
    """Prefect events `certpilot.certificate.issued`, and `renewed` for a successor (it has a
    parent). At least once: a rerun that finds the certificate issued may emit them again."""
    with svc.session(readonly=True) as s:
        cert = Repository(s).certificate_model(certificate_id)
    facts = {"fingerprint": cert.fingerprint_sha256, "not_after": cert.not_after.isoformat() if cert.not_after else None,
             "serial": cert.serial, "names": list(cert.names), "parent_id": cert.parent_id}
    svc.emit("issued", certificate_id=cert.id, common_name=cert.common_name, **facts)
    if cert.parent_id is not None:
        svc.emit("renewed", certificate_id=cert.id, common_name=cert.common_name, **facts)


def _order_placed(svc: Services, certificate_id: str) -> bool:
    with svc.session(readonly=True) as s:
        state = applications.application_state(s, certificate_id)
    return bool(state and state["order_ref"])


def _unpark(svc: Services, certificate_id: str) -> None:
    """A fallback takes the order the parked issuer would not: its "retry at" no longer applies."""
    with svc.session() as s:
        applications.unpark(s, certificate_id)


def _tell_refused(svc: Services, certificate_id: str, issuer: str, exc: PermanentError) -> None:
    """CA-2/NT-2: the CA refused the application outright (no fallback left): the owner hears the
    CA's own words once per distinct refusal (a rerun refused the same way tells nothing again).
    A channel that fails is not the run's failure: the CA's refusal is what the run ends with."""
    detail = f"{issuer} answered: {exc.message}"
    try:
        notify_human_step(svc, certificate_id, "the CA refused the application",
                          f"{detail}. Fix what it names (or choose another issuer: `certpilot policy "
                          f"{certificate_id} --issuer NAME`), then run the renewal again.",
                          key=f"ca-refused-{_key_number(detail)}")
    except Exception:  # noqa: BLE001 - the refusal itself is raised by the caller
        log.warning("the owner of %s could not be told that %s refused the application", certificate_id, issuer)


def _tell_fallback(svc: Services, certificate_id: str, failed: str, used: str, exc: Exception) -> None:
    """Record (audit) and tell the operator that `used` is tried because `failed` could not take
    the order; a channel that fails does not stop the fallback (the inbox always has it)."""
    why = getattr(exc, "message", str(exc))
    with svc.session() as s:
        Repository(s).record_audit("certificate", certificate_id, actor="issuer-fallback", now=svc.now(),
                                   why=f"issuer {failed} could not take the order ({why}); falling back to {used}")
        event = notices.issuer_fallback(s, certificate_id, failed, used, why, now=svc.now())
        notices.send(svc, event, session=s)


def follow_review(svc: Services, certificate_id: str, at: datetime | None = None, *, gate: Gate = _no_gate,
                  actor: str = "flow:renewal") -> ReviewOutcome:
    """CA-2: poll the CA once for an application under review; no process is held.

    The one door for both callers: the renewal's ca-review stage (`wait_review`) and the
    scanner following a long one (each caller limits its concurrent calls to the CA's API). Still pending: nothing
    changes; issued: collected (ISSUED: deploy it); rejected: REJECTED with the CA's detail, and
    the owner is told once (`_tell_rejection`). A certificate not under review (a rejection
    `submit` already recorded and told, say) is reported as it is, without asking the CA.

    Args:
        at: the instant recorded as the time of the change (default the services' clock).
        gate: held around the poll when `api_limits` names limits for the certificate's CA
            (never for the embedded private CA).
        actor: who follows, for the audit trail ("scanner" from the scan).

    Raises:
        TransientError: the CA could not be reached, or the rejection notice reached no channel
            (nothing kept: the next try polls again).
        NotFoundError: no such certificate.
    """
    with svc.session(readonly=True) as s:
        cert = Repository(s).certificate_model(certificate_id)
    if cert.state is not Status.UNDER_REVIEW:
        return ReviewOutcome(certificate_id=certificate_id, state=cert.state)
    issuer = svc.issuer_for(cert, emergency=cert.temporary)
    limits = api_limits(issuer, cert, "ca-review")
    with gate(limits) if limits else nullcontext():
        res = applications.refresh(svc.session, certificate_id, issuer, now=at or svc.now(), actor=actor,
                                   on_rejected=partial(_tell_rejection, svc), rules=(svc.policy, svc.schedule))
    with svc.session(readonly=True) as s:
        state = Repository(s).certificate_model(certificate_id).state
    if state is Status.ISSUED:  # it was under review before this poll
        _emit_issued(svc, certificate_id)
    return ReviewOutcome(certificate_id=certificate_id, state=state, detail=res.detail, polled=True)


REVIEW_POLL_FIRST = 0.2
"""Seconds before the second poll of a review; each next wait is 1.5 times longer."""
REVIEW_POLL_MAX = 15.0
"""The longest wait between two polls of a review (seconds)."""
REVIEW_HOLD_MAX = 2.0
"""The longest wait between two polls across which the CA's API slot stays held (seconds):
taking a slot costs about that much (a write on the orchestration server), so a burst of quick
polls is one acquisition; before a longer wait the slot is given back."""


def wait_review(svc: Services, certificate_id: str, *, gate: Gate = _no_gate,
                actor: str = "flow:renewal") -> ReviewOutcome:
    """The ca-review stage: follow the CA's review (`follow_review`) for at most
    `svc.poll_seconds`, polling after 0.2 s, then 1.5 times longer each time (at most 15 s).

    A review of minutes ends here; a longer one (OV/EV, CA-1) is returned UNDER_REVIEW, with the
    application's attempt, for the caller to leave to the scanner: no process waits for days.

    Args:
        gate: the caller's limit on concurrent calls to the CA's API, entered only when
            `api_limits` names one (never for the embedded private CA): taken once for a burst
            of polls and given back before a wait longer than `REVIEW_HOLD_MAX`.
        actor: who follows, for the audit trail.

    Raises:
        TransientError: the CA could not be reached, or a rejection notice reached no channel.
        NotFoundError: no such certificate.
    """
    with svc.session(readonly=True) as s:
        cert = Repository(s).certificate_model(certificate_id)
    limits = api_limits(svc.issuer_for(cert, emergency=cert.temporary), cert, "ca-review")
    deadline = time.monotonic() + svc.poll_seconds
    delay = REVIEW_POLL_FIRST
    with ExitStack() as slot:
        held = False
        while True:
            if limits and not held:
                slot.enter_context(gate(limits))
                held = True
            out = follow_review(svc, certificate_id, actor=actor)
            left = deadline - time.monotonic()
            if out.state is not Status.UNDER_REVIEW or left <= 0:
                break
            wait = min(delay, left)
            if held and wait > REVIEW_HOLD_MAX:
                slot.close()
                held = False
            time.sleep(wait)
            delay = min(delay * 1.5, REVIEW_POLL_MAX)
    with svc.session(readonly=True) as s:
        return out.model_copy(update={"attempt": _attempt(Repository(s), certificate_id)})


def _tell_rejection(svc: Services, session: Session, rejection: applications.Rejection) -> None:
    """CA-2/NT-2: the one place a rejection is told to the owner, whichever path saw it
    (`submit`, the ca-review stage's polling, the scanner).

    Runs in the transaction that records the rejection. The notice is recorded in
    `notices_sent` keyed by (certificate, CA_REJECTED, the rejection's ordinal), so a rerun
    does not repeat it while an application resubmitted and rejected again is told again; then
    it is sent. If no channel delivers, the TransientError rolls back the notice and the
    rejection with it: the certificate stays UNDER_REVIEW and the next poll decides it again.
    """
    if record_notice(session, rejection.certificate_id, CA_REJECTED, rejection.ordinal,
                     f"order {rejection.order_ref}: {rejection.detail}", now=rejection.at):
        event = notices.ca_rejected(session, rejection.certificate_id, rejection.detail, now=rejection.at,
                                    more_info=rejection.more_info)
        notices.send(svc, event, session=session, must_deliver=True)


def wait_files_served(svc: Services, certificate_id: str, *, timeout: float = 30.0) -> int:
    """DV-3/NT-2: after the file-placement form, check over HTTP, as the CA will, that the files the
    certificate's current CA order needs are served (a submission again does the check and tells the
    CA only when they are); polled until `timeout`.

    Returns:
        How many submissions it took.

    Raises:
        RefusedError: FILE_NOT_SERVED, naming the URLs still missing, after `timeout`.
    """
    from certpilot.core.errors import Reason, Refusal, RefusedError

    deadline, tries = time.monotonic() + timeout, 0
    while True:
        tries += 1
        out = submit(svc, certificate_id)
        if out.kind is not SubmitKind.MANUAL_FILE:
            return tries
        if time.monotonic() >= deadline:
            raise RefusedError(Refusal(
                Reason.RECORD_NOT_VISIBLE,
                f"the validation file(s) are not served yet: {'; '.join(f.url for f in out.files)}; place them "
                f"as shown and run the renewal of {certificate_id} again (`certpilot apply {certificate_id}`)",
                "DV-3"))
        time.sleep(1.0)


def wait_records_visible(svc: Services, records: Sequence[DnsRecord], *, timeout: float = 30.0) -> float:
    """DV-3/DV-7: after a human added the records, wait until the zone's authoritative servers
    serve each one.

    Returns:
        Seconds waited in all.

    Raises:
        RefusedError: RECORD_NOT_VISIBLE at the deadline, naming the servers that lack a record.
    """
    waited = 0.0
    for r in records:
        if r.action == "add":
            waited += wait_until_visible(r.fqdn, r.value, svc.authoritative_for(r.fqdn), timeout)
    return waited


def set_contact(svc: Services, certificate_id: str, *, name: str, email: str, phone: str,
                actor: str = "ui") -> Contact:
    """DV-6: record the contact the CA verifies an OV/EV application with, and audit it, in one
    transaction.

    Returns:
        The contact recorded (the certificate's owner).

    Raises:
        NotFoundError: no such certificate.
    """
    contact = Contact(name=name, email=email, phone=phone)
    now = svc.now()
    with svc.session() as s:
        repo = Repository(s)
        repo.update_certificate(certificate_id, now=now, owner=contact)
        repo.record_audit("certificate", certificate_id, actor=actor, now=now,
                          why="CA verification contact set (DV-6)")
    return contact


# ---------------------------------------------------------------- stage 3: verify

VERIFY_DEADLINE = 10.0
"""Seconds the verify stage waits for every endpoint to serve the certificate."""


def verify(svc: Services, certificate_id: str) -> VerifyOutcome:
    """The verify stage (VER-1): probe every endpoint of every target the certificate is now
    deployed to (DEP-1: a target moves to it when its deployment succeeded) until each serves
    its fingerprint, or `VERIFY_DEADLINE` passes.

    A failed probe is a result here (`failures`), not an exception. VER-1 strict: an endpoint
    passes when it serves the certificate's fingerprint AND the chain verifies for its name, against
    the target's own trust bundle (the services' verifier's, plus the target's `trust` setting).

    Raises:
        NotFoundError: no such certificate.
    """
    with svc.session(readonly=True) as s:
        cert = Repository(s).certificate_model(certificate_id)
        # VER-1: a target without endpoints is probed at https://<name>:443; one marked not verifiable is not.
        targets = [(t, t.endpoints or default_endpoints(cert.names))
                   for t in deployments.targets_of(s, certificate_id) if t.verifiable]
    if not targets:
        return VerifyOutcome(certificate_id=certificate_id)
    by_trust = getattr(svc.verifier, "trust_for_spec", None)
    groups: dict[str | None, list] = {}
    for t, endpoints in targets:
        groups.setdefault(t.config.get("trust") if callable(by_trust) else None, []).extend(endpoints)
    served: list[str] = []
    failures: list[str] = []
    for spec, endpoints in groups.items():  # each target's endpoints against its own trust bundle
        trust = by_trust(spec) if callable(by_trust) else getattr(svc.verifier, "trust", None)
        report = verify_served(endpoints, cert.fingerprint_sha256, cert.not_after, deadline=VERIFY_DEADLINE,
                               trust=trust)
        served += [str(x.result.endpoint) for x in report.endpoints if x.verified]
        failures += [f"{x.result.endpoint}: {x.result.outcome.value}{_why(x.result.fault)}, "
                     f"serving {(x.result.fingerprint or 'nothing')[:16]}" for x in report.failures]
    return VerifyOutcome(certificate_id=certificate_id, served=tuple(served), failures=tuple(failures))


def _why(fault: TrustFault | None) -> str:
    return f" ({fault.value})" if fault not in (None, TrustFault.NONE) else ""


# ---------------------------------------------------------------- notices

HUMAN_STEP = "human_step"
"""`notices_sent.kind` of NT-2 "a step needs a human" told by a renewal run (threshold: the
step's key as a number, `_key_number`)."""


def _key_number(key: str) -> int:
    """A step key as the notice's 31-bit threshold (CRC-32): unique enough among the few human
    steps of one certificate, and an INTEGER column on SQLite and PostgreSQL alike."""
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


def notify_human_step(svc: Services, certificate_id: str, step: str, detail: str, *, key: str) -> bool:
    """NT-2: tell the owner a step needs a human (payment, a manual DNS record, the CA's contact),
    once per step.

    The notice is recorded in `notices_sent` keyed by (certificate, HUMAN_STEP, the step's key)
    and put in the inbox in one transaction, then sent through every channel; a run executed
    again after its form was answered, or a rerun after a crash, asks with the same key and
    tells nothing again. A channel that fails is logged by the services (the inbox has it).

    Args:
        step: what is needed, e.g. "payment approval", "manual DNS record".
        detail: what exactly to do (the record to add, the amount to approve).
        key: the step's stable key (e.g. ``payment-<order id>``), also the form's pause key.

    Returns:
        True when this call told the owner, False when the step had been told before.
    """
    now = svc.now()
    with svc.session() as s:
        if not record_notice(s, certificate_id, HUMAN_STEP, _key_number(key), f"{step} ({key})", now=now):
            return False
        notices.send(svc, notices.human_step(s, certificate_id, step, detail, now=now), session=s)
    return True
