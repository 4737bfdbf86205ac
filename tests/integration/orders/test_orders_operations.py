"""Operation-level tests of certpilot.operations.orders against a real SQLite store (fixed clocks)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from certpilot.core.errors import BadInputError, Reason, RefusedError
from certpilot.core.models import CertType, LedgerKind, Level, OrderKind, OrderState, Spec, Status
from certpilot.operations import orders
from certpilot.store.repository import Repository
from tests.integration.orders.conftest import at

DV = Spec(brand="DigiCert", level=Level.DV, cert_type=CertType.SINGLE)
SHOP = ["shop.example.com"]


def ledger_of(store, order_id):
    with store.session() as s:
        return Repository(s).ledger_for_order(order_id)


@pytest.mark.parametrize("origin, not_after, now, reason", [
    ("official", "2025-09-30", "2025-06-01", Reason.NOT_EXPIRING_SOON),    # EL-1(a)
    ("official", "2025-09-30", "2025-10-02", Reason.EXPIRED_OFFICIAL),     # EL-2
    ("private-ca", "2025-09-30", "2025-06-01", Reason.UPLOADED_NOT_DUE),   # EL-4: reissued once due
    ("uploaded", "2025-09-30", "2025-06-01", Reason.UPLOADED_NOT_DUE),     # EL-3
])
def test_el1_el2_el3_el4_preview_refusals(store, origin, not_after, now, reason):
    """EL-1, EL-2, EL-3, EL-4, EL-5: the preview names the first failing rule with a sentence; no plan."""
    cid = store.import_cert(["svc.example.com"], "2024-10-01", not_after, origin=origin)
    with store.session() as s:
        p = orders.preview_renewal(s, cid, years=1, now=at(now))
    assert (p.eligible, p.refusal.reason, p.plan) == (False, reason, None)
    assert p.refusal.message


def test_el3_va3_uploaded_replacement_carries_nothing_over(store):
    """EL-3, VA-3: an uploaded certificate due for renewal is replaced by a fresh 12-month certificate."""
    cid = store.import_cert(["up.example.com"], "2024-10-01", "2025-09-30", origin="uploaded")
    with store.session() as s:
        p = orders.preview_renewal(s, cid, years=1, now=at("2025-09-10"))
    assert p.eligible, p.refusal
    assert p.kind is OrderKind.PURCHASE
    first = p.plan.certificates[0]
    assert (first.not_before, first.not_after, first.days) == (at("2025-09-10"), at("2026-09-10"), 365)


def test_el4_private_ca_reissue_needs_no_quota(store):
    """EL-4: a due private-CA certificate is reissued from the private CA: fresh validity, no quota."""
    cid = store.import_cert(["intra.example.com"], "2024-10-01", "2025-09-30", origin="private-ca")
    with store.session() as s:
        p = orders.preview_renewal(s, cid, years=1, now=at("2025-09-10"))
        assert p.eligible, p.refusal
        assert [(x.kind, x.needed, x.shortfall) for x in p.payment] == [(LedgerKind.QUOTA, 0, 0)]
        r = orders.place_renewal(s, cid, years=1, now=at("2025-09-10"))
    assert r.order.state is OrderState.PAID
    (child,) = r.certificates
    assert (child.origin.value, child.parent_id, child.not_after) == ("private-ca", cid, at("2026-09-10"))


def test_pay4_concurrent_payments_write_one_set_of_entries(store):
    """PAY-4: two payers of one order at once: one wins, the ledger holds one set of entries."""
    cid = store.import_cert(SHOP, "2024-10-01", "2025-09-30")
    with store.session() as s:
        waiting = orders.place_renewal(s, cid, years=2, now=at("2025-09-10"))
    assert waiting.awaiting_payment and waiting.pending.reason is Reason.SHORTFALL_NOT_APPROVED
    assert waiting.certificate_ids == () and waiting.ledger == []
    with store.session() as s:
        (order,) = Repository(s).orders_for_certificate(cid)
    assert order.state is OrderState.AWAITING_PAYMENT and order.id == waiting.order.id
    assert ledger_of(store, order.id) == []  # no debit while it waits

    results, errors = [], []
    barrier = threading.Barrier(2)

    def pay():
        try:
            barrier.wait()
            with store.session() as s:
                results.append(orders.pay_order(s, order.id, approve=True, now=at("2025-09-10")).state)
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=pay) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert results == [OrderState.PAID, OrderState.PAID]
    entries = ledger_of(store, order.id)
    keys = [e.idempotency_key for e in entries]
    assert len(keys) == len(set(keys))
    with store.session() as s:
        assert orders.balances(s).model_dump() == {"quota": {DV.key: 0}, "managed": 0}
        assert len(Repository(s).certificates_for_order(order.id)) >= 2


def test_pay1_decline_leaves_no_debit_and_frees_the_certificate(store):
    """PAY-1: declining the shortfall marks the order DECLINED with no ledger entry; a new order may follow."""
    cid = store.import_cert(SHOP, "2024-10-01", "2025-09-30")
    with store.session() as s:
        assert orders.place_renewal(s, cid, years=1, now=at("2025-09-10")).pending.reason is \
            Reason.SHORTFALL_NOT_APPROVED
    with store.session() as s:
        (order,) = Repository(s).orders_for_certificate(cid)
        declined = orders.pay_order(s, order.id, approve=False, now=at("2025-09-10"))
    assert declined.state is OrderState.DECLINED
    assert ledger_of(store, order.id) == []
    with store.session() as s:
        orders.add_quota(s, DV, 1, now=at("2025-09-10"))
        r = orders.place_renewal(s, cid, years=1, now=at("2025-09-11"))
    assert r.order.state is OrderState.PAID and r.order.id != order.id
    assert [c.state for c in r.certificates] == [Status.PENDING_APPLICATION]


def test_pay1_balance_first_no_charge_when_covered(store):
    """PAY-1: quota and credits of the balance pay the whole order: no CHARGE entry at all."""
    cid = store.import_cert(SHOP, "2024-10-01", "2025-09-30")
    with store.session() as s:
        orders.add_quota(s, DV, 3, now=at("2025-09-01"))
        orders.add_managed(s, 2, now=at("2025-09-01"))
        r = orders.place_renewal(s, cid, years=3, now=at("2025-09-10"))
    assert r.order.state is OrderState.PAID
    assert not [e for e in r.ledger if e.kind is LedgerKind.CHARGE]
    assert sorted((e.kind.value, e.delta) for e in r.ledger) == [("managed", -2), ("quota", -3)]
    with store.session() as s:
        assert orders.balances(s).model_dump() == {"quota": {DV.key: 0}, "managed": 0}


def test_pl7_cancel_is_idempotent_by_key(store):
    """PL-7: the restoring entries are keyed by the certificate; a second cancel is refused, no double credit."""
    cid = store.import_cert(SHOP, "2024-10-01", "2025-09-30")
    with store.session() as s:
        orders.add_quota(s, DV, 2, now=at("2025-09-01"))
        orders.add_managed(s, 1, now=at("2025-09-01"))
        r = orders.place_renewal(s, cid, years=2, now=at("2025-09-10"))
    later = r.certificates[1]
    with store.session() as s:
        c = orders.cancel_certificate(s, later.id, now=at("2025-09-12"))
    assert c.certificate.state is Status.CANCELLED
    with pytest.raises(RefusedError) as exc, store.session() as s:
        orders.cancel_certificate(s, later.id, now=at("2025-09-13"))
    assert exc.value.reason is Reason.NOT_CANCELLABLE
    with store.session() as s:
        assert orders.balances(s).model_dump() == {"quota": {DV.key: 1}, "managed": 1}


@pytest.mark.parametrize("count", [0, -1, True])
def test_pay3_add_quota_needs_a_positive_count(store, count):
    """PAY-3: quota is added in positive whole numbers."""
    with pytest.raises(BadInputError), store.session() as s:
        orders.add_quota(s, DV, count, now=at("2025-09-01"))


def test_pay4_add_quota_with_the_same_key_adds_once(store):
    """PAY-4: a repeated quota purchase with the same idempotency key is one ledger entry."""
    with store.session() as s:
        first = orders.add_quota(s, DV, 2, now=at("2025-09-01"), idempotency_key="buy-1")
        again = orders.add_quota(s, DV, 2, now=at("2025-09-02"), idempotency_key="buy-1")
        assert first.id == again.id
        assert orders.balances(s).quota == {DV.key: 2}


def test_va3_purchase_is_twelve_months_from_issue(store):
    """VA-3, PL-3: a new purchase carries nothing over; its first certificate is pending, no parent."""
    with store.session() as s:
        orders.add_quota(s, Spec(brand="DigiCert", level=Level.DV, cert_type=CertType.MULTI), 1,
                         now=at("2025-09-01"))
        r = orders.place_purchase(s, names=["a.example.com", "B.example.com."], brand="DigiCert", level=Level.DV,
                                  years=1, now=at("2025-09-10"))
    assert r.order.kind is OrderKind.PURCHASE and r.order.state is OrderState.PAID
    (cert,) = r.certificates
    assert (cert.names, cert.cert_type, cert.parent_id) == (["a.example.com", "b.example.com"], CertType.MULTI, None)
    assert (cert.not_before, cert.not_after) == (at("2025-09-10"), at("2025-09-10") + timedelta(days=365))
    assert cert.state is Status.PENDING_APPLICATION


def test_pl7_va5_a_reissue_is_not_cancelled_alone_and_goes_with_its_year(store):
    """PL-7 with VA-5 (issue 17): a reissue (the CA/B cap cut a certificate short) cost no quota or
    credit and covers days already paid for, so cancelling it alone is refused (nothing changes);
    cancelling its yearly certificate takes it along and gives one quota and one credit back."""
    cid = store.import_cert(SHOP, "2024-10-01", "2025-09-30")
    with store.session() as s:
        orders.add_quota(s, DV, 2, now=at("2025-09-01"))
        orders.add_managed(s, 1, now=at("2025-09-01"))
        r = orders.place_renewal(s, cid, years=2, now=at("2025-09-10"))
    planned = {p.index: p for p in r.order.planned}
    reissue = next(c for c in r.certificates if planned[c.plan_index].reissue)
    yearly = next(c for c in r.certificates[1:] if not planned[c.plan_index].reissue)
    with pytest.raises(RefusedError) as exc, store.session() as s:
        orders.cancel_certificate(s, reissue.id, now=at("2025-09-12"))
    assert (exc.value.reason, exc.value.refusal.rule) == (Reason.NOT_CANCELLABLE, "VA-5")
    with store.session() as s:
        assert orders.balances(s).model_dump() == {"quota": {DV.key: 0}, "managed": 0}
        done = orders.cancel_certificate(s, yearly.id, now=at("2025-09-12"))
        assert sorted((e.kind.value, e.delta) for e in done.ledger) == [("managed", 1), ("quota", 1)]
        # Year 2 is cut at 200 days: its reissues follow it and go with it.
        follow = [c.id for c in r.certificates if c.plan_index > yearly.plan_index]
        assert [c.id for c in done.follow_ups] == follow and reissue.id in follow
