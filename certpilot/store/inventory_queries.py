"""The operator's inventory views in SQL: `certpilot list` filters, sorts and pages here.

LC-4 statuses are derived at read time from `not_after` and the time asked (`core.status`);
nothing stale is stored. To filter 100,000 certificates without deriving every status in
Python, a status asked for is turned into the date range it means (`status_clauses`), mirroring
`core.status.status_of_remaining` exactly (``left = not_after - now``):

- EXPIRED        ``left < 0``            ⇔ ``not_after < now``
- EXPIRING_SOON  ``0 <= left <= window`` ⇔ ``now <= not_after <= now + window``
- VALID          ``left > window``       ⇔ ``not_after > now + window``

and only for the dated lifecycle states (`core.status.DATED_STATES`) with a `not_after`; any
other status is the stored lifecycle state. tests/unit/test_inventory_sql.py checks the SQL
answer against the pure rule on the boundary instants.

The order is the list's (soonest expiry first, then id; certificates without dates last, by id),
read from migration 0016's ``(not_after, id)`` index in two phases (dated, then undated) so that
no phase sorts in a temporary B-tree. Rows are plain Core rows, never ORM objects; every function
works in the caller's session.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, select
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from certpilot.core.models import Certificate, Status
from certpilot.core.status import DATED_STATES
from certpilot.store.repository import certificate_from_row
from certpilot.store.tables import CertificateRow

_T = CertificateRow.__table__
VIEW_COLUMNS = (_T.c.id, _T.c.common_name, _T.c.names, _T.c.cert_type, _T.c.origin, _T.c.level, _T.c.brand,
                _T.c.key_algorithm, _T.c.state, _T.c.not_before, _T.c.not_after, _T.c.parent_id, _T.c.order_id,
                _T.c.plan_index, _T.c.serial, _T.c.fingerprint_sha256, _T.c.owner_email)
"""The columns of one inventory line, in this order (`ViewRow`)."""

ViewRow = Row[Any]
"""A row of `VIEW_COLUMNS`: (id, common_name, names, cert_type, origin, level, brand, key_algorithm,
state, not_before, not_after, parent_id, order_id, plan_index, serial, fingerprint_sha256,
owner_email)."""

_DATED = sorted(s.value for s in DATED_STATES)
_IN_BATCH = 2000
"""Parent ids per ``IN (...)`` when the children of a page are loaded."""


def status_clauses(status: Status, *, now: datetime, window: timedelta) -> list[ColumnElement[bool]]:
    """WHERE clauses keeping the certificates whose derived status at `now`, or stored lifecycle
    state, is `status` (the `list --status` filter; see the module for the LC-4 mapping).

    Args:
        status: a derived status (valid, expiring_soon, expired) or a lifecycle state.
        now: the time asked (aware UTC).
        window: the expiry window (`Policy.expiry_window`).
    """
    dated = and_(_T.c.state.in_(_DATED), _T.c.not_after.is_not(None))
    if status is Status.EXPIRED:
        return [dated, _T.c.not_after < now]
    if status is Status.EXPIRING_SOON:
        return [dated, _T.c.not_after >= now, _T.c.not_after <= now + window]
    if status is Status.VALID:
        return [dated, _T.c.not_after > now + window]
    # A lifecycle state: its rows, whatever their derived status (a dated state's stored value).
    return [_T.c.state == status.value]


def expiring_clauses(days: int, *, now: datetime, hide_expired: bool = False) -> list[ColumnElement[bool]]:
    """WHERE clauses keeping live certificates (dated states with an expiry) that expire within
    `days` of `now`, the expired ones included unless `hide_expired` (`list --expiring-within`)."""
    clauses = [_T.c.state.in_(_DATED), _T.c.not_after.is_not(None), _T.c.not_after <= now + timedelta(days=days)]
    if hide_expired:
        clauses.append(_T.c.not_after >= now)
    return clauses


def count(session: Session, clauses: Sequence[ColumnElement[bool]] = ()) -> int:
    """How many certificates the clauses keep (all of them without clauses)."""
    return session.scalar(select(func.count()).select_from(_T).where(*clauses)) or 0


def _phases(clauses: Sequence[ColumnElement[bool]]):
    dated = select(*VIEW_COLUMNS).where(*clauses, _T.c.not_after.is_not(None)).order_by(_T.c.not_after, _T.c.id)
    undated = select(*VIEW_COLUMNS).where(*clauses, _T.c.not_after.is_(None)).order_by(_T.c.id)
    return dated, undated


def page(session: Session, clauses: Sequence[ColumnElement[bool]] = (), *, offset: int = 0,
         limit: int | None = None) -> list[ViewRow]:
    """The certificates the clauses keep, in the list's order, from `offset`, at most `limit`.

    Args:
        session: an open store session.
        clauses: from `status_clauses` / `expiring_clauses` (none: the whole inventory).
        offset: rows to skip (0 or more).
        limit: at most this many rows (None: all).
    """
    dated, undated = _phases(clauses)
    rows = list(session.execute(dated.offset(offset or None).limit(limit)))
    if limit is not None and len(rows) >= limit:
        return rows
    # The undated rows follow every dated one: skip what the offset still covers of them.
    skip = 0 if rows or not offset else max(0, offset - count(session, [*clauses, _T.c.not_after.is_not(None)]))
    more = None if limit is None else limit - len(rows)
    return rows + list(session.execute(undated.offset(skip or None).limit(more)))


def stream(session: Session, clauses: Sequence[ColumnElement[bool]] = (), *, chunk: int = 2000
           ) -> Iterator[list[ViewRow]]:
    """Every certificate the clauses keep, in the list's order, as lists of up to `chunk` rows
    fetched as they are read (memory bounded by the chunk, not the inventory)."""
    for stmt in _phases(clauses):
        result = session.execute(stmt, execution_options={"yield_per": chunk})
        yield from (list(part) for part in result.partitions(chunk))


def children_of(session: Session, parent_ids: Iterable[str]) -> dict[str, list[Certificate]]:
    """The renewal certificates (LC-2) of each of `parent_ids`: ``{parent id: [children]}``, by
    plan index then id; parents without children are absent. Indexed by `parent_id`, batched."""
    ids = list(dict.fromkeys(parent_ids))
    found: dict[str, list[Certificate]] = {}
    for i in range(0, len(ids), _IN_BATCH):
        batch = ids[i:i + _IN_BATCH]
        rows = session.scalars(select(CertificateRow).where(CertificateRow.parent_id.in_(batch) if batch else false())
                               .order_by(CertificateRow.plan_index, CertificateRow.id))
        for r in rows:
            found.setdefault(r.parent_id, []).append(certificate_from_row(r))
    return found



def all_children(session: Session) -> dict[str, list[Certificate]]:
    """The renewal certificates (LC-2) of every parent, as `children_of` gives them: one indexed
    query whose size is the number of renewals, not of certificates (the whole list's markers)."""
    found: dict[str, list[Certificate]] = {}
    rows = session.scalars(select(CertificateRow).where(CertificateRow.parent_id.is_not(None))
                           .order_by(CertificateRow.plan_index, CertificateRow.id))
    for r in rows:
        found.setdefault(r.parent_id, []).append(certificate_from_row(r))
    return found


def top_level_named(session: Session, names: Iterable[str]) -> list[tuple[str, list[str], str]]:
    """(id, names, origin) of the certificates that renew none (no parent) whose common name is
    one of `names`: what the demo looks for before loading (indexed by common name)."""
    wanted = sorted(set(names))
    if not wanted:
        return []
    stmt = select(_T.c.id, _T.c.names, _T.c.origin).where(_T.c.common_name.in_(wanted), _T.c.parent_id.is_(None))
    return [(r[0], list(r[1]), r[2]) for r in session.execute(stmt)]


def rows_of(session: Session, ids: Iterable[str]) -> list[ViewRow]:
    """The inventory lines of `ids` with their renewal certificates (LC-2, every generation), in
    the list's order; unknown ids are left out."""
    found: dict[str, ViewRow] = {}
    todo = list(dict.fromkeys(ids))
    while todo:
        batch, todo = todo[:_IN_BATCH], todo[_IN_BATCH:]
        rows = session.execute(select(*VIEW_COLUMNS).where(_T.c.id.in_(batch) | _T.c.parent_id.in_(batch))).all()
        for r in rows:
            if r[0] not in found:
                found[r[0]] = r
                if r[0] not in batch:
                    todo.append(r[0])
    return sorted(found.values(), key=lambda r: (r[10] is None, r[10] or _MAX, r[0]))


_MAX = datetime.max.replace(tzinfo=UTC)


def ids_by_fingerprint(session: Session, fingerprints: Iterable[str]) -> dict[str, str]:
    """{fingerprint: certificate id} of the given SHA-256 fingerprints already in the inventory
    (the unique fingerprint index, batched): what a bulk import skips without reading files."""
    wanted = list(dict.fromkeys(fingerprints))
    found: dict[str, str] = {}
    for i in range(0, len(wanted), _IN_BATCH):
        stmt = select(_T.c.fingerprint_sha256, _T.c.id).where(_T.c.fingerprint_sha256.in_(wanted[i:i + _IN_BATCH]))
        found.update((fp, cid) for fp, cid in session.execute(stmt))
    return found
