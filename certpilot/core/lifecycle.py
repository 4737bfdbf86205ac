"""The lifecycle state machine (LC-5): which stored state may follow which.

Pure. The table is the single source of truth: the repository's `set_state` moves a certificate
only through `transition`. Derived statuses (VALID, EXPIRING_SOON, EXPIRED; LC-4) are computed
from dates and are never the source or the target of a move. A move to the state a certificate
is already in is not a move and is refused too: re-entrant callers check the state first.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

from certpilot.core.errors import IllegalTransitionError, Reason, Refusal
from certpilot.core.models import LIFECYCLE_STATES, Certificate, OrderState, Status

S = Status

TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.NOT_ACTIVATED: frozenset({S.PENDING_APPLICATION, S.CANCELLED}),
    S.PENDING_APPLICATION: frozenset({S.UNDER_REVIEW}),
    # Back to pending: the CA asked for more information; the owner fixes and resubmits (CA-2).
    S.UNDER_REVIEW: frozenset({S.ISSUED, S.REJECTED, S.PENDING_APPLICATION}),
    # A rejection may be fixed and resubmitted (CA-2).
    S.REJECTED: frozenset({S.PENDING_APPLICATION}),
    S.ISSUED: frozenset({S.REVOKED}),
    S.UPLOADED: frozenset({S.REVOKED}),
    S.CANCELLED: frozenset(),
    S.REVOKED: frozenset(),
}
"""LC-5: allowed moves, from each lifecycle state to the states that may follow it."""

DERIVED_STATUSES = frozenset({S.VALID, S.EXPIRING_SOON, S.EXPIRED})
"""LC-4: statuses computed from dates, never stored, never moved to."""


def _allowed(frm: Status) -> str:
    nxt = sorted(t.value for t in TRANSITIONS.get(frm, frozenset()))
    return f"allowed from {frm.value}: {', '.join(nxt)}" if nxt else f"{frm.value} is final: no move is allowed"


def check_transition(frm: Status, to: Status) -> Refusal | None:
    """LC-5: may a certificate move from lifecycle state `frm` to `to`?

    Args:
        frm: the stored lifecycle state.
        to: the state asked for.

    Returns:
        None when the table allows the move, else a `Refusal` (ILLEGAL_TRANSITION, rule "LC-5")
        naming both states and the moves allowed from `frm`.
    """
    if to in DERIVED_STATUSES:
        return Refusal(Reason.ILLEGAL_TRANSITION,
                       f"cannot move from {frm.value} to {to.value}: {to.value} is derived from the dates "
                       "(LC-4), never set; store issued or uploaded and let the status follow", "LC-5")
    if frm not in LIFECYCLE_STATES:
        return Refusal(Reason.ILLEGAL_TRANSITION,
                       f"cannot move from {frm.value} to {to.value}: {frm.value} is a derived status, not a "
                       "stored state; move from the certificate's stored lifecycle state", "LC-5")
    if to in TRANSITIONS[frm]:
        return None
    return Refusal(Reason.ILLEGAL_TRANSITION,
                   f"cannot move from {frm.value} to {to.value}; {_allowed(frm)}", "LC-5")


def transition(frm: Status, to: Status) -> Status:
    """LC-5: the new state `to` when the move is allowed.

    Raises:
        IllegalTransitionError: the move is not in `TRANSITIONS` (message names both states and
            the allowed moves).
    """
    refusal = check_transition(frm, to)
    if refusal is not None:
        raise IllegalTransitionError(refusal.message)
    return to


class Stage(IntEnum):
    """LC-3: the three stages of a renewal (0: none, the certificate is not in a renewal)."""

    NONE = 0
    ORDER = 1
    """Stage 1: renewal information submitted, payment pending."""
    APPLICATION = 2
    """Stage 2: request to the CA, domain validation, CA review."""
    DEPLOYMENT = 3
    """Stage 3: issued; deploy in place of the old certificate and verify."""


def renewal_stage(order_state: OrderState | None, state: Status) -> Stage:
    """LC-3: the stage a new certificate of a renewal is in.

    Args:
        order_state: the state of the order that created it (None: not created by an order).
        state: the certificate's lifecycle state.

    Returns:
        ORDER while the order awaits payment; APPLICATION while pending application, under review
        or rejected (resubmission allowed); DEPLOYMENT once issued; NONE otherwise (not activated,
        cancelled, revoked, uploaded, or a declined/cancelled order).
    """
    if order_state is None or order_state in (OrderState.DECLINED, OrderState.CANCELLED):
        return Stage.NONE
    if order_state is OrderState.AWAITING_PAYMENT:
        return Stage.ORDER
    if state in (Status.PENDING_APPLICATION, Status.UNDER_REVIEW, Status.REJECTED):
        return Stage.APPLICATION
    if state is Status.ISSUED:
        return Stage.DEPLOYMENT
    return Stage.NONE


def lineage(root_id: str, certificates: Iterable[Certificate]) -> list[tuple[int, Certificate]]:
    """LC-2: the certificates descending from `root_id`, each listed under its parent.

    Depth-first; siblings in plan order (`plan_index`, then `not_before`, then id). The root itself
    is not in the result. Each entry is ``(depth, certificate)`` with depth 1 for a direct child.
    """
    by_parent: dict[str, list[Certificate]] = {}
    for c in certificates:
        if c.parent_id is not None:
            by_parent.setdefault(c.parent_id, []).append(c)
    out: list[tuple[int, Certificate]] = []
    seen: set[str] = {root_id}

    def walk(parent: str, depth: int) -> None:
        kids = sorted(by_parent.get(parent, []),
                      key=lambda c: (c.plan_index, c.not_before.isoformat() if c.not_before else "", c.id))
        for kid in kids:
            if kid.id in seen:  # a cycle in bad data must not loop forever
                continue
            seen.add(kid.id)
            out.append((depth, kid))
            walk(kid.id, depth + 1)

    walk(root_id, 1)
    return out


_APPLICABLE = frozenset({Status.PENDING_APPLICATION, Status.UNDER_REVIEW, Status.REJECTED, Status.ISSUED})


def may_apply(state: Status, certificate_id: str | None = None, parent_id: str | None = None) -> Refusal | None:
    """LC-3 stage 2: whether `apply` has anything to do for a certificate in `state`.

    Pending, under review and (for a resubmission, CA-2) rejected certificates are applied for;
    an issued one only goes on to deployment. A not-activated one waits for its managed start
    (PL-4), and cancelled, revoked or uploaded ones are never applied for.

    Args:
        state: the certificate's stored state.
        certificate_id, parent_id: the certificate and the one it renews, when known: the
            refusal then names the command to run instead, ids filled in (EL-5).
    """
    state = Status(state)
    if state in _APPLICABLE:
        return None
    if state is Status.NOT_ACTIVATED:
        instead = f": `certpilot cancel {certificate_id}`" if certificate_id else ""
        return Refusal(Reason.ILLEGAL_TRANSITION,
                       "this certificate is not activated yet: its application starts by itself when the current "
                       f"certificate reaches the managed-start threshold (PL-4); cancel it instead if it is not "
                       f"wanted{instead}.", "PL-4")
    owner = parent_id or certificate_id
    instead = f" (preview it with `certpilot renew {owner} --dry-run`)" if owner else ""
    return Refusal(Reason.ILLEGAL_TRANSITION,
                   f"a {state.value} certificate is not applied for; renew the certificate it belongs to "
                   f"instead{instead}.", "LC-5")
