"""The scanner's decisions over the whole inventory, as one pure pass over plain rows.

The scan reads every certificate as a plain tuple (`ScanRow`, no ORM objects) in one query and
asks `decide` what needs action now: managed starts that are due (PL-4), reviews to resume
(CA-2), renewals to open for certificates under automatic renewal, and expiry notices (NT-1).
Its cost is one pass over the rows; the work it produces grows only with what is due.

Changes from the first version (documented for the lead): a certificate is *renewed* when it has
a non-cancelled successor that is a child **or the next certificate of its own order** (so
certificate 1 of a 2-year plan is not renewed again while certificate 2 waits); expiry notices
stop only once a successor is live (a pending renewal does not stop the old certificate from
expiring); `managed_started` (keyword, optional) keeps a certificate whose managed start was
already recorded (PL-8) out of `managed_starts`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from certpilot.core.models import OrderKind, Origin, Policy, Status
from certpilot.core.plans import start_threshold

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
    not_after: datetime | None = None
    """Its expiry (part of the renew launch's idempotency key: one renewal per expiry)."""


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
    resume_applications: list[str] = field(default_factory=list)
    """Started by a managed start (PL-8 recorded) and still pending: its `apply` is launched again
    under the same key — a no-op while that run lives, a fresh run if it died (the start itself
    is never repeated)."""
    renewals_due: list[RenewalDue] = field(default_factory=list)
    notices: list[ExpiryNotice] = field(default_factory=list)
    lines: list[InventoryLine] = field(default_factory=list)

    @property
    def action_count(self) -> int:
        """How many actions this scan produces (what its cost should grow with)."""
        return (len(self.managed_starts) + len(self.resume_reviews) + len(self.resume_applications)
                + len(self.renewals_due) + len(self.notices))


_LIVE = (Status.ISSUED.value, Status.UPLOADED.value)
_CANCELLED = Status.CANCELLED.value
_NOT_ACTIVATED = Status.NOT_ACTIVATED.value
_PENDING = Status.PENDING_APPLICATION.value
_UNDER_REVIEW = Status.UNDER_REVIEW.value
_EXPIRED = Status.EXPIRED.value
_EXPIRING = Status.EXPIRING_SOON.value
_VALID = Status.VALID.value
_UPLOADED_ORIGIN = Origin.UPLOADED.value


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
    notices_sent: Collection[tuple[str, int]] = frozenset(),
    table_limit: int = 500,
    managed_started: Mapping[str, str] | None = None,
) -> ScanDecision:
    """Decide one scan over every certificate.

    Rules, in the order they are applied to each certificate:

    - PL-4 / PAY-2: a NOT_ACTIVATED certificate (or certificate 1 of an order that carries
      PAY-2's managed fee, still PENDING_APPLICATION) is a managed start when its predecessor
      (the order's previous certificate; for certificate 1 the renewed original) is ISSUED or
      UPLOADED and has at most the order kind's threshold left (30 renewal/emergency, 15
      purchase). A predecessor not issued yet starts nothing. A certificate already in
      `managed_started` (PL-8: started, or waiting for a human after PL-5 refused) is not
      started again.
    - CA-2: an UNDER_REVIEW certificate is resumed (the CA is polled once).
    - A live certificate (ISSUED/UPLOADED) is *renewed* when it has a successor that is not
      CANCELLED: a child (`parent_id`) or the next certificate of its own order. An expiring-soon
      certificate under automatic renewal (`auto_renew`, not an uploaded one: that is replaced
      by hand, EL-3) without a successor is a renewal due.
    - NT-1: a live certificate not expired, at or under a notice threshold, gets that
      threshold's notice unless (id, threshold) is in `notices_sent`, or its successor is
      already live (the renewal is done: nothing will expire unattended). A successor that is
      still pending does not silence the notice: the old certificate still expires.

    Args:
        rows: every certificate as a `ScanRow` (or a tuple in its field order).
        now: the time the scan decides at (timezone-aware UTC).
        policy: windows and thresholds (LC-4, PL-4, NT-1).
        notices_sent: (certificate id, threshold) pairs already notified (NT-1: once each).
        table_limit: at most this many lines for the inventory table, most urgent first.
        managed_started: certificate id -> outcome of its managed start already recorded
            ("started" or "waiting_manual"); those are never decided again (PL-8).

    Returns:
        The decision: counts by status, managed starts due (PL-4), reviews to resume (CA-2),
        renewals due under automatic renewal, expiry notices to send (NT-1), table lines.
    """
    decision = ScanDecision(now=now)
    started = managed_started or {}
    window = policy.expiry_window
    thresholds = {k.value: start_threshold(k, policy) for k in OrderKind}  # PL-4, one definition
    default_threshold = start_threshold(OrderKind.RENEWAL, policy)
    notice_days = tuple(sorted(policy.notice_days))
    horizon = max(notice_days, default=0)
    # First pass: index what the second needs (plan siblings, successors).
    by_id: dict[str, tuple] = {}
    sibling: dict[tuple[str, int], tuple] = {}
    successors: dict[str, list[str]] = {}
    for r in rows:
        by_id[r[0]] = r
        if r[5] is not None:
            sibling[(r[5], r[7])] = r
        if r[8] is not None and r[2] != _CANCELLED:
            successors.setdefault(r[8], []).append(r[2])
    counts = decision.counts
    lines = decision.lines
    valid_after = now + window   # LC-4: later than this is VALID (no subtraction per row)
    quiet_after = now + max(window, timedelta(days=horizon + 1))  # beyond: no status change, no notice
    for r in rows:
        cid, cn, state, origin, not_after, order_id, kind, index, parent_id, managed_fee, auto = r
        days_left: int | None = None
        status = state
        if state in _LIVE and not_after is not None:
            if not_after > quiet_after:
                # The bulk of a large inventory: valid, far from every threshold, nothing to do.
                counts[_VALID] += 1
                continue
            days_left = (not_after - now) // _DAY
            if not_after < now:
                status = _EXPIRED
            elif not_after <= valid_after:
                status = _EXPIRING
            else:
                status = _VALID
        counts[status] += 1
        action = ""
        if state == _NOT_ACTIVATED or (state == _PENDING and index == 0 and managed_fee):
            # PL-4 / PAY-2: the next certificate starts when its predecessor is at the threshold.
            outcome = started.get(cid)
            if outcome is not None:
                action = ("waiting for a manual submission (PL-5)" if outcome == "waiting_manual"
                          else "managed start done (PL-8)")
                if outcome == "started" and state == _PENDING:
                    decision.resume_applications.append(cid)
            else:
                pred = sibling.get((order_id, index - 1)) if index > 0 else by_id.get(parent_id or "")
                if pred is not None and pred[2] in _LIVE and pred[4] is not None:
                    pred_left = pred[4] - now
                    if pred_left <= thresholds.get(kind or "", default_threshold):
                        decision.managed_starts.append(ManagedStart(cid, pred[0], order_id or "", pred_left // _DAY))
                        action = "managed start due (PL-4)"
        elif state == _PENDING and started.get(cid) == "started":
            decision.resume_applications.append(cid)
            action = "application started by a managed start (PL-4)"
        elif state == _UNDER_REVIEW:
            decision.resume_reviews.append(cid)
            action = "follow CA review (CA-2)"
        elif days_left is not None and (status != _VALID or days_left <= horizon):
            # Only the few certificates near expiry get here: a valid one far from it needs nothing.
            succ = list(successors.get(cid, ()))
            if order_id is not None:
                nxt = sibling.get((order_id, index + 1))
                if nxt is not None and nxt[2] != _CANCELLED:
                    succ.append(nxt[2])
            if succ:
                action = "renewed (successor live)" if any(s in _LIVE for s in succ) else "renewal in progress"
            elif status == _EXPIRING and auto and origin != _UPLOADED_ORIGIN:
                decision.renewals_due.append(RenewalDue(cid, cn, days_left, origin, not_after))
                action = "renew (automatic renewal)"
            if days_left <= horizon and status != _EXPIRED and not any(s in _LIVE for s in succ):
                threshold = notice_threshold(days_left, notice_days)
                if threshold is not None and (cid, threshold) not in notices_sent:
                    decision.notices.append(ExpiryNotice(cid, cn, threshold, days_left))
                    if not action:
                        action = f"expiry notice ({threshold} days, NT-1)"
            if not action and status == _EXPIRING:
                action = "renew (certpilot renew)" if origin != _UPLOADED_ORIGIN else "replace (upload)"
            elif not action and status == _EXPIRED:
                action = "emergency replacement (EM-1)"
        if action or status in (_EXPIRING, _EXPIRED):
            plan = f"{kind} #{index + 1}" if order_id else "-"
            lines.append(InventoryLine(cid, cn, status, days_left, plan, action or "-"))
    lines.sort(key=lambda line: (line.days_left if line.days_left is not None else 10**9, line.common_name))
    del lines[table_limit:]
    return decision
