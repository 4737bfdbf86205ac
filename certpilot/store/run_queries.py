"""Work claims: which flow run works on which certificate (table `work_claims`).

Every function works in the caller's session (its transaction); none commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, exists, false, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from certpilot.core.deployment import DeploymentState
from certpilot.core.models import Status
from certpilot.core.runs import WorkClaim
from certpilot.store.tables import CertificateRow, OrderRow
from certpilot.store.tables_deploy import DeploymentTargetRow, DeploymentTaskRow
from certpilot.store.tables_runs import WorkClaimRow

_OPEN = (DeploymentState.PENDING.value, DeploymentState.RUNNING.value)

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


def pending_work(session: Session,
                 certificate_ids: Sequence[str]) -> list[tuple[str, str, str | None, str | None, int]]:
    """Of these certificates, those still pending application, not temporary (an emergency's
    own flow runs those): (id, common name, order id, the certificate the order renews, plan index)."""
    if not certificate_ids:
        return []
    c, o = CertificateRow.__table__, OrderRow.__table__
    ids = list(dict.fromkeys(certificate_ids))
    rows: list[tuple[str, str, str | None, str | None, int]] = []
    for i in range(0, len(ids), _CHUNK):
        stmt = (select(c.c.id, c.c.common_name, c.c.order_id, o.c.certificate_id, c.c.plan_index)
                .select_from(c.outerjoin(o, o.c.id == c.c.order_id))
                .where(c.c.id.in_(ids[i:i + _CHUNK]), c.c.state == Status.PENDING_APPLICATION.value,
                       c.c.temporary == false()))
        rows += [tuple(r) for r in session.execute(stmt).tuples()]
    return rows


def unfinished_deployments(session: Session, issued_now: Sequence[str] = ()) -> list[tuple[str, str, str | None]]:
    """Issued certificates whose deployment is unfinished: (id, common name, order id).

    Unfinished: a deployment task still pending or running; or none planned yet while the
    certificate it follows (its parent, or an earlier certificate of its order: DEP-1) holds a
    target — asked only of certificates a renewal run claimed or `issued_now` (the scan's
    reviews just issued them), so the cost follows the work in flight, not the inventory.
    Temporary (emergency) certificates are left to the emergency's own runs.
    """
    c, t, tg, w = (CertificateRow.__table__, DeploymentTaskRow.__table__, DeploymentTargetRow.__table__,
                   WorkClaimRow.__table__)
    issued = and_(c.c.state == Status.ISSUED.value, c.c.temporary == false())
    with_open_tasks = (select(c.c.id, c.c.common_name, c.c.order_id)
                       .where(issued, c.c.id.in_(select(t.c.certificate_id).where(t.c.state.in_(_OPEN)))))
    earlier = aliased(CertificateRow)
    holder_has_target = exists().where(or_(
        tg.c.certificate_id == c.c.parent_id,
        tg.c.certificate_id.in_(select(earlier.id).where(earlier.order_id == c.c.order_id,
                                                         earlier.plan_index < c.c.plan_index).correlate(c))))
    candidate = c.c.id.in_(select(w.c.certificate_id))
    if issued_now:
        candidate = or_(candidate, c.c.id.in_(list(dict.fromkeys(issued_now))))
    never_planned = (select(c.c.id, c.c.common_name, c.c.order_id)
                     .where(issued, candidate, ~exists().where(t.c.certificate_id == c.c.id), holder_has_target))
    found = {r[0]: tuple(r) for r in session.execute(with_open_tasks).tuples()}
    for r in session.execute(never_planned).tuples():
        found.setdefault(r[0], tuple(r))
    return list(found.values())


__all__ = ["claims_of", "pending_work", "unfinished_deployments", "upsert_claim"]
