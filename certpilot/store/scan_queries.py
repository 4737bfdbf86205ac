"""The scanner's persistence: the one inventory query, and the rows that make it exactly-once.

A managed start is a `managed_starts` row keyed by the certificate (PL-8) and a notice a
`notices_sent` row unique per (certificate, kind, threshold) (NT-1 once each, NT-2 once); both
are inserted with ``ON CONFLICT DO NOTHING``, so only the caller whose insert went in acts and two
scanners at once (or a scanner after a crash) do everything once. Every function works in the
caller's session (its transaction); none commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from certpilot.core.models import Certificate, Status
from certpilot.core.scan import ScanRow
from certpilot.store.repository import certificate_from_row
from certpilot.store.tables import CertificateRow, OrderRow
from certpilot.store.tables_issuance import CaApplicationRow, RenewalWindowRow
from certpilot.store.tables_pipeline import ManagedStartRow, NoticeRow, RenewalPolicyRow

EXPIRY = "expiry"
"""`notices_sent.kind` of NT-1 expiry notices (threshold = the day count)."""
MANAGED_WAITING = "managed_waiting"
"""`notices_sent.kind` of NT-2 "the managed start could not start itself" (threshold 0)."""
CA_REJECTED = "ca_rejected"
"""`notices_sent.kind` of CA-2 "the CA rejected the application" (threshold: the rejection's
ordinal for the certificate, so a resubmitted application rejected again is told again)."""


def _scan_select():
    c = CertificateRow.__table__
    o = OrderRow.__table__
    p = RenewalPolicyRow.__table__
    a = CaApplicationRow.__table__
    w = RenewalWindowRow.__table__
    return (
        select(c.c.id, c.c.common_name, c.c.state, c.c.origin, c.c.not_after, c.c.order_id, o.c.kind,
               c.c.plan_index, c.c.parent_id, o.c.managed_fee, func.coalesce(p.c.auto_renew, true()),
               p.c.start_days, c.c.not_before, a.c.retry_at, w.c.start, w.c.end)
        .select_from(c.outerjoin(o, o.c.id == c.c.order_id).outerjoin(p, p.c.certificate_id == c.c.id)
                     .outerjoin(a, a.c.certificate_id == c.c.id).outerjoin(w, w.c.certificate_id == c.c.id))
    )


_SQL: dict[str, str] = {}


def _scan_sql(dialect: Dialect) -> str:
    """The scan's Core select compiled once per dialect (it has no parameters)."""
    sql = _SQL.get(dialect.name)
    if sql is None:
        sql = _SQL[dialect.name] = str(_scan_select().compile(dialect=dialect,
                                                              compile_kwargs={"literal_binds": True}))
    return sql


def load_scan_rows(session: Session) -> list[ScanRow]:
    """Every certificate as a `ScanRow`: one select (certificates LEFT JOIN orders LEFT JOIN
    renewal_policies), no ORM objects; `auto_renew` defaults to True without a policy row.

    `not_after` is timezone-aware UTC on SQLite and PostgreSQL alike. The select runs on the
    session's own DBAPI connection (same transaction): SQLAlchemy's per-row result processing
    (Row objects, the DateTime regex and TypeDecorator) cost more than the query itself at 100,000
    rows (bench/scan.py); SQLite's stored text 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC) is parsed by
    `datetime.fromisoformat` (C), PostgreSQL's driver already returns aware datetimes and booleans.
    The rows are built with `tuple.__new__` in the select's column order, which is `ScanRow`'s
    field order (the named constructor costs more per row than the query at that scale).
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
        def aware(value: datetime | None) -> datetime | None:
            return value.astimezone(UTC) if value is not None else None

        return [new(ScanRow, r[:4] + (aware(r[4]),) + r[5:12] + tuple(aware(d) for d in r[12:16])) for r in raw]
    parse = datetime.fromisoformat
    return [new(ScanRow, (i, cn, st, og, parse(na + "+00:00") if na else None, oid, k, ix, pid,
                          None if fee is None else fee == 1, auto == 1, sd, parse(nb + "+00:00") if nb else None,
                          parse(ra + "+00:00") if ra else None, parse(ws + "+00:00") if ws else None,
                          parse(we + "+00:00") if we else None))
            for i, cn, st, og, na, oid, k, ix, pid, fee, auto, sd, nb, ra, ws, we in raw]


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


def certificates(session: Session, certificate_ids: Sequence[str]) -> dict[str, Certificate]:
    """The certificates with these ids (core models), by id; one select, none when no ids."""
    if not certificate_ids:
        return {}
    rows = session.scalars(select(CertificateRow).where(CertificateRow.id.in_(list(certificate_ids)))).all()
    return {row.id: certificate_from_row(row) for row in rows}


def _insert(session: Session, table):
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_notice(session: Session, certificate_id: str, kind: str, threshold: int, detail: str,
                  now: datetime) -> bool:
    """Record a notice as sent, if absent (``ON CONFLICT DO NOTHING`` on certificate, kind, threshold).

    Returns:
        True only for the caller whose row went in: that caller sends the notice.
    """
    t = NoticeRow.__table__
    stmt = (_insert(session, t)
            .values(certificate_id=certificate_id, kind=kind, threshold_days=threshold, detail=detail, sent_at=now)
            .on_conflict_do_nothing(index_elements=["certificate_id", "kind", "threshold_days"])
            .returning(t.c.id))
    return session.execute(stmt).first() is not None


def managed_start_outcome(session: Session, certificate_id: str) -> str | None:
    """The outcome recorded for the certificate's managed start (PL-8), None when none is."""
    t = ManagedStartRow.__table__
    return session.execute(select(t.c.outcome).where(t.c.certificate_id == certificate_id)).scalar()


def insert_managed_start(session: Session, certificate_id: str, *, order_id: str | None,
                         predecessor_id: str, outcome: str, detail: str, now: datetime) -> bool:
    """Record a managed start, if absent (``ON CONFLICT DO NOTHING`` on the certificate, PL-8).

    Returns:
        True only for the caller whose row went in: that caller makes the start.
    """
    t = ManagedStartRow.__table__
    stmt = (_insert(session, t)
            .values(certificate_id=certificate_id, order_id=order_id, predecessor_id=predecessor_id,
                    outcome=outcome, detail=detail, started_at=now)
            .on_conflict_do_nothing(index_elements=["certificate_id"])
            .returning(t.c.certificate_id))
    return session.execute(stmt).first() is not None


__all__ = [
    "CA_REJECTED", "EXPIRY", "MANAGED_WAITING", "certificates", "insert_managed_start", "insert_notice",
    "load_scan_rows", "managed_start_outcome", "managed_started", "notices_sent", "renewal_years",
]
