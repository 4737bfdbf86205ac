"""Orders first-class (issue 17): a purchase keeps what it buys and, once paid, creates its
certificates exactly once, which the scanner then applies like any other; the order book lists,
shows, expires and cancels orders; cancelling a plan's certificate shortens it at its end."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from certpilot.core.errors import Reason, RefusedError
from certpilot.core.models import (
    Certificate,
    CertType,
    Contact,
    LedgerKind,
    Level,
    OrderState,
    Origin,
    Spec,
    Status,
)
from certpilot.core.outcomes import SubmitKind
from certpilot.core.scan import launches
from certpilot.operations import orders, pipeline, scan
from certpilot.store.repository import Repository
from certpilot.store.tables import OrderRow
from tests.clock import Clock
from tests.integration.orders.conftest import at

NAMES = ["a.example.com", "b.example.com"]
MULTI = Spec(brand="DigiCert", level=Level.DV, cert_type=CertType.MULTI)
OWNER = Contact(name="Ops", email="ops@example.com", phone="+81-3-0000-0000")



@pytest.fixture
def clock():
    return Clock(at("2025-09-10"))


@pytest.fixture
def svc(store, clock):
    """Local services (the embedded private CA as issuer) on the test's store with a settable clock."""
    from certpilot.runtime import local_services

    return local_services(database_url=store.url, clock=clock)


def buy(svc, years=1, **kw):
    return orders.buy(svc, names=NAMES, brand="DigiCert", level=Level.DV, years=years, owner=OWNER, **kw)


def test_pay1_purchase_end_to_end_shortfall_pay_certificates_applied(store, svc, clock):
    """PAY-1, PL-3, LC-5: buy (no quota) → shortfall pointing at `certpilot pay ORD` → pay → the
    order's certificate exists with the names and owner bought → the scanner sees its pending
    application → the renewal stages apply it with the embedded private CA → issued."""
    r = buy(svc)
    assert r.awaiting_payment and r.certificate_ids == () and r.ledger == []
    assert r.pending.reason is Reason.SHORTFALL_NOT_APPROVED
    assert f"`certpilot pay {r.order.id}`" in r.pending.message and "None" not in r.pending.message
    assert "`certpilot quota add --brand DigiCert --level DV --type multi --count 1`" in r.pending.message
    assert f"`certpilot order cancel {r.order.id}`" in r.pending.message
    kept = orders.show_order(svc, r.order.id)
    assert (kept.order.names, kept.order.owner, kept.order.spec) == (NAMES, OWNER, MULTI)
    assert kept.expires_at == at("2025-10-10")

    clock.now = at("2025-09-12")  # paid two days later: planned from the payment (VA-3)
    paid = orders.pay(svc, r.order.id, approve=True)
    assert paid.order.state is OrderState.PAID and len(paid.certificate_ids) == 1
    (view,) = paid.certificates
    with store.session() as s:
        cert = Repository(s).certificate_model(view.id)
    assert (cert.names, cert.common_name, cert.owner, cert.order_id, cert.origin, cert.state) == (
        NAMES, "a.example.com", OWNER, r.order.id, Origin.OFFICIAL, Status.PENDING_APPLICATION)
    assert (cert.not_before, cert.not_after) == (at("2025-09-12"), at("2026-09-12"))
    assert sum(e.amount for e in paid.ledger if e.kind is LedgerKind.CHARGE) == svc.policy.quota_price

    # The scanner launches it like any other pending application (flows/scan: decide →
    # unfinished_work → launches): no run ever claimed it, so a renewal run is launched for it.
    plan = scan.decide(svc)
    assert view.id in plan.resume_applications
    work = scan.unfinished_work(svc, plan.resume_applications)
    assert [w.certificate_id for w in work] == [view.id] and work[0].claim is None
    assert [x.certificate_id for x in launches((), work, {})] == [view.id]
    pipeline.prepare(svc, view.id, actor="test")
    assert pipeline.submit(svc, view.id, actor="test").kind is SubmitKind.ISSUED
    with store.session() as s:
        assert Repository(s).certificate_model(view.id).state is Status.ISSUED
    assert "scanner applies" not in orders.show_order(svc, r.order.id).next_step


def test_pay1_buying_the_same_again_finds_the_waiting_order_and_approves_it(svc):
    """A repeated unapproved `buy` leaves no second order awaiting payment; asked again with
    approval it pays that order. A different purchase is a different order."""
    first = buy(svc)
    again = buy(svc)
    assert (again.order.id, again.created, again.awaiting_payment) == (first.order.id, False, True)
    assert "--approve-payment`, which finds this order" in first.pending.message
    other = buy(svc, years=2)
    assert other.order.id != first.order.id
    approved = buy(svc, approve_payment=True)
    assert (approved.order.id, approved.order.state, len(approved.certificate_ids)) == (
        first.order.id, OrderState.PAID, 1)
    assert orders.list_orders(svc).counts == {OrderState.AWAITING_PAYMENT: 1, OrderState.PAID: 1}


