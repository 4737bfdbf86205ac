"""The scanner's decisions over the whole inventory, as one pure pass over plain rows.

The scan reads every certificate as a plain tuple (`ScanRow`, no ORM objects) in one query and
asks `decide` what needs action now: managed starts that are due (PL-4), reviews to resume
(CA-2), renewals to open for certificates under automatic renewal, and expiry notices (NT-1).
Its cost is one pass over the rows; the work it produces grows only with what is due.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from certpilot.core.models import OrderKind, Origin, Policy, Status

_DAY = timedelta(days=1)


class ScanRow(NamedTuple):
    """One certificate as the scanner sees it (a row of certificates LEFT JOIN orders)."""

    id: str
    common_name: str
    state: str
    origin: str
    not_after: datetime | None
    order_id: str | None
    order_kind: str | None
    plan_index: int
    parent_id: str | None
    managed_fee: bool | None
    auto_renew: bool


@dataclass(frozen=True, slots=True)
class ManagedStart:
    """PL-4: the next certificate of a plan whose application starts now."""

    certificate_id: str
    predecessor_id: str
    order_id: str
    days_left: int
    """Remaining days of the predecessor when the start was decided."""


@dataclass(frozen=True, slots=True)
class ExpiryNotice:
    """NT-1: an owner hears of an expiring certificate once per threshold."""

    certificate_id: str
    common_name: str
    threshold_days: int
    days_left: int


@dataclass(frozen=True, slots=True)
class RenewalDue:
    """A certificate under automatic renewal that is expiring soon and has no renewal yet."""

    certificate_id: str
    common_name: str
    days_left: int
    origin: str


@dataclass(frozen=True, slots=True)
class InventoryLine:
    """One line of the scan's inventory table artifact."""

    id: str
    common_name: str
    status: str
    days_left: int | None
    plan: str
    next_action: str


@dataclass
class ScanDecision:
    """Everything one scan must do, decided at `now`."""

    now: datetime
    counts: Counter = field(default_factory=Counter)
    managed_starts: list[ManagedStart] = field(default_factory=list)
    resume_reviews: list[str] = field(default_factory=list)
    renewals_due: list[RenewalDue] = field(default_factory=list)
    notices: list[ExpiryNotice] = field(default_factory=list)
    lines: list[InventoryLine] = field(default_factory=list)

    @property
    def action_count(self) -> int:
        """How many actions this scan produces (what its cost should grow with)."""
        return len(self.managed_starts) + len(self.resume_reviews) + len(self.renewals_due) + len(self.notices)


_LIVE = (Status.ISSUED.value, Status.UPLOADED.value)


def notice_threshold(days_left: int, notice_days: tuple[int, ...]) -> int | None:
    """NT-1: the notice threshold crossed at `days_left` (the smallest configured day count
    still at or above it), or None when no threshold is crossed yet.

    A certificate first seen with 5 days left gets the 7-day notice, then the 3-day one, then
    the 1-day one: each threshold once, the ones skipped over are not sent late.
    """
    crossed = [d for d in notice_days if days_left <= d]
    return min(crossed) if crossed else None


def decide(
    rows: list[ScanRow] | list[tuple],
    now: datetime,
    policy: Policy,
    *,
    notices_sent: set[tuple[str, int]] = frozenset(),  # type: ignore[assignment]
    table_limit: int = 500,
) -> ScanDecision:
    """Decide one scan over every certificate.

    Args:
        rows: every certificate as a `ScanRow` (or a tuple in its field order).
        now: the time the scan decides at (timezone-aware UTC).
        policy: windows and thresholds (LC-4, PL-4, NT-1).
        notices_sent: (certificate id, threshold) pairs already notified (NT-1: once each).
        table_limit: at most this many lines for the inventory table, most urgent first.

    Returns:
        The decision: counts by status, managed starts due (PL-4), reviews to resume (CA-2),
        renewals due under automatic renewal, expiry notices to send (NT-1), table lines.
    """
    decision = ScanDecision(now=now)
    window = policy.expiry_window
    thresholds = {OrderKind(k).value: timedelta(days=v) for k, v in policy.managed_start_days.items()}
    notice_days = tuple(sorted(policy.notice_days))
    horizon = max(notice_days, default=0)
    # First pass: index what the second needs (plan siblings, certificates already renewed).
    by_id: dict[str, tuple] = {}
    sibling: dict[tuple[str, int], tuple] = {}
    renewed: set[str] = set()
    for r in rows:
        by_id[r[0]] = r
        if r[5] is not None:
            sibling[(r[5], r[7])] = r
        if r[8] is not None and r[2] != Status.CANCELLED.value:
            renewed.add(r[8])
    counts = decision.counts
    lines = decision.lines
    for r in rows:
        cid, cn, state, origin, not_after, order_id, kind, index, parent_id, managed_fee, auto = r
        days_left: int | None = None
        status = state
        if state in _LIVE and not_after is not None:
            left = not_after - now
            days_left = left // _DAY
            if left < timedelta(0):
                status = Status.EXPIRED.value
            elif left <= window:
                status = Status.EXPIRING_SOON.value
            else:
                status = Status.VALID.value
        counts[status] += 1
        action = ""
        if state == Status.NOT_ACTIVATED.value or (
            state == Status.PENDING_APPLICATION.value and index == 0 and managed_fee
        ):
            # PL-4 / PAY-2: the next certificate starts when its predecessor is at the threshold.
            pred = sibling.get((order_id, index - 1)) if index > 0 else by_id.get(parent_id or "")
            if pred is not None and pred[2] in _LIVE and pred[4] is not None:
                pred_left = pred[4] - now
                if pred_left <= thresholds.get(kind or OrderKind.RENEWAL.value, thresholds[OrderKind.RENEWAL.value]):
                    decision.managed_starts.append(
                        ManagedStart(cid, pred[0], order_id or "", pred_left // _DAY))
                    action = "managed start due (PL-4)"
        elif state == Status.UNDER_REVIEW.value:
            decision.resume_reviews.append(cid)
            action = "follow CA review (CA-2)"
        elif days_left is not None and cid not in renewed:
            if status == Status.EXPIRING_SOON.value and auto and origin != Origin.UPLOADED.value:
                decision.renewals_due.append(RenewalDue(cid, cn, days_left, origin))
                action = "renew (automatic renewal)"
            if days_left <= horizon and status != Status.EXPIRED.value:
                threshold = notice_threshold(days_left, notice_days)
                if threshold is not None and (cid, threshold) not in notices_sent:
                    decision.notices.append(ExpiryNotice(cid, cn, threshold, days_left))
                    action = action or f"expiry notice ({threshold} days, NT-1)"
            if not action and status == Status.EXPIRING_SOON.value:
                action = "renew (certpilot renew)" if origin != Origin.UPLOADED.value else "replace (upload)"
            elif not action and status == Status.EXPIRED.value:
                action = "emergency replacement (EM-1)"
        if action or status in (Status.EXPIRING_SOON.value, Status.EXPIRED.value):
            plan = f"{kind} #{index + 1}" if order_id else "-"
            lines.append(InventoryLine(cid, cn, status, days_left, plan, action or "-"))
    lines.sort(key=lambda line: (line.days_left if line.days_left is not None else 10**9, line.common_name))
    del lines[table_limit:]
    return decision
