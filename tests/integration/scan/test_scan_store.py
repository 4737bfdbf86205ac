"""The scanner's store operations on SQLite and PostgreSQL: one-query rows, exactly-once managed
starts (PL-4, PL-5, PL-8), notices once each (NT-1, NT-2)."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from scan_inventory import DAY, NOW, add_managed_fee_order, add_plan, certificate, counts, seed_ledger
from sqlalchemy import select

from certpilot.core.models import Contact, Level, Origin, Policy, Status
from certpilot.core.scan import ManagedStart, ScanRow
from certpilot.operations import scan as ops
from certpilot.store import scan_queries
from certpilot.store.db import session_scope
from certpilot.store.repository import Repository
from certpilot.store.tables_pipeline import ManagedStartRow, NoticeRow, RenewalPolicyRow


def writable(names: list[str]) -> bool:
    return True


def not_writable(names: list[str]) -> bool:
    return False


def test_load_rows_one_query_in_scanrow_order(store_url):
    """load_rows: certificates LEFT JOIN orders LEFT JOIN renewal_policies (LEFT JOIN
    ca_applications: retry_at), aware UTC dates, auto_renew defaulting to True."""
    with session_scope(store_url) as s:
        repo = Repository(s)
        add_plan(repo, 1, left=20 * DAY)
        repo.add_certificate(certificate("up", state=Status.UPLOADED, left=10 * DAY, origin=Origin.UPLOADED),
                             now=NOW)
        s.add(RenewalPolicyRow(certificate_id="up", auto_renew=False, years=3))
    with session_scope(store_url) as s:
        rows = sorted(scan_queries.load_scan_rows(s))
    assert rows == [
        ScanRow("p1-c1", "p1-c1.example.test", "issued", "official", NOW + 20 * DAY, "p1-order", "renewal", 0,
                "p1-orig", False, True, not_before=NOW - 345 * DAY),
        ScanRow("p1-c2", "p1-c2.example.test", "not_activated", "official", None, "p1-order", "renewal", 1,
                "p1-orig", False, True),
        ScanRow("p1-orig", "p1-orig.example.test", "issued", "official", NOW - 345 * DAY, None, None, 0, None,
                None, True, not_before=NOW - 710 * DAY),
        ScanRow("up", "up.example.test", "uploaded", "uploaded", NOW + 10 * DAY, None, None, 0, None, None, False,
                not_before=NOW - 355 * DAY),
    ]
    assert all(r.not_after is None or r.not_after.utcoffset().total_seconds() == 0 for r in rows)
    with session_scope(store_url) as s:
        assert scan_queries.renewal_years(s, ["up", "p1-c1"]) == {"up": 3, "p1-c1": 1}


def test_pl4_pl8_start_managed_exactly_once(store_url):
    """PL-4 / PL-8: the start moves NOT_ACTIVATED -> PENDING_APPLICATION once, audited, no ledger entry;
    a second call finds the row and does nothing."""
    with session_scope(store_url) as s:
        repo = Repository(s)
        seed_ledger(repo)
        _, c1, c2 = add_plan(repo, 1, left=30 * DAY)
    with session_scope(store_url) as s:
        d = ops.decide_scan(s, NOW, Policy())
    assert d.managed_starts == [ManagedStart(c2, c1, "p1-order", 30)]
    with session_scope(store_url) as s:
        first = ops.record_managed_start(s, d.managed_starts[0], now=NOW, dns_writable=writable)
    with session_scope(store_url) as s:
        second = ops.record_managed_start(s, d.managed_starts[0], now=NOW, dns_writable=writable)
    assert (first.kind, first.inserted, first.notify_owner) == ("started", True, False)
    assert (second.kind, second.inserted) == ("already", False)
    with session_scope(store_url) as s:
        repo = Repository(s)
        assert repo.certificate_model(c2).state is Status.PENDING_APPLICATION
        moves = [(a.from_state, a.to_state) for a in repo.audit(c2)]
        assert moves == [(None, "not_activated"), ("not_activated", "pending_application")]
        assert "managed start (PL-4)" in repo.audit(c2)[-1].why
        assert counts(s) == {"managed_starts": 1, "started": 1, "transitions": 1, "ledger": 2, "notices": 0}
        # The next scan does not decide it again (PL-8).
        assert ops.decide_scan(s, NOW, Policy()).managed_starts == []


def test_pl5_nt2_refused_start_waits_and_tells_the_owner_once(store_url):
    """PL-5 / NT-2: no DNS provider holds the zone: the certificate waits for a manual submission, the
    reason is recorded, and the owner is to be told once."""
    with session_scope(store_url) as s:
        _, c1, c2 = add_plan(Repository(s), 1, left=10 * DAY)
    start = ManagedStart(c2, c1, "p1-order", 10)
    with session_scope(store_url) as s:
        first = ops.record_managed_start(s, start, now=NOW, dns_writable=not_writable)
    with session_scope(store_url) as s:
        second = ops.record_managed_start(s, start, now=NOW, dns_writable=not_writable)
    assert (first.kind, first.inserted, first.notify_owner) == ("waiting_manual", True, True)
    assert first.detail.startswith("the application for p1-c2.example.test cannot start by itself: no configured "
                                   "DNS provider holds the zone")
    assert (second.kind, second.notify_owner) == ("already", False)
    with session_scope(store_url) as s:
        assert Repository(s).certificate_model(c2).state is Status.NOT_ACTIVATED
        row = s.get(ManagedStartRow, c2)
        assert (row.outcome, row.detail, row.predecessor_id) == ("waiting_manual", first.detail, c1)
        notices = s.execute(select(NoticeRow.certificate_id, NoticeRow.kind, NoticeRow.threshold_days)).all()
        assert [tuple(n) for n in notices] == [(c2, "managed_waiting", 0)]
        assert ops.decide_scan(s, NOW, Policy()).managed_starts == []


@pytest.mark.parametrize("owner, expected", [
    (Contact(name="Ops", email="ops@example.test", phone="+81-3-0000-0000"), "started"),
    (Contact(email="ops@example.test"), "waiting_manual"),   # OV needs name and phone too (DV-6)
    (None, "waiting_manual"),
])
def test_pl5_ov_needs_the_owner_contact(store_url, owner, expected):
    """PL-5 / DV-6: an OV certificate starts by itself only with a complete contact."""
    with session_scope(store_url) as s:
        _, c1, c2 = add_plan(Repository(s), 1, left=10 * DAY, level=Level.OV, owner=owner)
    with session_scope(store_url) as s:
        out = ops.record_managed_start(s, ManagedStart(c2, c1, "p1-order", 10), now=NOW, dns_writable=writable)
    assert out.kind == expected
    if expected == "waiting_manual":
        assert "the contact has no" in out.detail


def test_pay2_pl4_first_certificate_starts_without_a_transition(store_url):
    """PAY-2 / PL-4: certificate 1 of a managed-fee order is already pending: the start is recorded
    and audited, the state stays PENDING_APPLICATION."""
    with session_scope(store_url) as s:
        orig, c1 = add_managed_fee_order(Repository(s), 1, left=30 * DAY)
    with session_scope(store_url) as s:
        d = ops.decide_scan(s, NOW, Policy())
        assert d.managed_starts == [ManagedStart(c1, orig, "f1-order", 30)]
        out = ops.record_managed_start(s, d.managed_starts[0], now=NOW, dns_writable=writable)
    assert out.kind == "started"
    with session_scope(store_url) as s:
        repo = Repository(s)
        assert repo.certificate_model(c1).state is Status.PENDING_APPLICATION
        assert "managed start (PL-4, PAY-2)" in repo.audit(c1)[-1].why


def test_pl8_start_skips_a_certificate_that_moved(store_url):
    """PL-8: a certificate cancelled meanwhile (PL-7) is not started; nothing is recorded."""
    with session_scope(store_url) as s:
        repo = Repository(s)
        _, c1, c2 = add_plan(repo, 1, left=10 * DAY)
        repo.set_state(c2, Status.CANCELLED, actor="test", why="cancelled (PL-7)", now=NOW)
    with session_scope(store_url) as s:
        out = ops.record_managed_start(s, ManagedStart(c2, c1, "p1-order", 10), now=NOW, dns_writable=writable)
        assert (out.kind, out.inserted) == ("skipped", False)
        assert counts(s)["managed_starts"] == 0


def test_nt1_record_notice_once_each(store_url):
    """NT-1: a notice is recorded once per (certificate, kind, threshold); only the inserter sends."""
    with session_scope(store_url) as s:
        Repository(s).add_certificate(certificate("a", left=5 * DAY), now=NOW)
    with session_scope(store_url) as s:
        results = [ops.record_notice(s, "a", ops.EXPIRY, 7, "5 days left", now=NOW),
                   ops.record_notice(s, "a", ops.EXPIRY, 7, "5 days left", now=NOW),
                   ops.record_notice(s, "a", ops.EXPIRY, 3, "3 days left", now=NOW),
                   ops.record_notice(s, "a", ops.MANAGED_WAITING, 7, "", now=NOW)]
    assert results == [True, False, True, True]
    with session_scope(store_url) as s:
        assert scan_queries.notices_sent(s) == {("a", 7), ("a", 3)}
        # The decision honours them: at 3 days the 3-day notice is already out.
        assert ops.decide_scan(s, NOW + 2 * DAY, Policy()).notices == []


def test_pl8_two_threads_race_on_the_same_50_starts(store_url):
    """PL-8: two scanners starting the same 50 certificates at once start each exactly once."""
    with session_scope(store_url) as s:
        repo = Repository(s)
        seed_ledger(repo)
        for n in range(50):
            add_plan(repo, n, left=25 * DAY)
    with session_scope(store_url) as s:
        starts = ops.decide_scan(s, NOW, Policy()).managed_starts
    assert len(starts) == 50
    barrier = threading.Barrier(2)

    def scanner() -> Counter:
        barrier.wait()
        seen: Counter = Counter()
        for start in starts:
            with session_scope(store_url) as s:
                seen[ops.record_managed_start(s, start, now=NOW, dns_writable=writable).kind] += 1
        return seen

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda _: scanner(), range(2))
    assert a + b == Counter({"started": 50, "already": 50})
    with session_scope(store_url) as s:
        assert counts(s) == {"managed_starts": 50, "started": 50, "transitions": 50, "ledger": 2, "notices": 0}
        states = Counter(Repository(s).certificate_model(st.certificate_id).state for st in starts)
        assert states == Counter({Status.PENDING_APPLICATION: 50})


def test_nt1_two_threads_race_on_the_same_notices(store_url):
    """NT-1: two scanners recording the same 30 notices at once: each is recorded (sent) once."""
    with session_scope(store_url) as s:
        repo = Repository(s)
        for n in range(30):
            repo.add_certificate(certificate(f"n{n}", left=6 * DAY), now=NOW)
    with session_scope(store_url) as s:
        notices = ops.decide_scan(s, NOW, Policy()).notices
    assert {(n.threshold_days, n.days_left) for n in notices} == {(7, 6)} and len(notices) == 30
    barrier = threading.Barrier(2)

    def scanner() -> int:
        barrier.wait()
        sent = 0
        for n in notices:
            with session_scope(store_url) as s:
                sent += ops.record_notice(s, n.certificate_id, ops.EXPIRY, n.threshold_days, now=NOW)
        return sent

    with ThreadPoolExecutor(2) as pool:
        assert sum(pool.map(lambda _: scanner(), range(2))) == 30


def test_el1_el5_scan_does_not_auto_renew_what_eligibility_refuses(store_url):
    """EL-1/EL-5: an expiring multi-domain official certificate is not handed to `renew` (it would
    be refused); its table line says why and what to do instead. A single-domain one is."""
    from certpilot.core.models import CertType

    with session_scope(store_url) as s:
        repo = Repository(s)
        multi = certificate("multi", left=20 * DAY, names=["a.example.test", "b.example.test"])
        repo.add_certificate(multi.model_copy(update={"cert_type": CertType.MULTI}), now=NOW)
        repo.add_certificate(certificate("single", left=20 * DAY), now=NOW)
    with session_scope(store_url) as s:
        d = ops.decide_scan(s, NOW, Policy())
    assert [r.certificate_id for r in d.renewals_due] == ["single"]
    line = next(line for line in d.lines if line.id == "multi")
    assert line.next_action.startswith("MultiDomain:") and "buy a new certificate" in line.next_action
