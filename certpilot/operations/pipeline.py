"""The renewal pipeline's use cases (LC-3), one door per step the flows take.

Each takes the `Services` and ids (plain values), owns its transaction (or composes doors that
do), and returns a frozen outcome from `certpilot.core.outcomes` whose enum says what happened.
Normal outcomes are results: an order awaiting payment is a `RenewalStep` in state
AWAITING_PAYMENT, a DNS record a human must add is a `SubmitOutcome` of kind MANUAL_DNS with the
records as data, a review that goes on is a `ReviewOutcome` UNDER_REVIEW. Exceptions are left
for refusals (a rule said no) and failures (transient ones are retried by the tasks).

The Prefect tasks in `tasks/pipeline.py` are one call each into this module (or into the
doors of `orders`, `deployments`, `emergency`, `importing`); nothing here knows of Prefect.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from certpilot.adapters.dns.checks import wait_until_visible
from certpilot.adapters.dns.manual import ManualActionRequired, ManualRecord
from certpilot.adapters.issuers.base import OrderStatus
from certpilot.core.models import Contact, CsrMode, Status
from certpilot.core.outcomes import (
    ApplicationStatus,
    DnsRecord,
    KeyAndCsrMade,
    RenewalStep,
    ReviewOutcome,
    SubmitKind,
    SubmitOutcome,
)
from certpilot.core.plans import submits_first_now
from certpilot.operations import applications, notices, orders
from certpilot.operations.common import parse_instant
from certpilot.operations.scan import CA_REJECTED, record_notice
from certpilot.store.repository import Repository

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from certpilot.runtime import Services


# ---------------------------------------------------------------- stage 1: order and payment


def _step(result: orders.OrderResult) -> RenewalStep:
    order = result.order
    return RenewalStep(certificate_id=order.certificate_id, order_id=order.id, state=order.state,
                       certificate_ids=result.certificate_ids, shortfall=result.shortfall,
                       message=result.pending.message if result.pending is not None else "",
                       managed_fee=order.managed_fee, submit_first_now=submits_first_now(order.managed_fee))


def renew(svc: Services, certificate_id: str, *, years: int, csr_mode: CsrMode | str = CsrMode.SYSTEM,
          at: str | None = None, actor: str = "flow:renew") -> RenewalStep:
    """Place (or find again) the renewal order of a certificate and pay it from quota (PAY-1).

    A rerun of the same attempt finds the same order; after a declined or cancelled order the
    next attempt places a new one (`core.payment.renewal_attempt_key`, PAY-4). A private-CA
    certificate's order is its reissue at no quota (EL-4).

    Args:
        certificate_id: the certificate to renew.
        years: 1, 2 or 3 (PL-1, PL-2).
        csr_mode: system | reuse (CSR-1, CSR-3).
        at: ISO 8601 instant to decide at (default the services' clock).
        actor: who is acting, for the audit trail.

    Returns:
        The step: PAID with the new certificate ids, or AWAITING_PAYMENT with the shortfall and
        the sentence saying what to approve (nothing debited).

    Raises:
        RefusedError: a rule refused (EL, PL years, CSR, ALREADY_RENEWED); nothing written.
        NotFoundError: no such certificate.
    """
    return _step(orders.renew(svc, certificate_id, years=years, now=parse_instant(at) if at else None,
                              csr_mode=CsrMode(csr_mode), rerun_safe=True, actor=actor))


def pay(svc: Services, order_id: str, *, approve: bool, actor: str) -> RenewalStep:
    """Approve or decline an order's shortfall (the payment form's answer), exactly once (PAY-4).

    Returns:
        The step: PAID with the new certificate ids, or DECLINED (nothing debited).

    Raises:
        NotFoundError: no such order.
        IllegalTransitionError: approving an order that was declined or cancelled.
    """
    return _step(orders.pay(svc, order_id, approve=approve, actor=actor))


# ---------------------------------------------------------------- stage 2: key, CSR, CA


def application_status(svc: Services, certificate_id: str) -> ApplicationStatus:
    """Where a certificate stands for stage 2 (state, application, contact, key held).

    Raises:
        RefusedError: `apply` has nothing to do for it (PL-4, LC-5), saying what to do instead.
        NotFoundError: no such certificate.
    """
    with svc.session(readonly=True) as s:
        return applications.status(s, certificate_id)


def resubmit(svc: Services, certificate_id: str, *, actor: str = "flow:apply") -> ApplicationStatus:
    """CA-2: start a rejected application over (the next steps make a new key, CSR and CA order).

    Returns:
        The certificate's status after it went back to PENDING_APPLICATION.

    Raises:
        IllegalTransitionError: the certificate is not REJECTED.
    """
    with svc.session() as s:
        applications.resubmit(s, certificate_id, now=svc.now(), actor=actor)
        return applications.status(s, certificate_id)


def create_key_and_csr(svc: Services, certificate_id: str, csr_mode: CsrMode | str = CsrMode.SYSTEM, *,
                       actor: str = "flow:apply") -> KeyAndCsrMade:
    """CSR-1..CSR-5: the certificate's key (sealed into the vault) and its checked CSR.

    Idempotent: an existing CSR is returned. Only ids and fingerprints come back.

    Raises:
        RefusedError: the CSR fails its check (CSR-4), or REUSE without the original key (CSR-3).
    """
    with svc.session() as s:
        made = applications.create_key_and_csr(s, certificate_id, CsrMode(csr_mode), vault=svc.vault,
                                               now=svc.now(), actor=actor)
    return KeyAndCsrMade(certificate_id=made.certificate_id, key_id=made.key_id,
                         public_fingerprint=made.public_fingerprint, key_held=made.key_held,
                         warnings=tuple(w.message for w in made.warnings))


def _record(r: ManualRecord) -> DnsRecord:
    return DnsRecord(fqdn=r.fqdn, type=r.type, value=r.value, ttl=r.ttl, action=r.action, zone_line=r.zone_line,
                     instruction=r.instruction)


_SUBMIT_KIND = {OrderStatus.VALID: SubmitKind.ISSUED, OrderStatus.INVALID: SubmitKind.REJECTED}
"""What the CA's order status means for the certificate; any other status: still under review."""


