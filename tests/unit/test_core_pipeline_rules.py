"""Pure rules the pipeline's flows branch on (decided in core, not in the flows)."""

from __future__ import annotations

import pytest

from certpilot.core.lifecycle import may_apply
from certpilot.core.models import Level, OrderState, Origin, Status
from certpilot.core.outcomes import ApplicationState, ApplicationStatus, RenewalStep
from certpilot.core.payment import renewal_attempt_key
from certpilot.core.plans import submits_first_now


@pytest.mark.parametrize("managed_fee, now", [(False, True), (True, False)])
def test_pl1_pay2_first_certificate_submitted_now_unless_a_managed_start_will(managed_fee, now):
    """PL-1: the renewal the operator runs is the hand submission of certificate 1; PAY-2: with
    the managed-service fee, certificate 1 starts by itself at 30 days (PL-4) instead."""
    assert submits_first_now(managed_fee) is now


@pytest.mark.parametrize("state, refused, rule", [
    (Status.PENDING_APPLICATION, False, None),
    (Status.UNDER_REVIEW, False, None),
    (Status.REJECTED, False, None),        # CA-2: resubmission
    (Status.ISSUED, False, None),          # only deployment is left
    (Status.NOT_ACTIVATED, True, "PL-4"),  # waits for its managed start
    (Status.CANCELLED, True, "LC-5"),
    (Status.UPLOADED, True, "LC-5"),
    (Status.REVOKED, True, "LC-5"),
])
def test_lc3_lc5_which_certificates_apply_works_on(state, refused, rule):
    """LC-3 stage 2 / LC-5: `apply` refuses, with a reason and what to do instead, a certificate
    it has nothing to do for."""
    refusal = may_apply(state, "crt-2", "crt-1")
    assert (refusal is not None) is refused
    if refusal is not None:
        assert refusal.rule == rule and refusal.reason.value == "IllegalTransition" and refusal.message
        # EL-5: the command to run instead, with the real id (the certificate, or the one it renews).
        command = "certpilot cancel crt-2" if state is Status.NOT_ACTIVATED else "certpilot renew crt-1 --dry-run"
        assert f"`{command}`" in refusal.message


@pytest.mark.parametrize("closed, key", [(0, "renew:crt-1"), (1, "renew:crt-1#1"), (2, "renew:crt-1#2")])
def test_pay4_renewal_attempt_key_new_only_after_a_closed_order(closed, key):
    """PAY-4: a rerun of the renew flow derives the same order key (it finds its order again, never
    pays twice); after a declined or cancelled order the next attempt gets a new one."""
    assert renewal_attempt_key("crt-1", closed) == key


def _step(state, *, ids=("crt-a", "crt-b"), first_now=True):
    return RenewalStep(certificate_id="crt-1", order_id="ord-1", state=state, certificate_ids=ids,
                       submit_first_now=first_now)


@pytest.mark.parametrize("step, first", [
    (_step(OrderState.PAID), "crt-a"),                         # PL-1: the first certificate now
    (_step(OrderState.PAID, first_now=False), None),            # PAY-2: its managed start will (PL-4)
    (_step(OrderState.AWAITING_PAYMENT, ids=()), None),         # PAY-1: the payment form first
    (_step(OrderState.DECLINED, ids=()), None),
])
def test_pl1_pay1_pay2_which_certificate_renew_applies_for(step, first):
    """PL-1/PAY-1/PAY-2: `renew` starts stage 2 only for a paid order's first certificate, and only
    when no managed start will; an order awaiting payment waits for its form."""
    assert step.first_to_apply == first
    assert step.awaiting_payment is (step.state is OrderState.AWAITING_PAYMENT)


def _status(state, application, *, level=Level.DV, needs_contact=False):
    return ApplicationStatus(certificate_id="crt-1", state=state, application=application,
                             needs_contact=needs_contact, key_held=True, common_name="www.example.com", level=level,
                             origin=Origin.OFFICIAL)


A = ApplicationState


@pytest.mark.parametrize("status, contact, key, submit", [
    (_status(Status.PENDING_APPLICATION, A.NOT_STARTED), False, True, True),
    (_status(Status.PENDING_APPLICATION, A.NOT_STARTED, level=Level.OV, needs_contact=True), True, True, True),
    (_status(Status.PENDING_APPLICATION, A.CSR_READY), False, False, True),      # crash after the key: resume
    (_status(Status.UNDER_REVIEW, A.ORDERED), False, False, True),               # resume the same CA order
    (_status(Status.UNDER_REVIEW, A.ORDERED, level=Level.OV, needs_contact=True), False, False, True),
    (_status(Status.ISSUED, A.COLLECTED), False, False, False),                  # only deployment is left
])
def test_lc3_dv6_ca1_what_apply_does_next(status, contact, key, submit):
    """LC-3 stage 2: ask the CA's contact (DV-6) only while pending, make the key and CSR only when
    none exists (CSR-1), submit or resume until the chain is collected (CA-1)."""
    assert (status.asks_contact, status.needs_key, status.needs_submission) == (contact, key, submit)
