"""The scanner's pure decision (certpilot.core.scan.decide): PL-4, PL-8, CA-2, NT-1, LC-4.

Fixed clock, table-driven, exact expected values.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certpilot.core.models import Policy
from certpilot.core.scan import (
    ExpiryNotice,
    InventoryLine,
    ManagedStart,
    RenewalDue,
    ScanRow,
    decide,
    notice_threshold,
)

NOW = datetime(2025, 9, 1, tzinfo=UTC)
POLICY = Policy()
D = timedelta(days=1)


def row(cid: str, state: str = "issued", *, left: timedelta | None = None, origin: str = "official",
        order: str | None = None, kind: str | None = None, index: int = 0, parent: str | None = None,
        fee: bool | None = None, auto: bool = True, start: int | None = None) -> ScanRow:
    """A certificate `left` before expiry at NOW (None: no expiry yet)."""
    not_after = NOW + left if left is not None else None
    return ScanRow(cid, f"{cid}.example.test", state, origin, not_after, order, kind if order else None, index,
                   parent, fee if order else None, auto, start)


def plan(kind: str, first_left: timedelta, *, first_state: str = "issued") -> list[ScanRow]:
    """An original, and a 2-year order renewing it: certificate 1 at `first_left`, 2 not activated."""
    return [
        row("orig", left=first_left - 300 * D, auto=False),
        row("c1", first_state, left=first_left if first_state == "issued" else None, order="o1", kind=kind, index=0,
            parent="orig", fee=False),
        row("c2", "not_activated", order="o1", kind=kind, index=1, parent="orig", fee=False),
    ]


@pytest.mark.parametrize("kind, left, due", [
    ("renewal", 31 * D, False),
    ("renewal", 30 * D + timedelta(seconds=1), False),   # one second above the threshold
    ("renewal", 30 * D, True),                           # exactly at the threshold
    ("renewal", 29 * D, True),
    ("renewal", -2 * D, True),                           # predecessor already expired: still starts
    ("purchase", 16 * D, False),                         # the seed's 15 days for a purchase
    ("purchase", 15 * D, True),
    ("emergency", 30 * D, True),
])
def test_pl4_managed_start_thresholds(kind, left, due):
    """PL-4: the next certificate starts when the current one has at most 30 (renewal) / 15
    (purchase) days left."""
    d = decide(plan(kind, left), NOW, POLICY)
    expected = [ManagedStart("c2", "c1", "o1", left // D)] if due else []
    assert d.managed_starts == expected


@pytest.mark.parametrize("state", ["pending_application", "under_review", "rejected", "cancelled"])
def test_pl4_predecessor_not_issued_starts_nothing(state):
    """PL-4: certificate 2 waits while certificate 1 is not issued, whatever the dates."""
    d = decide(plan("renewal", 10 * D, first_state=state), NOW, POLICY)
    assert d.managed_starts == []


@pytest.mark.parametrize("fee, left, due", [
    (True, 30 * D, True),     # PAY-2: certificate 1's request starts by itself at 30 days
    (True, 31 * D, False),
    (False, 20 * D, False),   # no managed fee: the owner submits it (PL-1), no managed start
])
def test_pay2_pl4_first_certificate_of_a_managed_fee_order(fee, left, due):
    """PAY-2 / PL-4: certificate 1 of an order with the managed fee starts when the original has 30 days."""
    rows = [row("orig", left=left),
            row("c1", "pending_application", order="o1", kind="renewal", index=0, parent="orig", fee=fee)]
    d = decide(rows, NOW, POLICY)
    assert d.managed_starts == ([ManagedStart("c1", "orig", "o1", left // D)] if due else [])


@pytest.mark.parametrize("outcome, action", [
    ("started", "managed start done (PL-8)"),
    ("waiting_manual", "waiting for a manual submission (PL-5)"),
])
def test_pl8_recorded_start_is_not_decided_again(outcome, action):
    """PL-8 / PL-5: a certificate whose managed start is recorded is never started twice."""
    d = decide(plan("renewal", 10 * D), NOW, POLICY, managed_started={"c2": outcome})
    assert d.managed_starts == []
    assert [line.next_action for line in d.lines if line.id == "c2"] == [action]


@pytest.mark.parametrize("left, threshold", [
    (45 * D, None),
    (31 * D, None),
    (30 * D + timedelta(hours=23), 30),   # 30 whole days left
    (30 * D, 30),
    (29 * D, 30),
    (14 * D, 14),
    (10 * D, 14),
    (7 * D, 7),
    (5 * D, 7),      # first seen at 5 days: the 7-day notice (skipped thresholds are not sent late)
    (3 * D, 3),
    (1 * D, 1),
    (timedelta(hours=12), 1),
    (timedelta(0), 1),                     # valid at not_after itself (LC-4)
    (-timedelta(seconds=1), None),         # expired: no expiry notice
])
def test_nt1_notice_thresholds(left, threshold):
    """NT-1: notices at 30, 14, 7, 3, 1 days; the threshold just crossed, none once expired."""
    d = decide([row("a", left=left, auto=False)], NOW, POLICY)
    expected = [ExpiryNotice("a", "a.example.test", threshold, left // D)] if threshold else []
    assert d.notices == expected


@pytest.mark.parametrize("sent, left, expected", [
    ({("a", 7)}, 5 * D, []),                                    # the 7-day notice went out already
    ({("a", 7)}, 3 * D, [ExpiryNotice("a", "a.example.test", 3, 3)]),
    ({("a", 30), ("a", 14)}, 14 * D, []),
    ({("b", 14)}, 14 * D, [ExpiryNotice("a", "a.example.test", 14, 14)]),   # another certificate's
])
def test_nt1_each_threshold_once(sent, left, expected):
    """NT-1: each threshold's notice once per certificate."""
    assert decide([row("a", left=left, auto=False)], NOW, POLICY, notices_sent=sent).notices == expected


