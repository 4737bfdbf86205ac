"""Pure rules the pipeline's flows branch on (decided in core, not in the flows)."""

from __future__ import annotations

import pytest

from certpilot.core.lifecycle import may_apply
from certpilot.core.models import Status
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
    refusal = may_apply(state)
    assert (refusal is not None) is refused
    if refusal is not None:
        assert refusal.rule == rule and refusal.reason.value == "IllegalTransition" and refusal.message
