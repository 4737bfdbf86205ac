"""The scanner's use cases: read the inventory in one query, decide, start managed applications
exactly once (PL-8), record notices once each (NT-1, NT-2).

The database makes the scanner safe to run twice at once or after a crash: a managed start is
a `managed_starts` row keyed by the certificate (inserted with ``ON CONFLICT DO NOTHING``; only
the caller whose insert went in acts), a notice a `notices_sent` row unique per (certificate,
kind, threshold). The decision itself is pure (`certpilot.core.scan.decide`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from certpilot.core.models import Policy, Status
from certpilot.core.plans import AutoStartInput, may_start_itself
from certpilot.core.scan import ManagedStart, ScanDecision, ScanRow, decide
from certpilot.store.repository import Repository
from certpilot.store.tables import CertificateRow, OrderRow
from certpilot.store.tables_pipeline import ManagedStartRow, NoticeRow, RenewalPolicyRow

EXPIRY = "expiry"
"""`notices_sent.kind` of NT-1 expiry notices (threshold = the day count)."""
MANAGED_WAITING = "managed_waiting"
"""`notices_sent.kind` of NT-2 "the managed start could not start itself" (threshold 0)."""
CA_REJECTED = "ca_rejected"
"""`notices_sent.kind` of CA-2 "the CA rejected the application" (threshold 0)."""

STARTED = "started"
WAITING_MANUAL = "waiting_manual"


@dataclass(frozen=True)
class StartOutcome:
    """What `start_managed` did.

    Attributes:
        certificate_id: the certificate.
        outcome: "started" (moved to PENDING_APPLICATION, or already pending for PAY-2),
            "waiting_manual" (PL-5 refused; `detail` says why), "already" (another scan recorded
            it first: this call did nothing), "skipped" (no longer startable; `detail` says why).
        detail: the sentence for an operator.
        inserted: True only for the one caller whose `managed_starts` row went in (PL-8).
        notify_owner: True when the caller must tell the owner (NT-2), once.
        common_name: for messages.
    """

    certificate_id: str
    outcome: str
    detail: str
    inserted: bool
    notify_owner: bool
    common_name: str = ""


def _scan_select():
    c = CertificateRow.__table__
    o = OrderRow.__table__
    p = RenewalPolicyRow.__table__
    return (
        select(c.c.id, c.c.common_name, c.c.state, c.c.origin, c.c.not_after, c.c.order_id, o.c.kind,
               c.c.plan_index, c.c.parent_id, o.c.managed_fee, func.coalesce(p.c.auto_renew, true()))
        .select_from(c.outerjoin(o, o.c.id == c.c.order_id).outerjoin(p, p.c.certificate_id == c.c.id))
    )


_SQL: dict[str, str] = {}


def _scan_sql(dialect) -> str:
    """The scan's Core select compiled once per dialect (it has no parameters)."""
    sql = _SQL.get(dialect.name)
    if sql is None:
        sql = _SQL[dialect.name] = str(_scan_select().compile(dialect=dialect,
                                                              compile_kwargs={"literal_binds": True}))
    return sql


def load_rows(session: Session) -> list[ScanRow]:
    """Every certificate as a `ScanRow`: one Core select (certificates LEFT JOIN orders LEFT JOIN
    renewal_policies), no ORM objects; `auto_renew` defaults to True without a policy row.

    `not_after` is timezone-aware UTC on SQLite and PostgreSQL alike. The select runs on the
    session's own DBAPI connection (same transaction): SQLAlchemy's per-row result processing
    (Row objects, the DateTime regex and TypeDecorator) cost more than the query itself at 100,000
    rows (bench/scan.py); SQLite's stored text 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC) is parsed by
    `datetime.fromisoformat` (C), PostgreSQL's driver already returns aware datetimes and booleans.
    """
    conn = session.connection()
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(_scan_sql(conn.dialect))
        raw = cursor.fetchall()
    finally:
        cursor.close()
    new = tuple.__new__
    if conn.dialect.name != "sqlite":
        return [new(ScanRow, r[:4] + (r[4].astimezone(UTC) if r[4] is not None else None,) + r[5:]) for r in raw]
    parse = datetime.fromisoformat
    return [new(ScanRow, (i, cn, st, og, parse(na + "+00:00") if na else None, oid, k, ix, pid,
                          None if fee is None else fee == 1, auto == 1))
            for i, cn, st, og, na, oid, k, ix, pid, fee, auto in raw]


