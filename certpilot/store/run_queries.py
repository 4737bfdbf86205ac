"""Work claims: which flow run works on which certificate (table `work_claims`).

Every function works in the caller's session (its transaction); none commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from certpilot.core.runs import WorkClaim
from certpilot.store.tables_runs import WorkClaimRow

_CHUNK = 500
"""Ids per IN (...) list: SQLite allows 32,766 bound parameters; small lists plan well everywhere."""


def upsert_claim(session: Session, certificate_id: str, flow_run_id: str, at: datetime) -> WorkClaim:
    """Record that `flow_run_id` works on `certificate_id` since `at`; the latest claim wins.

    One ``INSERT ... ON CONFLICT (certificate_id) DO UPDATE``: idempotent (the same run claiming
    again only moves `claimed_at`), and two runs claiming at once leave exactly one row.
    """
    t = WorkClaimRow.__table__
    insert = postgresql.insert(t) if session.get_bind().dialect.name == "postgresql" else sqlite.insert(t)
    stmt = insert.values(certificate_id=certificate_id, flow_run_id=flow_run_id, claimed_at=at)
    stmt = stmt.on_conflict_do_update(index_elements=["certificate_id"],
                                      set_={"flow_run_id": stmt.excluded.flow_run_id,
                                            "claimed_at": stmt.excluded.claimed_at})
    session.execute(stmt)
    return WorkClaim(certificate_id, flow_run_id, at)


def claims_of(session: Session, certificate_ids: Sequence[str]) -> dict[str, WorkClaim]:
    """The claims of these certificates, by certificate id (certificates never claimed are absent)."""
    t = WorkClaimRow.__table__
    ids = list(dict.fromkeys(certificate_ids))
    found: dict[str, WorkClaim] = {}
    for i in range(0, len(ids), _CHUNK):
        stmt = select(t.c.certificate_id, t.c.flow_run_id, t.c.claimed_at).where(
            t.c.certificate_id.in_(ids[i:i + _CHUNK]))
        for cid, run_id, at in session.execute(stmt).tuples():
            found[cid] = WorkClaim(cid, run_id, at)
    return found


__all__ = ["claims_of", "upsert_claim"]