def test_pay4_paying_twice_or_concurrently_creates_the_certificates_once(store, svc):
    """PAY-4: two payers at once and a third later: one charge, one set of certificates."""
    r = buy(svc, years=2)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: orders.pay(svc, r.order.id, approve=True), range(2)))
    again = orders.pay(svc, r.order.id, approve=True)
    ids = {tuple(x.certificate_ids) for x in [*results, again]}
    assert len(ids) == 1 and len(next(iter(ids))) == len(again.order.planned) == 3  # 2 years + a VA-5 reissue
    with store.session() as s:
        ledger = Repository(s).ledger_for_order(r.order.id)
    assert [e.amount for e in ledger if e.kind is LedgerKind.CHARGE] == [200, 20]


def test_pay4_a_crash_mid_way_through_creating_certificates_leaves_nothing_then_pay_completes(
        store, svc, monkeypatch):
    """PAY-4: a payer that dies after the charge and the first certificate writes nothing (one
    transaction); the next `pay` charges once and creates every certificate."""
    r = buy(svc, years=2)
    real = Repository.add_certificate
    calls = []

    def dies_on_second(self, cert, **kw):
        calls.append(cert.id)
        if len(calls) == 2:
            raise RuntimeError("worker killed")
        return real(self, cert, **kw)

    monkeypatch.setattr(Repository, "add_certificate", dies_on_second)
    with pytest.raises(RuntimeError):
        orders.pay(svc, r.order.id, approve=True)
    monkeypatch.setattr(Repository, "add_certificate", real)
    with store.session() as s:
        repo = Repository(s)
        assert repo.get_order(r.order.id).state is OrderState.AWAITING_PAYMENT
        assert repo.certificates_for_order(r.order.id) == [] and repo.ledger_for_order(r.order.id) == []
    paid = orders.pay(svc, r.order.id, approve=True)
    assert paid.order.state is OrderState.PAID and len(paid.certificate_ids) == 3


def test_pay4_a_paid_order_without_certificates_gets_them_on_pay(store, svc):
    """A purchase paid by an older certpilot (no certificate created) is completed by `pay`."""
    r = buy(svc)
    with store.session() as s:
        Repository(s).pay_order_atomically(r.order.id, [], actor="old", why="paid by an older version",
                                           now=at("2025-09-10"))
    done = orders.pay(svc, r.order.id, approve=True)
    assert done.order.state is OrderState.PAID and len(done.certificate_ids) == 1


def test_pay4_store_refuses_a_second_certificate_at_the_same_plan_index(store, svc):
    r = buy(svc, approve_payment=True)
    (first,) = r.certificates
    with pytest.raises(IntegrityError), store.session() as s:
        Repository(s).add_certificate(
            Certificate(id="crt-dup", common_name=NAMES[0], names=NAMES, cert_type=CertType.MULTI,
                        origin=Origin.OFFICIAL, order_id=r.order.id, plan_index=first.plan_index,
                        state=Status.PENDING_APPLICATION), actor="test", now=at("2025-09-10"))


def test_pay1_unpaid_order_expires_is_listed_and_cannot_be_paid(store, svc, clock):
    """An order left unpaid 30 days is listed as expired (not awaiting payment), cannot be paid
    (ORDER_CLOSED naming the buy command to run again) and can be cleared with `order cancel`."""
    r = buy(svc)
    clock.now = at("2025-10-10")
    book = orders.list_orders(svc)
    assert [(x.id, x.state) for x in book.orders] == [(r.order.id, OrderState.EXPIRED)]
    assert book.counts == {OrderState.EXPIRED: 1}
    assert orders.list_orders(svc, state="awaiting_payment").orders == ()
    with pytest.raises(RefusedError) as exc:
        orders.pay(svc, r.order.id, approve=True)
    assert (exc.value.reason, exc.value.refusal.rule) == (Reason.ORDER_CLOSED, "PAY-1")
    assert ("`certpilot buy --name a.example.com --name b.example.com --level DV --brand DigiCert --years 1`"
            in exc.value.refusal.message)
    gone = orders.cancel_order(svc, r.order.id)
    assert (gone.order.state, gone.changed) == (OrderState.CANCELLED, True)
    assert orders.cancel_order(svc, r.order.id).changed is False
    with store.session() as s:
        assert Repository(s).ledger_for_order(r.order.id) == []