def notices_sent(session: Session, kind: str = EXPIRY, *, now: datetime | None = None,
                 horizon_days: int | None = None) -> set[tuple[str, int]]:
    """(certificate id, threshold days) of the notices of `kind` already sent (NT-1).

    With `now` and `horizon_days`, only for live certificates that can still get one (expiring
    within the horizon): the table grows with history, the scan should not read all of it.
    """
    t = NoticeRow.__table__
    stmt = select(t.c.certificate_id, t.c.threshold_days).where(t.c.kind == kind)
    if now is not None and horizon_days is not None:
        c = CertificateRow.__table__
        stmt = stmt.where(t.c.certificate_id.in_(
            select(c.c.id).where(c.c.state.in_([Status.ISSUED.value, Status.UPLOADED.value]),
                                 c.c.not_after >= now, c.c.not_after <= now + timedelta(days=horizon_days + 1))))
    return {(cid, th) for cid, th in session.execute(stmt).tuples()}


def managed_started(session: Session) -> dict[str, str]:
    """Certificate id -> outcome of the managed starts recorded (PL-8), for the certificates a
    start can still be decided for (not activated, or pending under PAY-2's managed fee)."""
    t = ManagedStartRow.__table__
    c = CertificateRow.__table__
    live = select(c.c.id).where(c.c.state.in_([Status.NOT_ACTIVATED.value, Status.PENDING_APPLICATION.value]))
    return dict(session.execute(select(t.c.certificate_id, t.c.outcome)
                                .where(t.c.certificate_id.in_(live))).tuples().all())


def renewal_years(session: Session, certificate_ids: Sequence[str]) -> dict[str, int]:
    """Plan years chosen per certificate (`renewal_policies.years`); absent ids default to 1."""
    if not certificate_ids:
        return {}
    t = RenewalPolicyRow.__table__
    found = dict(session.execute(select(t.c.certificate_id, t.c.years)
                                 .where(t.c.certificate_id.in_(list(certificate_ids)))).tuples().all())
    return {cid: int(found.get(cid, 1)) for cid in certificate_ids}


def decide_scan(session: Session, now: datetime, policy: Policy, *, table_limit: int = 500) -> ScanDecision:
    """One scan's decision at `now`: load every row, the notices sent and the starts recorded, and
    decide purely (`certpilot.core.scan.decide`: PL-4, CA-2, NT-1)."""
    horizon = max(policy.notice_days, default=0)
    decision = decide(load_rows(session), now, policy,
                      notices_sent=notices_sent(session, now=now, horizon_days=horizon),
                      managed_started=managed_started(session), table_limit=table_limit)
    return _only_eligible_renewals(session, decision, now, policy)


def _only_eligible_renewals(session: Session, decision: ScanDecision, now: datetime, policy: Policy) -> ScanDecision:
    """Keep the automatic renewals the eligibility rules allow (EL-1..EL-5); the others get the
    refusal's sentence as their next action instead of a renewal that would fail. Only the due
    certificates are loaded, so the cost follows what needs action."""
    from certpilot.core.eligibility import RenewalInput, check_renewal
    from certpilot.store.repository import certificate_from_row

    ids = [due.certificate_id for due in decision.renewals_due]
    rows = session.scalars(select(CertificateRow).where(CertificateRow.id.in_(ids))).all() if ids else []
    certs = {row.id: certificate_from_row(row) for row in rows}
    keep, refused = [], {}
    for due in decision.renewals_due:
        cert = certs[due.certificate_id]
        refusal = check_renewal(RenewalInput(certificate=cert, now=now, policy=policy))
        if refusal is None:
            keep.append(due)
        else:
            refused[due.certificate_id] = f"{refusal.reason.value}: {refusal.message}"
    decision.renewals_due = keep
    if refused:
        decision.lines = [replace(line, next_action=refused[line.id]) if line.id in refused else line
                          for line in decision.lines]
    return decision


def _insert(session: Session, table):
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def record_notice(session: Session, certificate_id: str, kind: str, threshold: int, detail: str = "", *,
                  now: datetime | None = None) -> bool:
    """Record a notice as sent, if absent (NT-1 once each, NT-2 once).

    Returns:
        True only for the caller whose row went in: that caller sends the notice, so two
        concurrent scanners send it once.
    """
    t = NoticeRow.__table__
    stmt = (_insert(session, t)
            .values(certificate_id=certificate_id, kind=kind, threshold_days=threshold, detail=detail,
                    sent_at=now or datetime.now(UTC))
            .on_conflict_do_nothing(index_elements=["certificate_id", "kind", "threshold_days"])
            .returning(t.c.id))
    return session.execute(stmt).first() is not None


def auto_start_input(cert, *, dns_writable: Callable[[list[str]], bool]) -> AutoStartInput:
    """PL-5's input for a certificate: DNS writable by a configured provider (a delegation is
    seen through the runtime's delegating provider, which holds the delegated zone), application
    data complete (names, a CSR the system can make)."""
    problems = []
    if not cert.names:
        problems.append("the certificate has no names")
    if not cert.key_held:
        problems.append("its CSR is supplied by hand (CSR-2): the system cannot build and submit it")
    writable = bool(cert.names) and dns_writable(list(cert.names))
    return AutoStartInput(level=cert.level, names=list(cert.names), dns_writable=writable, delegated=False,
                          application_valid=not problems, problems=problems, contact=cert.owner)