def test_nt1_notice_threshold_helper():
    """NT-1: the smallest configured day count at or above the days left."""
    days = (1, 3, 7, 14, 30)
    assert [notice_threshold(n, days) for n in (31, 30, 15, 8, 7, 4, 2, 1, 0, -1)] == [
        None, 30, 30, 14, 7, 7, 3, 1, 1, 1]


def test_ca2_under_review_is_resumed():
    """CA-2: an application under review is followed by the scanner (no worker waits on it)."""
    rows = [row("r1", "under_review", order="o1", kind="purchase"), row("r2", "pending_application"),
            row("r3", "rejected")]
    d = decide(rows, NOW, POLICY)
    assert d.resume_reviews == ["r1"]
    assert [line.next_action for line in d.lines] == ["follow CA review (CA-2)"]


@pytest.mark.parametrize("rows, due", [
    ([row("a", left=25 * D)], ["a"]),                                             # expiring soon, auto
    ([row("a", left=30 * D)], ["a"]),                                             # PL-1/PAY-2: due at 30 days
    ([row("a", left=30 * D + timedelta(seconds=1))], []),                         # not yet: the fee is avoided
    ([row("a", left=50 * D)], []),                                                # expiring soon, not due yet
    ([row("a", left=50 * D, start=50)], ["a"]),                                   # its own policy starts earlier
    ([row("a", left=60 * D, start=60)], ["a"]),                                   # LC-4: 60 days is expiring soon
    ([row("a", left=60 * D + timedelta(seconds=1), start=60)], []),               # still valid
    ([row("a", left=25 * D, auto=False)], []),                                    # automatic renewal off
    ([row("a", left=25 * D, origin="uploaded")], []),                             # EL-3: replaced by upload
    ([row("a", left=25 * D, origin="private-ca")], ["a"]),                        # EL-4: reissued
    ([row("a", left=-1 * D)], []),                                                # expired: EM-1, not auto
    ([row("a", left=25 * D), row("n", "cancelled", order="o", kind="renewal", parent="a")], ["a"]),
    ([row("a", left=25 * D), row("n", "pending_application", order="o", kind="renewal", parent="a")], []),
    ([row("a", left=25 * D), row("n", "rejected", order="o", kind="renewal", parent="a")], []),
    # certificate 1 of a 2-year plan near its end: certificate 2 follows, no second renewal
    ([row("c1", left=25 * D, order="o", kind="renewal", index=0, parent="x"),
      row("c2", "not_activated", order="o", kind="renewal", index=1, parent="x")], []),
    ([row("c1", left=25 * D, order="o", kind="renewal", index=0, parent="x"),
      row("c2", "cancelled", order="o", kind="renewal", index=1, parent="x")], ["c1"]),
])
def test_lc4_renewal_due_under_automatic_renewal(rows, due):
    """LC-4 / EL-1 / PL-1 / PAY-2: expiring-soon certificates under automatic renewal without a
    (non-cancelled) successor are renewed once 30 days are left (no managed-service fee), or earlier
    by their own policy; cancelled children (PL-7) do not count as a renewal."""
    d = decide(rows, NOW, POLICY)
    assert [r.certificate_id for r in d.renewals_due] == due