def test_pay1_declining_a_paid_order_is_refused_with_reason_and_rule(svc):
    r = buy(svc, years=2, approve_payment=True)
    second = next(c.id for c in r.certificates if c.plan_index == 1)
    with pytest.raises(RefusedError) as exc:
        orders.pay(svc, r.order.id, approve=False)
    assert (exc.value.reason, exc.value.refusal.rule) == (Reason.ORDER_PAID, "PAY-1")
    assert f"`certpilot cancel {second}`" in exc.value.refusal.message
    with pytest.raises(RefusedError) as exc:
        orders.cancel_order(svc, r.order.id)
    assert (exc.value.reason, exc.value.refusal.rule) == (Reason.ORDER_PAID, "PL-7")
    assert orders.show_order(svc, r.order.id).order.state is OrderState.PAID


def _three_year_plan(svc, clock):
    """A 3-year purchase placed 2026-06-01 (VA-5: 200-day cap) with quota and credits to pay it."""
    clock.now = at("2026-06-01")
    orders.top_up(svc, count=3, spec=MULTI)
    orders.top_up(svc, count=2)
    r = buy(svc, years=3)
    assert r.order.state is OrderState.PAID
    planned = {p.index: p.reissue for p in r.order.planned}
    return r, [(c.id, planned[c.plan_index]) for c in r.certificates]


def test_pl7_cancelling_the_second_year_cancels_its_follow_ups_and_leaves_no_hole(svc, clock):
    """PL-7/PL-4: year 2 goes with its VA-5 reissue and year 3 (which would start after a gap);
    years 2 and 3 each restore one quota and one credit; year 1 and its reissue stay."""
    r, plan = _three_year_plan(svc, clock)
    yearly = [cid for cid, reissue in plan if not reissue]
    assert len(yearly) == 3 and len(plan) > 3
    year2 = yearly[1]
    later = [cid for cid, _ in plan[[cid for cid, _ in plan].index(year2) + 1:]]
    c = orders.cancel(svc, year2)
    assert c.certificate.id == year2 and [x.id for x in c.follow_ups] == later
    assert all(x.state is Status.CANCELLED for x in c.follow_ups)
    assert sorted((e.kind.value, e.delta) for e in c.ledger) == [("managed", 1), ("managed", 1), ("quota", 1),
                                                                ("quota", 1)]
    assert (c.balances.quota[MULTI.key], c.balances.managed) == (2, 2)
    kept = [v for v in orders.show_order(svc, r.order.id).certificates if v.state is not Status.CANCELLED]
    assert [v.id for v in kept] == [cid for cid, _ in plan][:[cid for cid, _ in plan].index(year2)]


def test_va5_cancelling_a_reissue_alone_is_refused_and_names_the_next_year(store, svc, clock):
    """VA-5: a reissue restores nothing and would leave the rest of its year uncovered."""
    r, plan = _three_year_plan(svc, clock)
    reissue = next(cid for cid, is_reissue in plan if is_reissue)
    next_year = next(cid for cid, is_reissue in plan[[c for c, _ in plan].index(reissue):] if not is_reissue)
    with pytest.raises(RefusedError) as exc:
        orders.cancel(svc, reissue)
    assert (exc.value.reason, exc.value.refusal.rule) == (Reason.NOT_CANCELLABLE, "VA-5")
    assert f"`certpilot cancel {next_year}`" in exc.value.refusal.message
    with store.session() as s:
        assert Repository(s).certificate_model(reissue).state is Status.NOT_ACTIVATED


def test_orders_list_10000_orders_answers_within_a_second(store, svc):
    """The order book at 10,000 orders: a page, a state filter and the whole list each ≤ 1 s."""
    with store.session() as s:
        base = at("2025-01-01")
        s.execute(insert(OrderRow), [
            {"id": f"ord-{i:016x}", "kind": "purchase", "certificate_id": None, "spec_key": MULTI.key,
             "brand": "DigiCert", "level": "DV", "cert_type": "multi", "years": 1, "csr_mode": "system",
             "managed_services": 0, "managed_fee": False,
             "state": ("paid", "awaiting_payment", "cancelled", "declined")[i % 4], "payment": [], "planned": [],
             "names": [f"n{i}.example.com"], "created_at": base + timedelta(minutes=i),
             "updated_at": base + timedelta(minutes=i)}
            for i in range(10_000)])
    orders.list_orders(svc, limit=1)  # engine and schema check warm
    timings = {}
    for label, kw in {"page": {}, "expired": {"state": "expired"}, "all": {"limit": 0}}.items():
        t0 = time.perf_counter()
        result = orders.list_orders(svc, **kw)
        timings[label] = time.perf_counter() - t0
        if label == "all":
            assert len(result.orders) == 10_000 and result.orders[0].id == f"ord-{9999:016x}"
    # Clock 2025-09-10: every awaiting order (placed Jan 2025) is past its 30 days.
    assert result.counts == {OrderState.PAID: 2500, OrderState.DECLINED: 2500, OrderState.CANCELLED: 2500,
                             OrderState.EXPIRED: 2500}
    assert max(timings.values()) <= 1.0, timings
