"""LC-2, LC-3, LC-5: the lifecycle state machine, renewal stages and lineage (certpilot.core.lifecycle)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from certpilot.core.errors import IllegalTransitionError, Reason
from certpilot.core.lifecycle import (
    DERIVED_STATUSES,
    TRANSITIONS,
    Stage,
    check_transition,
    lineage,
    renewal_stage,
    transition,
)
from certpilot.core.models import LIFECYCLE_STATES, Certificate, CertType, OrderState, Origin, Status

S = Status

RULE = [  # LC-5 as ../shared/spec/rules.md words it
    (S.NOT_ACTIVATED, S.PENDING_APPLICATION),
    (S.PENDING_APPLICATION, S.UNDER_REVIEW),
    (S.UNDER_REVIEW, S.ISSUED),
    (S.NOT_ACTIVATED, S.CANCELLED),
    (S.UNDER_REVIEW, S.REJECTED),
    (S.UNDER_REVIEW, S.PENDING_APPLICATION),
]
AMENDED = [  # the README's "LC-5 as built" amendment, each move with its reason there
    (S.REJECTED, S.PENDING_APPLICATION),
    (S.ISSUED, S.REVOKED),
    (S.UPLOADED, S.REVOKED),
]
ALLOWED = RULE + AMENDED


def test_lc5_table_is_the_rule_plus_the_readmes_three_amendments():
    """LC-5: the table holds the rule's six moves and the three the README's rules section amends it
    with (each named there with its reason: CA-2's resubmission, revocation), nothing else."""
    from pathlib import Path

    assert {(f, t) for f, targets in TRANSITIONS.items() for t in targets} == set(RULE) | set(AMENDED)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("LC-5 as built"):]
    for frm, to in AMENDED:
        assert f"`{frm.value} → {to.value}`" in section


@pytest.mark.parametrize("frm, to", ALLOWED)
def test_lc5_allowed_transitions(frm, to):
    assert check_transition(frm, to) is None
    assert transition(frm, to) is to


REFUSED = [(f, t) for f, t in itertools.product(sorted(LIFECYCLE_STATES), repeat=2) if (f, t) not in ALLOWED]


@pytest.mark.parametrize("frm, to", REFUSED)
def test_lc5_every_other_move_between_stored_states_is_refused(frm, to):
    refusal = check_transition(frm, to)
    assert refusal is not None
    assert refusal.reason is Reason.ILLEGAL_TRANSITION and refusal.rule == "LC-5"
    assert f"from {frm.value} to {to.value}" in refusal.message
    with pytest.raises(IllegalTransitionError) as exc:
        transition(frm, to)
    assert exc.value.reason is Reason.ILLEGAL_TRANSITION
    assert exc.value.message == refusal.message


@pytest.mark.parametrize("frm, to, message", [
    (S.UNDER_REVIEW, S.NOT_ACTIVATED,
     "cannot move from under_review to not_activated; allowed from under_review: issued, pending_application, "
     "rejected"),
    (S.PENDING_APPLICATION, S.ISSUED,
     "cannot move from pending_application to issued; allowed from pending_application: under_review"),
    (S.CANCELLED, S.PENDING_APPLICATION,
     "cannot move from cancelled to pending_application; cancelled is final: no move is allowed"),
    (S.ISSUED, S.ISSUED, "cannot move from issued to issued; allowed from issued: revoked"),
])
def test_lc5_refusal_names_both_states_and_the_allowed_moves(frm, to, message):
    assert check_transition(frm, to).message == message


@pytest.mark.parametrize("frm, to", [
    *((S.ISSUED, d) for d in sorted(DERIVED_STATUSES)),
    *((S.UPLOADED, d) for d in sorted(DERIVED_STATUSES)),
    (S.EXPIRING_SOON, S.REVOKED),
    (S.EXPIRED, S.PENDING_APPLICATION),
])
def test_lc5_derived_statuses_are_never_moved_to_or_from(frm, to):
    """LC-4/LC-5: valid, expiring soon and expired are computed, never a transition's end."""
    refusal = check_transition(frm, to)
    assert refusal is not None and refusal.reason is Reason.ILLEGAL_TRANSITION
    assert "derived" in refusal.message


@pytest.mark.parametrize("order_state, state, stage", [
    (OrderState.AWAITING_PAYMENT, S.PENDING_APPLICATION, Stage.ORDER),
    (OrderState.AWAITING_PAYMENT, S.NOT_ACTIVATED, Stage.ORDER),
    (OrderState.PAID, S.PENDING_APPLICATION, Stage.APPLICATION),
    (OrderState.PAID, S.UNDER_REVIEW, Stage.APPLICATION),
    (OrderState.PAID, S.REJECTED, Stage.APPLICATION),
    (OrderState.PAID, S.ISSUED, Stage.DEPLOYMENT),
    (OrderState.PAID, S.NOT_ACTIVATED, Stage.NONE),
    (OrderState.PAID, S.CANCELLED, Stage.NONE),
    (OrderState.DECLINED, S.PENDING_APPLICATION, Stage.NONE),
    (None, S.UPLOADED, Stage.NONE),
])
def test_lc3_renewal_runs_three_stages(order_state, state, stage):
    """LC-3: order and payment, then application and review, then deployment and verification."""
    assert renewal_stage(order_state, state) is stage


def _cert(id_: str, parent: str | None, index: int = 0) -> Certificate:
    return Certificate(id=id_, common_name="example.com", names=["example.com"], cert_type=CertType.SINGLE,
                       origin=Origin.OFFICIAL, state=S.ISSUED, parent_id=parent, plan_index=index,
                       not_before=datetime(2025, 1, 1, tzinfo=UTC), not_after=datetime(2026, 1, 1, tzinfo=UTC))


def test_lc2_new_certificates_are_listed_under_the_original():
    """LC-2: children of the original (in plan order), and their own children under them."""
    certs = [_cert("c3", "root", 2), _cert("c1", "root", 0), _cert("other", None), _cert("c2", "root", 1),
             _cert("g1", "c1", 0), _cert("root", None)]
    assert [(d, c.id) for d, c in lineage("root", certs)] == [(1, "c1"), (2, "g1"), (1, "c2"), (1, "c3")]
    assert lineage("other", certs) == []


def test_lc2_lineage_survives_a_cycle_in_bad_data():
    certs = [_cert("a", "b"), _cert("b", "a")]
    assert [c.id for _, c in lineage("a", certs)] == ["b"]