def start_managed(session: Session, start: ManagedStart, *, now: datetime,
                  dns_writable: Callable[[list[str]], bool], actor: str = "scanner") -> StartOutcome:
    """PL-4/PL-5/PL-8: start the next certificate's application, exactly once.

    In the caller's transaction: the `managed_starts` row is inserted ``ON CONFLICT DO NOTHING``;
    only when this call inserted it does anything else happen. Allowed (PL-5): a NOT_ACTIVATED
    certificate moves to PENDING_APPLICATION through `Repository.set_state` (certificate 1 of a
    PAY-2 order is already pending: no transition) and the audit log says "managed start (PL-4)".
    The order's managed service was paid at order time (PAY-1): no ledger entry is written.
    Refused (PL-5): the row says "waiting_manual" with the refusal's sentence, the certificate
    stays where it is, and `notify_owner` tells the caller to send NT-2's notice (recorded in
    `notices_sent` here, so it goes out once).

    Args:
        session: the caller's transaction (commit after, then notify).
        start: the decided start (`ScanDecision.managed_starts`).
        now: the time recorded.
        dns_writable: PL-5/DV-2: True when configured providers hold the zones of all names.
        actor: who starts (audit log).

    Returns:
        A `StartOutcome`; "already" when another scan recorded the start first.

    Raises:
        NotFoundError: no such certificate.
        IllegalTransitionError: the certificate moved concurrently (nothing is kept: roll back).
    """
    repo = Repository(session)
    cert = repo.certificate_model(start.certificate_id)
    t = ManagedStartRow.__table__
    if session.execute(select(t.c.outcome).where(t.c.certificate_id == cert.id)).first() is not None:
        return StartOutcome(cert.id, "already", "the managed start was already recorded (PL-8)", False, False,
                            cert.common_name)
    startable = cert.state is Status.NOT_ACTIVATED or (cert.state is Status.PENDING_APPLICATION
                                                      and cert.plan_index == 0)
    if not startable:
        return StartOutcome(cert.id, "skipped", f"certificate {cert.id} ({cert.common_name}) is {cert.state.value}: "
                            "only a not-activated certificate (or certificate 1 of a managed-fee order) starts by "
                            "itself; nothing to do", False, False, cert.common_name)
    refusal = may_start_itself(auto_start_input(cert, dns_writable=dns_writable))
    outcome = STARTED if refusal is None else WAITING_MANUAL
    detail = refusal.message if refusal else (
        f"managed start (PL-4): {start.days_left} days left on {start.predecessor_id}")
    inserted = session.execute(
        _insert(session, t)
        .values(certificate_id=cert.id, order_id=start.order_id or cert.order_id, predecessor_id=start.predecessor_id,
                outcome=outcome, detail=detail, started_at=now)
        .on_conflict_do_nothing(index_elements=["certificate_id"])
        .returning(t.c.certificate_id)
    ).first() is not None
    if not inserted:
        return StartOutcome(cert.id, "already", "the managed start was already recorded by another scan (PL-8)",
                            False, False, cert.common_name)
    if refusal is not None:
        repo.record_audit("certificate", cert.id, actor=actor, now=now,
                          why=f"managed start (PL-4) could not start itself (PL-5): {refusal.message}")
        notify = record_notice(session, cert.id, MANAGED_WAITING, 0, refusal.message, now=now)
        return StartOutcome(cert.id, WAITING_MANUAL, refusal.message, True, notify, cert.common_name)
    paid = (f"consumes one managed service of order {cert.order_id}, paid at order time (PAY-1); "
            "no ledger entry")
    if cert.state is Status.NOT_ACTIVATED:
        repo.set_state(cert.id, Status.PENDING_APPLICATION, actor=actor, now=now,
                       why=f"managed start (PL-4): predecessor {start.predecessor_id} has {start.days_left} days "
                           f"left; {paid}")
    else:
        repo.record_audit("certificate", cert.id, actor=actor, now=now,
                          why=f"managed start (PL-4, PAY-2): the original has {start.days_left} days left; {paid}")
    return StartOutcome(cert.id, STARTED, detail, True, False, cert.common_name)


__all__ = [
    "CA_REJECTED", "EXPIRY", "MANAGED_WAITING", "STARTED", "WAITING_MANUAL", "StartOutcome",
    "auto_start_input", "decide_scan", "load_rows", "managed_started", "notices_sent", "record_notice",
    "renewal_years", "start_managed",
]
