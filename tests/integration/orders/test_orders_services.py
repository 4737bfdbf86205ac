"""The Services-level doors of certpilot.operations.orders: each owns its transaction and returns a
frozen result; an order waiting for payment is a result, not an exception (PAY-1)."""

from __future__ import annotations

import dataclasses

import pytest

from certpilot.core.errors import Reason, RefusedError
from certpilot.core.models import CertType, LedgerKind, Level, OrderState, Spec, Status
from certpilot.operations import orders
from certpilot.store.repository import Repository
from tests.integration.orders.conftest import at

DV = Spec(brand="DigiCert", level=Level.DV, cert_type=CertType.SINGLE)
SHOP = ["shop.example.com"]


@pytest.fixture
def svc(store):
    """Local services on the test's store with a fixed clock."""
    from certpilot.runtime import local_services

    return local_services(database_url=store.url, clock=lambda: at("2025-09-10"))


def test_pay1_unapproved_shortfall_is_a_result_recorded_with_no_debit(store, svc):
    """PAY-1: without approval the order is recorded awaiting payment, nothing debited, and the
    result says what to approve and how; approving it through `pay` pays it once."""
    cid = store.import_cert(SHOP, "2024-10-01", "2025-09-30")
    r = orders.renew(svc, cid, years=1)
    assert r.awaiting_payment and r.order.state is OrderState.AWAITING_PAYMENT
    assert r.pending.reason is Reason.SHORTFALL_NOT_APPROVED and r.pending.rule == "PAY-1"
    assert f"certpilot pay {r.order.id}" in r.pending.message and "--approve-payment" in r.pending.message
    assert r.shortfall == svc.policy.quota_price
    assert (r.certificate_ids, r.ledger) == ((), [])
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.created = False  # type: ignore[misc]
    with store.session() as s:
        assert Repository(s).get_order(r.order.id).state is OrderState.AWAITING_PAYMENT
        assert Repository(s).ledger_for_order(r.order.id) == []

    paid = orders.pay(svc, r.order.id, approve=True)
    assert (paid.order.state, paid.awaiting_payment, paid.pending, paid.created) == (OrderState.PAID, False, None,
                                                                                    False)
    assert len(paid.certificate_ids) == 1 and paid.certificates[0].state is Status.PENDING_APPLICATION
    assert sum(e.amount for e in paid.ledger if e.kind is LedgerKind.CHARGE) == svc.policy.quota_price
    assert orders.quota(svc).quota == {DV.key: 0}


def test_pay1_refusals_still_raise_and_write_nothing(store, svc):
    """EL-1: a real refusal is an exception and records no order."""
    cid = store.import_cert(SHOP, "2024-10-01", "2025-09-30")
    with pytest.raises(RefusedError) as exc:
        orders.renew(svc, cid, years=1, now=at("2025-06-01"))
    assert exc.value.reason is Reason.NOT_EXPIRING_SOON
    with store.session() as s:
        assert Repository(s).orders_for_certificate(cid) == []


def test_pay4_rerun_safe_renewal_finds_the_same_order_until_declined(store, svc):
    """PAY-4: a flow's rerun finds its order again; after a decline the next attempt is a new order."""
    cid = store.import_cert(SHOP, "2024-10-01", "2025-09-30")
    first = orders.renew(svc, cid, years=1, rerun_safe=True, actor="flow:renew")
    again = orders.renew(svc, cid, years=1, rerun_safe=True, actor="flow:renew")
    assert (again.order.id, again.created, again.awaiting_payment) == (first.order.id, False, True)
    assert orders.pay(svc, first.order.id, approve=False).order.state is OrderState.DECLINED
    orders.top_up(svc, count=1, spec=DV)
    fresh = orders.renew(svc, cid, years=1, rerun_safe=True, actor="flow:renew")
    assert fresh.order.id != first.order.id and fresh.order.state is OrderState.PAID


def test_pay1_purchase_waits_then_pays(svc):
    """PAY-1, VA-3: a purchase without quota waits for approval; with approval it is paid at once."""
    waiting = orders.buy(svc, names=["new.example.com"], brand="DigiCert", level=Level.DV, years=1)
    assert waiting.awaiting_payment and waiting.pending.reason is Reason.SHORTFALL_NOT_APPROVED
    assert waiting.certificate_ids == ()
    approved = orders.buy(svc, names=["new.example.com"], brand="DigiCert", level=Level.DV, years=1,
                          approve_payment=True, idempotency_key="buy-1")
    assert approved.order.state is OrderState.PAID and len(approved.certificate_ids) == 1


def test_pl7_pay3_cancel_and_top_up_report_the_balances(store, svc):
    """PL-7, PAY-3: cancelling a later certificate restores one quota and one credit; the result
    carries the balances after it, as does a top-up (a repeated key adds once)."""
    cid = store.import_cert(SHOP, "2024-10-01", "2025-09-30")
    assert orders.top_up(svc, count=2, spec=DV, idempotency_key="q-1").balances.quota == {DV.key: 2}
    assert orders.top_up(svc, count=2, spec=DV, idempotency_key="q-1").balances.quota == {DV.key: 2}
    credits = orders.top_up(svc, count=1)
    assert (credits.entry.kind, credits.balances.managed) == (LedgerKind.MANAGED, 1)
    r = orders.renew(svc, cid, years=2, now=at("2025-09-10"))
    planned = {p.index: p for p in r.order.planned}
    yearly = next(c for c in r.certificates[1:] if not planned[c.plan_index].reissue)
    c = orders.cancel(svc, yearly.id)
    assert c.certificate.state is Status.CANCELLED
    assert c.balances == orders.quota(svc) == credits.balances.model_copy(update={"quota": {DV.key: 1}})