def test_renewal_due_carries_expiry_for_the_launch_key():
    """The renew launch's idempotency key uses the expiry: the decision carries it."""
    d = decide([row("a", left=25 * D)], NOW, POLICY)
    assert d.renewals_due == [RenewalDue("a", "a.example.test", 25, "official", NOW + 25 * D)]


@pytest.mark.parametrize("child_state, notified", [
    ("pending_application", True),     # the renewal is not done: the old one still expires
    ("not_activated", True),
    ("issued", False),                 # the successor is live: nothing expires unattended
    ("cancelled", True),
])
def test_nt1_notice_until_the_successor_is_live(child_state, notified):
    """NT-1: a pending renewal does not silence the expiry notice; a live successor does."""
    rows = [row("a", left=7 * D), row("n", child_state, left=400 * D if child_state == "issued" else None,
                                      order="o", kind="renewal", parent="a")]
    d = decide(rows, NOW, POLICY)
    assert [n.certificate_id for n in d.notices] == (["a"] if notified else [])


def test_lc4_counts_and_inventory_lines():
    """LC-4: statuses derived from dates; the table lists what needs attention, most urgent first."""
    rows = [
        row("valid", left=200 * D, auto=False),
        row("soon", left=45 * D, auto=False),
        row("edge", left=60 * D, auto=False),                     # exactly the window: expiring soon
        row("gone", left=-3 * D, auto=False),
        row("up", left=20 * D, origin="uploaded"),
        row("na", "not_activated", order="o", kind="renewal", index=1),
        row("rev", "under_review", order="p", kind="purchase"),
    ]
    d = decide(rows, NOW, POLICY)
    assert dict(d.counts) == {"valid": 1, "expiring_soon": 3, "expired": 1, "not_activated": 1, "under_review": 1}
    assert d.lines == [
        InventoryLine("gone", "gone.example.test", "expired", -3, "-", "emergency replacement (EM-1)"),
        InventoryLine("up", "up.example.test", "expiring_soon", 20, "-", "expiry notice (30 days, NT-1)"),
        InventoryLine("soon", "soon.example.test", "expiring_soon", 45, "-", "renew (certpilot renew)"),
        InventoryLine("edge", "edge.example.test", "expiring_soon", 60, "-", "renew (certpilot renew)"),
        InventoryLine("rev", "rev.example.test", "under_review", None, "purchase #1", "follow CA review (CA-2)"),
    ]
    assert [line.id for line in decide(rows, NOW, POLICY, table_limit=2).lines] == ["gone", "up"]
    assert d.action_count == 2   # the notice for "up" and the review


def test_decide_accepts_plain_tuples():
    """Rows may be plain tuples in ScanRow's field order (what a Core select returns)."""
    d = decide([tuple(r) for r in plan("renewal", 30 * D)], NOW, POLICY)
    assert d.managed_starts == [ManagedStart("c2", "c1", "o1", 30)]


@pytest.mark.parametrize("left, threshold", [(90 * D + timedelta(hours=23), 90), (91 * D, None)])
def test_nt1_notice_days_beyond_the_expiry_window(left, threshold):
    """NT-1: notice days are configurable, also beyond LC-4's 60-day window (a 90-day notice)."""
    d = decide([row("a", left=left, auto=False)], NOW, Policy(notice_days=(90,)))
    assert [n.threshold_days for n in d.notices] == ([threshold] if threshold else [])


@pytest.mark.parametrize("state, outcome, resumed", [
    ("pending_application", "started", True),          # started, its apply run may have died: relaunch
    ("pending_application", "waiting_manual", False),  # PL-5: waits for a human, nothing to launch
    ("under_review", "started", False),                # the application is at the CA: follow it instead
    ("not_activated", None, False),
])
def test_pl8_started_application_is_relaunched_not_restarted(state, outcome, resumed):
    """PL-8: a recorded managed start is never decided again, but a certificate it left pending
    gets its `apply` launched again (same key: a no-op while that run lives, a new run if it died)."""
    rows = plan("renewal", 10 * D)
    rows[2] = rows[2]._replace(state=state)
    d = decide(rows, NOW, POLICY, managed_started={"c2": outcome} if outcome else {})
    assert d.managed_starts == [] or not resumed
    assert d.resume_applications == (["c2"] if resumed else [])
