"""Orders' own lifecycle (expiry of unpaid orders, pay/decline/cancel refusals) and PL-7's cancel
scope over a plan with VA-5 reissues. Pure: fixed instants, exact values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from certpilot.core.errors import Reason, Refusal
from certpilot.core.models import CertType, Level, Order, OrderKind, OrderState, Policy, Spec, Status
from certpilot.core.payment import (
    check_approve,
    check_decline,
    check_order_cancel,
    order_again_command,
    order_expires_at,
    order_state_at,
    unpaid_expired_before,
)
from certpilot.core.plans import PlanMember, cancel_scope

T0 = datetime(2025, 9, 10, tzinfo=UTC)
POLICY = Policy()
SPEC = Spec(brand="DigiCert", level=Level.DV, cert_type=CertType.MULTI)


def order(state: OrderState = OrderState.AWAITING_PAYMENT, **kw) -> Order:
    base = dict(id="ord-1", kind=OrderKind.PURCHASE, certificate_id=None, spec=SPEC, years=2, state=state,
                created_at=T0, names=["a.example.com", "b.example.com"])
    return Order(**{**base, **kw})


def test_pay1_unpaid_order_expires_after_30_days_exactly():
    """An order awaiting payment expires 30 days after it was placed (Policy.order_expiry_days)."""
    assert POLICY.order_expiry_days == 30
    assert order_expires_at(T0, POLICY) == datetime(2025, 10, 10, tzinfo=UTC)
    assert order_state_at("awaiting_payment", T0, datetime(2025, 10, 9, 23, 59, 59, tzinfo=UTC),
                          POLICY) is OrderState.AWAITING_PAYMENT
    assert order_state_at("awaiting_payment", T0, datetime(2025, 10, 10, tzinfo=UTC), POLICY) is OrderState.EXPIRED
    assert unpaid_expired_before(datetime(2025, 10, 10, tzinfo=UTC), POLICY) == T0
    # Only unpaid orders expire.
    for state in (OrderState.PAID, OrderState.DECLINED, OrderState.CANCELLED):
        assert order_state_at(state, T0, T0 + timedelta(days=400), POLICY) is state
    assert order_state_at("awaiting_payment", T0, T0 + timedelta(days=7),
                          Policy(order_expiry_days=7)) is OrderState.EXPIRED


def test_pay1_expired_order_cannot_be_paid_and_says_how_to_order_again():
    late = T0 + timedelta(days=31)
    refusal = check_approve(order(), late, POLICY)
    assert (refusal.reason, refusal.rule) == (Reason.ORDER_CLOSED, "PAY-1")
    assert "expired unpaid on 2025-10-10 (30 days after it was placed)" in refusal.message
    assert ("`certpilot buy --name a.example.com --name b.example.com --level DV --brand DigiCert --years 2`"
            in refusal.message)
    assert check_approve(order(), T0 + timedelta(days=29), POLICY) is None
    assert check_approve(order(OrderState.PAID), late, POLICY) is None
    assert check_approve(order(OrderState.DECLINED), T0, POLICY).reason is Reason.ORDER_CLOSED


def test_pay1_order_again_command_names_the_real_values():
    renewal = order(kind=OrderKind.RENEWAL, certificate_id="crt-9", names=[], years=3)
    assert order_again_command(renewal) == "certpilot renew crt-9 --years 3"
    assert order_again_command(order(kind=OrderKind.EMERGENCY, certificate_id="crt-9", names=[])) == \
        "certpilot emergency crt-9"
    assert order_again_command(order(spec=Spec(brand="Alibaba Cloud", level=Level.OV, cert_type=CertType.SINGLE),
                                     names=["x.example.com"], years=1)) == \
        "certpilot buy --name x.example.com --level OV --brand 'Alibaba Cloud' --years 1"


def test_pay1_declining_a_paid_order_is_refused_with_a_reason_and_what_to_do():
    refusal = check_decline(order(OrderState.PAID), T0, POLICY, ["crt-b"])
    assert (refusal.reason, refusal.rule) == (Reason.ORDER_PAID, "PAY-1")
    assert "`certpilot cancel crt-b`" in refusal.message
    none_left = check_decline(order(OrderState.PAID), T0, POLICY, [])
    assert "`certpilot order show ord-1`" in none_left.message
    assert check_decline(order(), T0, POLICY) is None
    assert check_decline(order(OrderState.DECLINED), T0, POLICY) is None
    assert check_decline(order(OrderState.CANCELLED), T0, POLICY).reason is Reason.ORDER_CLOSED
    assert check_decline(order(), T0 + timedelta(days=30), POLICY).reason is Reason.ORDER_CLOSED


def test_pl7_cancelling_an_order_only_while_unpaid():
    assert check_order_cancel(order(), T0, POLICY) is None
    assert check_order_cancel(order(), T0 + timedelta(days=45), POLICY) is None  # expired: may be cleared
    assert check_order_cancel(order(OrderState.CANCELLED), T0, POLICY) is None
    paid = check_order_cancel(order(OrderState.PAID), T0, POLICY, ["crt-b", "crt-c"])
    assert (paid.reason, paid.rule) == (Reason.ORDER_PAID, "PL-7")
    assert "`certpilot cancel crt-b`, `certpilot cancel crt-c`" in paid.message
    assert check_order_cancel(order(OrderState.DECLINED), T0, POLICY).reason is Reason.ORDER_CLOSED


# A 2-year plan under VA-5's 200-day cap: year 1 (index 0) + its reissue (1), year 2 (2) + reissue (3).
PLAN = [PlanMember(0, "crt-y1", Status.ISSUED, False), PlanMember(1, "crt-y1r", Status.NOT_ACTIVATED, True),
        PlanMember(2, "crt-y2", Status.NOT_ACTIVATED, False), PlanMember(3, "crt-y2r", Status.NOT_ACTIVATED, True)]


def test_pl7_cancelling_a_year_cancels_its_follow_ups():
    """PL-7/PL-4: the second year goes with its own reissue: the plan shortens at its end, no hole."""
    assert cancel_scope("crt-y2", PLAN) == ["crt-y2", "crt-y2r"]


def test_va5_a_reissue_alone_is_not_cancellable_and_names_the_next_year():
    """VA-5: the reissue completes year 1 (paid); cancelling it would leave that year's rest uncovered."""
    refusal = cancel_scope("crt-y1r", PLAN)
    assert isinstance(refusal, Refusal)
    assert (refusal.reason, refusal.rule) == (Reason.NOT_CANCELLABLE, "VA-5")
    assert "`certpilot cancel crt-y2`" in refusal.message
    last = cancel_scope("crt-y2r", PLAN)
    assert last.rule == "VA-5" and "plan's last certificate" in last.message


def test_pl7_an_active_certificate_is_not_cancellable():
    refusal = cancel_scope("crt-y1", PLAN)
    assert (refusal.reason, refusal.rule) == (Reason.NOT_CANCELLABLE, "PL-7")
