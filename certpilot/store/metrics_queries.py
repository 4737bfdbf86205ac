"""Read-only queries behind the Prometheus exporter: plain rows (tuples), never ORM objects.

One SELECT reads every certificate's few columns the metrics need; the deployments' last state per
target and the probe observations are one SELECT each. Scraping 100,000 certificates is bounded by
that one query and the text formatting (bench/metrics.py).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from certpilot.store.tables import CertificateRow
from certpilot.store.tables_deploy import DeploymentTargetRow, DeploymentTaskRow

_SQL: dict[str, str] = {}


def _cert_sql(dialect) -> str:
    sql = _SQL.get(dialect.name)
    if sql is None:
        c = CertificateRow.__table__.c
        sql = _SQL[dialect.name] = str(select(c.id, c.common_name, c.origin, c.level, c.state, c.not_after)
                                       .compile(dialect=dialect))
    return sql


def certificate_rows(session: Session) -> list[tuple[str, str, str, str, str, float | None]]:
    """(id, common_name, origin, level, state, not_after as POSIX seconds) of every certificate,
    in one query on the session's own DBAPI connection (same transaction).

    As `scan_queries.load_scan_rows`: at 100,000 rows SQLAlchemy's per-row processing costs more
    than the query, so the rows are read raw; SQLite's stored UTC text is parsed by
    `datetime.fromisoformat` (C), PostgreSQL's driver returns aware datetimes.
    """
    conn = session.connection()
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(_cert_sql(conn.dialect))
        raw = cursor.fetchall()
    finally:
        cursor.close()
    if conn.dialect.name != "sqlite":
        return [(i, cn, og, lv, st, na.timestamp() if na is not None else None) for i, cn, og, lv, st, na in raw]
    parse = datetime.fromisoformat
    return [(i, cn, og, lv, st, parse(na + "+00:00").timestamp() if na else None) for i, cn, og, lv, st, na in raw]


def last_tasks(session: Session) -> dict[str, tuple[str, int, datetime | None]]:
    """Target id -> (state, progress, finished_at) of its newest deployment task (one query)."""
    t = DeploymentTaskRow.__table__.c
    newest = select(t.target_id, func.max(t.created_at).label("at")).group_by(t.target_id).subquery()
    query = (select(t.target_id, t.state, t.progress, t.finished_at)
             .join(newest, (newest.c.target_id == t.target_id) & (newest.c.at == t.created_at))
             .order_by(t.target_id, t.id))
    # Two tasks created at the same instant: the last id wins.
    return {tid: (state, progress, finished) for tid, state, progress, finished in session.execute(query).tuples()}


def last_deployment_states(session: Session) -> list[tuple[str, str, str]]:
    """(target id, target name, state of its newest deployment task) per target that has a task."""
    g = DeploymentTargetRow.__table__.c
    names = dict(session.execute(select(g.id, g.name)).tuples().all())
    return [(tid, names.get(tid) or "", state) for tid, (state, _p, _f) in sorted(last_tasks(session).items())]