def submit(svc: Services, certificate_id: str, *, emergency: bool = False,
           actor: str = "flow:apply") -> SubmitOutcome:
    """Submit (or resume) the CA application and drive validation (CA-1, DV-2, DV-3, DV-7).

    A sequence of short transactions of its own (`applications.submit` over `svc.session`), the
    CA called between them: the order reference is committed before any challenge is answered,
    so a rerun resumes the same CA order. When a human must add a DNS record (DV-3: no provider
    writes the zone), the outcome is MANUAL_DNS with the records as data; submit again once they
    are served. A rejection is told to the owner once (`_tell_rejection`).

    Args:
        emergency: submit through the emergency issuer (EM-1) instead of the certificate's own.

    Raises:
        RefusedError: CONTACT_REQUIRED (DV-6), or the issuer's refusals (DV-4, DV-7); nothing
            was placed at the CA.
        TransientError: retry later (the rerun resumes the same order), or the CA rejected it
            and no channel delivered the owner's notice (the rejection was not kept: the rerun
            asks the CA again and tells the owner then).
    """
    with svc.session(readonly=True) as s:
        cert = Repository(s).certificate_model(certificate_id)
    issuer = svc.issuer_for(cert, emergency=emergency)
    try:
        res = applications.submit(svc.session, certificate_id, issuer, now=svc.now(), actor=actor,
                                  on_rejected=partial(_tell_rejection, svc))
    except ManualActionRequired as exc:
        return SubmitOutcome(certificate_id=certificate_id, kind=SubmitKind.MANUAL_DNS,
                             records=tuple(_record(r) for r in exc.records))
    return SubmitOutcome(certificate_id=certificate_id, kind=_SUBMIT_KIND.get(res.status, SubmitKind.UNDER_REVIEW),
                         order_ref=res.order_ref, detail=res.detail, resumed=res.resumed)


def follow_review(svc: Services, certificate_id: str, at: datetime | None = None, *,
                  actor: str = "flow:apply") -> ReviewOutcome:
    """CA-2: poll the CA once for an application under review; no process is held.

    The one door for both callers: `apply` polling a short review and the scanner resuming a
    long one (each caller limits its concurrent calls to the CA's API). Still pending: nothing
    changes; issued: collected (ISSUED: deploy it); rejected: REJECTED with the CA's detail, and
    the owner is told once (`_tell_rejection`). A certificate not under review (a rejection
    `submit` already recorded and told, say) is reported as it is, without asking the CA.

    Args:
        at: the instant recorded as the time of the change (default the services' clock).
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
    res = applications.refresh(svc.session, certificate_id, svc.issuer_for(cert, emergency=cert.temporary),
                               now=at or svc.now(), actor=actor, on_rejected=partial(_tell_rejection, svc))
    with svc.session(readonly=True) as s:
        state = Repository(s).certificate_model(certificate_id).state
    return ReviewOutcome(certificate_id=certificate_id, state=state, detail=res.detail, polled=True)


def _tell_rejection(svc: Services, session: Session, rejection: applications.Rejection) -> None:
    """CA-2/NT-2: the one place a rejection is told to the owner, whichever path saw it
    (`submit`, `apply`'s polling, the scanner).

    Runs in the transaction that records the rejection. The notice is recorded in
    `notices_sent` keyed by (certificate, CA_REJECTED, the rejection's ordinal), so a rerun
    does not repeat it while an application resubmitted and rejected again is told again; then
    it is sent. If no channel delivers, the TransientError rolls back the notice and the
    rejection with it: the certificate stays UNDER_REVIEW and the next poll decides it again.
    """
    if record_notice(session, rejection.certificate_id, CA_REJECTED, rejection.ordinal,
                     f"order {rejection.order_ref}: {rejection.detail}", now=rejection.at):
        event = notices.ca_rejected(session, rejection.certificate_id, rejection.detail, now=rejection.at)
        notices.send(svc, event, session=session, must_deliver=True)


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


# ---------------------------------------------------------------- notices


def notify_human_step(svc: Services, certificate_id: str, step: str, detail: str) -> int:
    """NT-2: tell the owner a step needs a human (payment, a manual DNS record, the CA's contact).

    The notice is built in a read of the store, then sent (the inbox always, and every channel).

    Returns:
        How many configured channels delivered.
    """
    with svc.session(readonly=True) as s:
        event = notices.human_step(s, certificate_id, step, detail, now=svc.now())
    return notices.send(svc, event)
