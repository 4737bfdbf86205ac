"""Use case: the whole inventory and every deployment target, for the UI's artifacts.

The scan's "needs attention" table shows what is due; this report shows everything: counts per
status and per origin, expiry buckets, the certificates page by page (soonest expiry first, up to
`max_pages` pages; the counts always cover all of them), and one line per deployment target with
its newest task and what the fleet probe found at its endpoints. One read-only transaction: the
certificates in one query (the metrics' plain rows), the targets in three.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from certpilot.core.status import DATED_STATES
from certpilot.operations.common import iso
from certpilot.store import fleet_queries, metrics_queries

if TYPE_CHECKING:
    from certpilot.runtime import Services

_DATED = frozenset(s.value for s in DATED_STATES)
_DAY = 86400.0
BUCKETS = ((7, "expire within 7 days"), (30, "within 30 days"), (60, "within 60 days"))


@dataclass(frozen=True)
class InventoryReport:
    """Everything in the inventory, summarised and paged, and the deployment targets.

    Attributes:
        at: ISO time the statuses are derived at.
        total: certificates in the inventory.
        counts: (status, n) for every status present, most frequent first.
        origins: (origin, n).
        expiring: (bucket label, n) of live certificates expiring within 7 / 30 / 60 days.
        pages: the certificate rows, `page_size` a page, soonest expiry first.
        shown: how many rows the pages hold (the rest are counted, not listed).
        deployments: one row per target.
    """

    at: str
    total: int
    counts: tuple[tuple[str, int], ...]
    origins: tuple[tuple[str, int], ...]
    expiring: tuple[tuple[str, int], ...]
    pages: tuple[tuple[dict[str, Any], ...], ...]
    shown: int
    deployments: tuple[dict[str, Any], ...]


def inventory_report(svc: Services, at: datetime | None = None, *, page_size: int = 500,
                     max_pages: int = 4) -> InventoryReport:
    """The report (see the module doc) as of `at` (default: the services' clock)."""
    moment = at or svc.now()
    now = moment.timestamp()
    window = svc.policy.expiry_window.total_seconds()
    with svc.session(readonly=True) as s:
        certs = metrics_queries.certificate_rows(s)
        targets = fleet_queries.deployment_lines(s)
    statuses: Counter[str] = Counter()
    origins: Counter[str] = Counter()
    buckets = Counter()
    rows = []
    for cid, cn, origin, level, state, not_after in certs:
        origins[origin] += 1
        if state in _DATED and not_after is not None:
            left = not_after - now
            status = "expired" if left < 0 else "expiring_soon" if left <= window else "valid"
            for days, label in BUCKETS:
                if 0 <= left <= days * _DAY:
                    buckets[label] += 1
        else:
            status = state
        statuses[status] += 1
        rows.append((not_after if not_after is not None else float("inf"), cid, cn, origin, level, status, left
                     if state in _DATED and not_after is not None else None))
    rows.sort(key=lambda r: (r[0], r[1]))
    listed = rows[: page_size * max_pages]
    lines = [{"name": cn, "id": cid, "status": status, "days left": "" if left is None else int(left // _DAY),
              "origin": origin, "level": level} for _, cid, cn, origin, level, status, left in listed]
    pages = tuple(tuple(lines[i:i + page_size]) for i in range(0, len(lines), page_size))
    deployments = tuple({"target": name or tid, "id": tid, "kind": kind, "certificate": f"{cn} ({cid})",
                         "endpoints": n, "last deployment": state or "none",
                         "progress": "" if progress is None else progress, "finished": iso(finished) or "",
                         "probe findings": found or ("not probed" if n else "no endpoints")}
                        for tid, name, kind, cid, cn, n, state, progress, finished, found in targets)
    return InventoryReport(at=iso(moment), total=len(rows),
                           counts=tuple(statuses.most_common()), origins=tuple(sorted(origins.items())),
                           expiring=tuple((label, buckets[label]) for _, label in BUCKETS), pages=pages,
                           shown=len(lines), deployments=deployments)
