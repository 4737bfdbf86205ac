"""The scanner's use cases: decide over the inventory in one query, start managed applications
exactly once (PL-8), send notices once each (NT-1, NT-2).

The Services-level doors (`decide`, `start_managed`, `send_expiry_notice`) own their transaction
and return the frozen results of `certpilot.core.scan`; the scan's tasks call only them, and
`operations.pipeline.follow_review` for the CA reviews it resumes (CA-2: one door, shared with
`apply`). The session-level building blocks (`decide_scan`, `record_managed_start`,
`record_notice`) work in a caller's transaction; the integration tests and the bench use them.

The database makes the scanner safe to run twice at once or after a crash: a managed start is
a `managed_starts` row keyed by the certificate, a notice a `notices_sent` row unique per
(certificate, kind, threshold), both inserted only if absent (`certpilot.store.scan_queries`):
only the caller whose insert went in acts. The decision itself is pure (`certpilot.core.scan`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from certpilot.core.eligibility import RenewalInput, check_renewal
from certpilot.core.errors import IllegalTransitionError
from certpilot.core.issuers import RenewalTiming
from certpilot.core.models import Certificate, Policy, Status
from certpilot.core.plans import AutoStartInput, may_start_itself
from certpilot.core.scan import (
    InFlight,
    ManagedStart,
    ScanDecision,
    ScanPlan,
    StartOutcome,
    StartOutcomeKind,
    WorkStage,
    plan_from,
    work_key,
)
from certpilot.core.scan import decide as decide_rows
from certpilot.operations import notices
from certpilot.store import run_queries as rq
from certpilot.store import scan_queries as q
from certpilot.store.repository import Repository
from certpilot.store.scan_queries import CA_REJECTED, EXPIRY, MANAGED_WAITING

SCAN_FAILED = "scan_failed"
"""`notices_sent.kind` of "the scan could not do something for this certificate" (threshold:
the day, counted from 1970-01-01: told at most once a day per certificate)."""

if TYPE_CHECKING:
    from certpilot.runtime import Services


# ------------------------------------------------------------------ session-level building blocks


def decide_scan(session: Session, now: datetime, policy: Policy, *, table_limit: int = 500,
                timing: RenewalTiming = RenewalTiming()) -> ScanDecision:
    """One scan's decision at `now`: load every row, the notices sent and the starts recorded, and
    decide purely (`certpilot.core.scan.decide`: PL-4, CA-2, NT-1); automatic renewals the
    eligibility rules refuse are dropped (EL-1..EL-5)."""
    horizon = max(policy.notice_days, default=0)
    decision = decide_rows(q.load_scan_rows(session), now, policy,
                           notices_sent=q.notices_sent(session, now=now, horizon_days=horizon),
                           managed_started=q.managed_started(session), table_limit=table_limit, timing=timing)
    return _only_eligible_renewals(session, decision, now, policy)


def _only_eligible_renewals(session: Session, decision: ScanDecision, now: datetime, policy: Policy) -> ScanDecision:
    """Keep the automatic renewals the eligibility rules allow (EL-1..EL-5); the others get the
    refusal's sentence as their next action instead of a renewal that would fail. Only the due
    certificates are loaded, so the cost follows what needs action."""
    certs = q.certificates(session, [due.certificate_id for due in decision.renewals_due])
    keep, refused = [], {}
    for due in decision.renewals_due:
        refusal = check_renewal(RenewalInput(certificate=certs[due.certificate_id], now=now, policy=policy))
        if refusal is None:
            keep.append(due)
        else:
            refused[due.certificate_id] = f"{refusal.reason.value}: {refusal.message}"
    decision.renewals_due = keep
    if refused:
        decision.lines = [replace(line, next_action=refused[line.id]) if line.id in refused else line
                          for line in decision.lines]
    return decision


def record_notice(session: Session, certificate_id: str, kind: str, threshold: int, detail: str = "", *,
                  now: datetime | None = None) -> bool:
    """Record a notice as sent, if absent (NT-1 once each, NT-2 once).

    Args:
        kind: `EXPIRY` (threshold: the day count), `MANAGED_WAITING` (threshold 0) or
            `CA_REJECTED` (threshold: the rejection's ordinal, `applications.Rejection`).

    Returns:
        True only for the caller whose row went in: that caller sends the notice, so two
        concurrent scanners send it once.
    """
    return q.insert_notice(session, certificate_id, kind, threshold, detail, now or datetime.now(UTC))


@dataclass(frozen=True)
class ManagedStartRecord:
    """What `record_managed_start` did in the caller's transaction.

    Attributes:
        certificate_id: the certificate.
        kind: started, waiting_manual (PL-5 refused; `detail` says why), already (another scan
            recorded it first: nothing done), skipped (no longer startable; `detail` says why).
        detail: the sentence for an operator.
        inserted: True only for the one caller whose `managed_starts` row went in (PL-8).
        notify_owner: True when the caller must tell the owner (NT-2), once.
    """

    certificate_id: str
    kind: StartOutcomeKind
    detail: str
    inserted: bool = False
    notify_owner: bool = False


def auto_start_input(cert: Certificate, *, dns_writable: Callable[[list[str]], bool],
                     delegated: Callable[[list[str]], bool] | None = None) -> AutoStartInput:
    """PL-5's input for a certificate: DNS writable by a configured provider (a delegation is
    seen through the runtime's delegating provider, which holds the delegated zone), application
    data complete (names, a CSR the system can make)."""
    problems = []
    if not cert.names:
        problems.append("the certificate has no names")
    if not cert.key_held:
        problems.append(f"its plan was ordered with a manual CSR (CSR-2, carried by CSR-3): the system holds no key "
                        f"to build one; submit yours with `certpilot apply {cert.id} --csr manual --csr-file CSR.pem`")
    writable = bool(cert.names) and dns_writable(list(cert.names))
    return AutoStartInput(level=cert.level, names=list(cert.names), dns_writable=writable,
                          delegated=bool(cert.names) and delegated is not None and delegated(list(cert.names)),
                          application_valid=not problems, problems=problems, contact=cert.owner)


def _not_startable(cert: Certificate) -> str | None:
    """Why `cert` cannot start by itself any more (it moved since the decision), or None."""
    if cert.state is Status.NOT_ACTIVATED or (cert.state is Status.PENDING_APPLICATION and cert.plan_index == 0):
        return None
    return (f"certificate {cert.id} ({cert.common_name}) is {cert.state.value}: only a not-activated certificate "
            "(or certificate 1 of a managed-fee order) starts by itself; nothing to do")


def record_managed_start(session: Session, start: ManagedStart, *, now: datetime,
                         dns_writable: Callable[[list[str]], bool], actor: str = "scanner",
                         delegated: Callable[[list[str]], bool] | None = None) -> ManagedStartRecord:
    """PL-4/PL-5/PL-8: start the next certificate's application, exactly once.

    In the caller's transaction: the `managed_starts` row is inserted only if absent; only when
    this call inserted it does anything else happen. Allowed (PL-5): the start is made
    (`_make_start`). Refused (PL-5): the row says "waiting_manual" with the refusal's sentence,
    the certificate stays where it is, and `notify_owner` tells the caller to send NT-2's notice
    (recorded in `notices_sent` here, so it goes out once).

    Args:
        session: the caller's transaction (send NT-2 in it, then commit).
        start: the decided start (`ScanDecision.managed_starts`).
        now: the time recorded.
        dns_writable: PL-5/DV-2: True when configured providers hold the zones of all names.
        actor: who starts (audit log).

    Returns:
        A `ManagedStartRecord`; kind "already" when another scan recorded the start first.

    Raises:
        NotFoundError: no such certificate.
        IllegalTransitionError: the certificate moved concurrently (nothing is kept: roll back).
    """
    repo = Repository(session)
    cert = repo.certificate_model(start.certificate_id)
    if q.managed_start_outcome(session, cert.id) is not None:
        return ManagedStartRecord(cert.id, StartOutcomeKind.ALREADY, "the managed start was already recorded (PL-8)")
    why_not = _not_startable(cert)
    if why_not is not None:
        return ManagedStartRecord(cert.id, StartOutcomeKind.SKIPPED, why_not)
    refusal = may_start_itself(auto_start_input(cert, dns_writable=dns_writable, delegated=delegated))
    kind = StartOutcomeKind.STARTED if refusal is None else StartOutcomeKind.WAITING_MANUAL
    detail = refusal.message if refusal else (
        f"managed start (PL-4): {start.days_left} days left on {start.predecessor_id}")
    if not q.insert_managed_start(session, cert.id, order_id=start.order_id or cert.order_id,
                                  predecessor_id=start.predecessor_id, outcome=kind.value, detail=detail, now=now):
        return ManagedStartRecord(cert.id, StartOutcomeKind.ALREADY,
                                  "the managed start was already recorded by another scan (PL-8)")
    if refusal is not None:
        repo.record_audit("certificate", cert.id, actor=actor, now=now,
                          why=f"managed start (PL-4) could not start itself (PL-5): {refusal.message}")
        notify = record_notice(session, cert.id, MANAGED_WAITING, 0, refusal.message, now=now)
        return ManagedStartRecord(cert.id, kind, refusal.message, True, notify)
    _make_start(repo, cert, start, now=now, actor=actor)
    return ManagedStartRecord(cert.id, kind, detail, True, False)


def _make_start(repo: Repository, cert: Certificate, start: ManagedStart, *, now: datetime, actor: str) -> None:
    """PL-4: a NOT_ACTIVATED certificate moves to PENDING_APPLICATION (`Repository.set_state`);
    certificate 1 of a PAY-2 order is already pending (no transition, audited). The order's
    managed service was paid at order time (PAY-1): no ledger entry is written."""
    paid = (f"consumes one managed service of order {cert.order_id}, paid at order time (PAY-1); "
            "no ledger entry")
    if cert.state is Status.NOT_ACTIVATED:
        repo.set_state(cert.id, Status.PENDING_APPLICATION, actor=actor, now=now,
                       why=f"managed start (PL-4): predecessor {start.predecessor_id} has {start.days_left} days "
                           f"left; {paid}")
    else:
        repo.record_audit("certificate", cert.id, actor=actor, now=now,
                          why=f"managed start (PL-4, PAY-2): the original has {start.days_left} days left; {paid}")


# ------------------------------------------------------------------ the use cases (Services-level doors)


def decide(svc: Services, at: datetime | None = None, *, table_limit: int = 500) -> ScanPlan:
    """Decide one scan (PL-4, CA-2, NT-1, automatic renewals) in one read-only transaction.

    Args:
        svc: the services (store, policy, clock).
        at: the instant to decide at (timezone-aware UTC); default the services' clock.
        table_limit: at most this many inventory table lines, most urgent first.

    Returns:
        The `ScanPlan`: the decision with each renewal's plan years and launch key; plain values
        only (no key material, nothing large).
    """
    now = at or svc.now()
    with svc.session(readonly=True) as s:
        decision = decide_scan(s, now, svc.policy, table_limit=table_limit, timing=svc.timing)
        years = q.renewal_years(s, [r.certificate_id for r in decision.renewals_due])
    return plan_from(decision, years)


def start_managed(svc: Services, start: ManagedStart, at: datetime | None = None) -> StartOutcome:
    """PL-4/PL-5/PL-8: make one decided managed start, exactly once; NT-2 when it must wait.

    One transaction records the start and, when PL-5 refuses it, sends the owner's notice: if no
    channel delivers, the `waiting_manual` record rolls back with it and the next scan decides
    the start again.

    Returns:
        A `StartOutcome`: started, waiting_manual (the owner was told), already (another scan
        recorded it first) or skipped (the certificate moved meanwhile: nothing kept).

    Raises:
        TransientError: PL-5 refused and no notification channel delivered (nothing kept).
        NotFoundError: no such certificate.
    """
    now = at or svc.now()
    try:
        with svc.session() as s:
            record = record_managed_start(s, start, now=now, dns_writable=svc.dns_writable, delegated=svc.delegated)
            notified = 0
            if record.notify_owner:
                event = notices.managed_start_waiting(s, start.certificate_id, record.detail, now=now)
                notified = notices.send(svc, event, session=s, must_deliver=True)
    except IllegalTransitionError as exc:  # moved meanwhile (cancelled, submitted by hand): nothing kept
        return StartOutcome(start.certificate_id, StartOutcomeKind.SKIPPED, exc.message)
    return StartOutcome(start.certificate_id, record.kind, record.detail, notified)


def send_expiry_notice(svc: Services, certificate_id: str, threshold: int, days_left: int,
                       at: datetime | None = None) -> bool:
    """NT-1: record the expiry notice at `threshold` days, then send it, in one transaction (two
    scanners send it once).

    Returns:
        True when this call sent it, False when it was already recorded.

    Raises:
        TransientError: every channel failed (rolled back: the retry sends it).
    """
    now = at or svc.now()
    with svc.session() as s:
        if not record_notice(s, certificate_id, EXPIRY, threshold, f"{days_left} days left", now=now):
            return False
        notices.send(svc, notices.expiry(s, certificate_id, days_left, threshold, now=now), session=s,
                     must_deliver=True)
    return True


def unfinished_work(svc: Services, pending: Sequence[str] = (), issued_now: Sequence[str] = ()) -> tuple[InFlight, ...]:
    """The certificates whose work is unfinished, each with the run that last claimed it, in
    one read-only transaction (the scanner then asks Prefect whether those runs still live).

    Args:
        svc: the services (store).
        pending: certificates the scan saw pending application (`ScanPlan.resume_applications`)
            or started itself (PL-4); those still pending are returned (stage APPLICATION).
        issued_now: certificates the scan's review polls just saw issued (CA-2).

    Returns:
        Pending applications of these certificates, and issued certificates whose deployment is
        unfinished (`run_queries.unfinished_deployments`, stage DEPLOYMENT). A pending
        certificate 1 of an order that never claimed it carries the claim on the certificate
        its order renews (where its renewal run started).
    """
    with svc.session(readonly=True) as s:
        apps = rq.pending_work(s, pending)
        deploys = [d for d in rq.unfinished_deployments(s, issued_now) if d[0] not in {a[0] for a in apps}]
        claims = rq.claims_of(s, [a[0] for a in apps] + [a[3] for a in apps if a[3]] + [d[0] for d in deploys])
    work = [InFlight(cid, cn, WorkStage.APPLICATION, work_key(cid, order_id),
                     claims.get(cid) or (claims.get(renews) if renews and index == 0 else None))
            for cid, cn, order_id, renews, index in apps]
    work += [InFlight(cid, cn, WorkStage.DEPLOYMENT, work_key(cid, order_id), claims.get(cid))
             for cid, cn, order_id in deploys]
    return tuple(work)


def report_problem(svc: Services, certificate_id: str, action: str, error: str, at: datetime | None = None) -> int:
    """Tell the owner that the scan could not do `action` for a certificate (the scan went on),
    at most once a day per certificate: the notice is recorded and sent in one transaction.

    Returns:
        How many channels delivered (0 when it was already told today).

    Raises:
        NotFoundError: no such certificate.
    """
    now = at or svc.now()
    day = (now.date() - date(1970, 1, 1)).days
    with svc.session() as s:
        if not record_notice(s, certificate_id, SCAN_FAILED, day, f"{action}: {error}"[:1000], now=now):
            return 0
        return notices.send(svc, notices.scan_item_failed(s, certificate_id, action, error, now=now), session=s)


__all__ = [
    "CA_REJECTED", "EXPIRY", "MANAGED_WAITING", "SCAN_FAILED", "ManagedStartRecord", "auto_start_input", "decide", "decide_scan",
    "record_managed_start", "record_notice", "report_problem", "send_expiry_notice", "start_managed",
    "unfinished_work",
]
