"""Payment arithmetic (PAY-1..PAY-4, pure parts). No I/O; the store keeps the ledger.

PAY-1: an order is paid first from the account's quota of the same specification and its
managed-service credits; only the shortfall is charged, at `Policy.quota_price` per certificate
and `Policy.managed_price` per managed service. PAY-3: balances are the sum of the ledger's
deltas per kind (and per specification for quota); CHARGE entries record money and move no
balance. PAY-4: every movement has a deterministic idempotency key, built by the functions at
the end of this module only, so a retried or concurrent payment writes the same keys and the
ledger's unique key keeps it single.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from certpilot.core.errors import Reason, Refusal
from certpilot.core.models import (
    Balances,
    LedgerKind,
    Order,
    OrderKind,
    OrderState,
    PaymentLine,
    Policy,
    Spec,
    utc,
)


def _line(kind: LedgerKind, spec_key: str | None, needed: int, balance: int, price: int, what: str) -> PaymentLine:
    from_balance = min(needed, max(0, balance))
    short = needed - from_balance
    return PaymentLine(kind=kind, spec_key=spec_key, needed=needed, from_balance=from_balance, shortfall=short,
                       unit_price=price,
                       description=f"{needed} {what}: {from_balance} from the balance, {short} to charge")


def price_order(spec: Spec, *, certificates: int, managed: int, balances: Balances, policy: Policy) -> list[PaymentLine]:
    """PAY-1: the bill of an order: balances first, the shortfall charged.

    Args:
        spec: the certificates' specification (quota is matched by `spec.key`).
        certificates: certificate quotas needed (VA-5 reissues excluded: they cost nothing).
        managed: managed-service credits needed (PL-2 plus PAY-2's fee).
        balances: the account's balances (PAY-3).
        policy: unit prices.

    Returns:
        One QUOTA line, then one MANAGED line when `managed` > 0; each with needed, from_balance
        (``min(needed, balance)``), shortfall and unit price.

    Raises:
        ValueError: a negative count.
    """
    if certificates < 0 or managed < 0:
        raise ValueError(f"counts must not be negative (certificates={certificates}, managed={managed})")
    lines = [_line(LedgerKind.QUOTA, spec.key, certificates, balances.quota_for(spec), policy.quota_price,
                   f"certificate quota of {spec.key}")]
    if managed:
        lines.append(_line(LedgerKind.MANAGED, None, managed, balances.managed, policy.managed_price,
                           "managed-service credit(s)"))
    return lines


def shortfall(lines: Iterable[PaymentLine]) -> int:
    """PAY-1: the money to charge: the sum of shortfall × unit price over the lines."""
    return sum(line.shortfall * line.unit_price for line in lines)


def needs_approval(lines: Iterable[PaymentLine]) -> bool:
    """PAY-1: True when the bill charges money (a shortfall with a price), which an operator approves."""
    return shortfall(lines) > 0


def balances_from(movements: Iterable[tuple[LedgerKind | str, str | None, int]]) -> Balances:
    """PAY-3: remaining quota per specification and managed credits, summed from ledger movements.

    Args:
        movements: ``(kind, spec_key, delta)`` per ledger entry, or per (kind, spec_key) group
            already summed (the store sums in SQL and folds its groups here).

    Returns:
        The balances. Quota counts per specification (a specification ever bought stays listed,
        at 0 once used up); quota without a specification and CHARGE entries move no balance.
    """
    quota: dict[str, int] = {}
    managed = 0
    for kind, spec_key, delta in movements:
        kind = LedgerKind(kind)
        if kind is LedgerKind.QUOTA and spec_key is not None:
            quota[spec_key] = quota.get(spec_key, 0) + int(delta)
        elif kind is LedgerKind.MANAGED:
            managed += int(delta)
    return Balances(quota=dict(sorted(quota.items())), managed=managed)


# ---------------------------------------------------------------- idempotency keys (PAY-4)
# Every key the ledger and the orders are written under is built here, so a retried or
# concurrent writer derives the same key. The formats are stored: never change one.


def ledger_key(order_id: str, kind: LedgerKind | str, index: int) -> str:
    """PAY-4: the key of line `index` of one kind of an order's payment (``order:ID:KIND:I``).

    Two payers of one order (a retry, a second worker) derive the same keys, so the ledger's
    unique key lets only one set of entries in.
    """
    return f"order:{order_id}:{LedgerKind(kind).value}:{index}"


def cancel_key(certificate_id: str, kind: LedgerKind | str) -> str:
    """PL-7/PAY-4: the key of what cancelling a certificate restores (``cancel:ID:KIND``): once only."""
    return f"cancel:{certificate_id}:{LedgerKind(kind).value}"


def top_up_key(kind: LedgerKind | str, nonce: str) -> str:
    """PAY-3: the key of a quota or credit purchase made without one (``KIND:NONCE``, a fresh nonce)."""
    return f"{LedgerKind(kind).value}:{nonce}"


def service_sync_deltas(balances: Balances, remote: dict[str, int]) -> dict[str, int]:
    """PAY-1/PAY-3 with a CA service that counts its own quota (Alibaba Cloud CAS's packages): the
    quota change per specification that brings the local balance to the service's count (the
    service is the truth for its specifications); specifications already equal are left out.

    Args:
        balances: what the ledger holds now.
        remote: remaining certificates per specification key, as the service counts them.
    """
    deltas = {key: int(count) - balances.quota.get(key, 0) for key, count in sorted(remote.items())}
    return {key: delta for key, delta in deltas.items() if delta}


def removal_key(kind: LedgerKind | str, nonce: str) -> str:
    """PAY-3: the key of a quota or credit removal made without one (``remove:KIND:NONCE``)."""
    return f"remove:{LedgerKind(kind).value}:{nonce}"


def renewal_attempt_key(certificate_id: str, closed_orders: int) -> str:
    """PAY-4: the idempotency key of the renewal order a flow places for a certificate.

    A rerun of the same attempt derives the same key and finds the same order; after a declined
    or cancelled order (`closed_orders` of them) the next attempt gets a new key, so a new order.

    Example: ``renewal_attempt_key("crt-1", 0)`` → ``"renew:crt-1"``; with 2 → ``"renew:crt-1#2"``.
    """
    return f"renew:{certificate_id}" + (f"#{closed_orders}" if closed_orders else "")


# ---------------------------------------------------------------- orders' own lifecycle
# An order waits for its shortfall to be approved (PAY-1) at most `Policy.order_expiry_days`
# (30 by default): past that an unpaid order is EXPIRED, so abandoned purchases never pile up
# silently as "awaiting payment". Derived from dates at the time asked (like LC-4's status), so a
# listing is right without any job having run; the store records EXPIRED when someone acts on it.


def order_expires_at(created_at: datetime, policy: Policy) -> datetime:
    """When an order placed at `created_at` expires if still unpaid (created + `order_expiry_days`)."""
    return utc(created_at) + timedelta(days=policy.order_expiry_days)


def order_state_at(state: OrderState | str, created_at: datetime, now: datetime, policy: Policy) -> OrderState:
    """An order's state as of `now`: AWAITING_PAYMENT past its expiry is EXPIRED; any other as stored.

    Example: placed 2025-09-10, 30-day window: awaiting at 2025-10-09T23:59Z, expired from
    2025-10-10T00:00Z.
    """
    state = OrderState(state)
    if state is OrderState.AWAITING_PAYMENT and utc(created_at) <= unpaid_expired_before(now, policy):
        return OrderState.EXPIRED
    return state


def unpaid_expired_before(now: datetime, policy: Policy) -> datetime:
    """The cut-off of `order_state_at` as one instant, for a query: an order awaiting payment that
    was placed at or before it is expired at `now` (``now - order_expiry_days``)."""
    return utc(now) - timedelta(days=policy.order_expiry_days)


def order_again_command(order: Order) -> str:
    """The command that places `order` again, with its real values (what a closed order's refusal
    tells the operator to run instead)."""
    if order.kind is OrderKind.PURCHASE and order.names:
        names = " ".join(f"--name {n}" for n in order.names)
        return (f"certpilot buy {names} --level {order.spec.level.value} --brand {shlex.quote(order.spec.brand)} "
                f"--years {order.years}")
    if order.kind is OrderKind.EMERGENCY and order.certificate_id:
        return f"certpilot emergency {order.certificate_id}"
    if order.certificate_id:
        return f"certpilot renew {order.certificate_id} --years {order.years}"
    return "certpilot buy --name NAME"  # an order older than the names it buys: they must be given again


def check_approve(order: Order, now: datetime, policy: Policy) -> Refusal | None:
    """PAY-1: may the shortfall of `order` be approved now? Only while it awaits payment.

    Returns:
        None for an order awaiting payment (or already paid: approving again changes nothing);
        ORDER_CLOSED for a declined, cancelled or expired one, naming the command that orders again.
    """
    state = order_state_at(order.state, order.created_at, now, policy)
    if state in (OrderState.AWAITING_PAYMENT, OrderState.PAID):
        return None
    why = {OrderState.EXPIRED: f"expired unpaid on {order_expires_at(order.created_at, policy):%Y-%m-%d} "
                               f"({policy.order_expiry_days} days after it was placed)",
           OrderState.DECLINED: "its charge was declined",
           OrderState.CANCELLED: "it was cancelled"}[state]
    return Refusal(Reason.ORDER_CLOSED,
                   f"order {order.id} cannot be paid: {why}; nothing was debited. Order again: "
                   f"`{order_again_command(order)}`", "PAY-1")


def _paid_refusal(order: Order, action: str, cancellable: Sequence[str], rule: str) -> Refusal:
    if cancellable:
        instead = ("to stop the later certificates of its plan, cancel them: "
                   + ", ".join(f"`certpilot cancel {c}`" for c in cancellable)
                   + " (PL-7: each restores one quota and one managed-service credit)")
    else:
        instead = (f"none of its certificates is waiting its turn, so nothing can be cancelled; see them with "
                   f"`certpilot order show {order.id}`")
    return Refusal(Reason.ORDER_PAID,
                   f"order {order.id} is paid and its certificates exist: it cannot be {action}; {instead}", rule)


def check_decline(order: Order, now: datetime, policy: Policy, cancellable: Sequence[str] = ()) -> Refusal | None:
    """PAY-1: may the charge of `order` be declined? Only while it awaits payment.

    Args:
        cancellable: ids of the order's certificates that PL-7 lets the operator cancel instead.

    Returns:
        None when it awaits payment or is already declined (declining again changes nothing);
        ORDER_PAID for a paid order; ORDER_CLOSED for a cancelled or expired one.
    """
    state = order_state_at(order.state, order.created_at, now, policy)
    if state in (OrderState.AWAITING_PAYMENT, OrderState.DECLINED):
        return None
    if state is OrderState.PAID:
        return _paid_refusal(order, "declined", cancellable, "PAY-1")
    return Refusal(Reason.ORDER_CLOSED, f"order {order.id} is already {state.value}: there is no charge to decline "
                                        "and nothing was debited", "PAY-1")


def check_order_cancel(order: Order, now: datetime, policy: Policy, cancellable: Sequence[str] = ()) -> Refusal | None:
    """May `order` be cancelled (`certpilot order cancel`)? An unpaid one, yes: awaiting payment or
    expired (its expiry is then recorded as a cancellation). Cancelling a cancelled order changes
    nothing.

    Returns:
        None when allowed; ORDER_PAID for a paid order (naming its cancellable certificates,
        PL-7); ORDER_CLOSED for a declined one.
    """
    state = order_state_at(order.state, order.created_at, now, policy)
    if state in (OrderState.AWAITING_PAYMENT, OrderState.EXPIRED, OrderState.CANCELLED):
        return None
    if state is OrderState.PAID:
        return _paid_refusal(order, "cancelled", cancellable, "PL-7")
    return Refusal(Reason.ORDER_CLOSED, f"order {order.id} is already declined: nothing was debited and nothing "
                                        "is left to cancel", "PAY-1")


# ---------------------------------------------------------------- taking back a balance (PAY-3)


def balance_name(spec: Spec | None) -> str:
    """What a balance is called in messages: `spec`'s quota, or (None) managed-service credits."""
    return f"quota of {spec.key}" if spec is not None else "managed-service credits"


def removal_refusal(spec: Spec | None, count: int, held: int, balances: Balances) -> Refusal | None:
    """PAY-3: may `count` of `spec`'s quota (None: managed credits) be removed when `held` remain?

    Returns:
        None when it may; else a refusal (NOTHING_TO_REMOVE when none is held, NOT_ENOUGH_QUOTA
        when fewer than `count` remain) saying what is held and which command removes it.
    """
    if held >= count:
        return None
    flag = (f"--level {spec.level.value} --type {spec.cert_type.value} --brand {shlex.quote(spec.brand)}"
            if spec is not None else "--managed")
    if held <= 0:
        held_specs = [k for k, n in sorted(balances.quota.items()) if n > 0]
        listed = ("; quota held: " + ", ".join(f"{k} ({balances.quota[k]})" for k in held_specs)) if held_specs else ""
        return Refusal(Reason.NOTHING_TO_REMOVE,
                       f"there are no {balance_name(spec)} to remove: the balance is 0 (the ledger never goes below "
                       f"zero){listed}; list the balances with `certpilot quota`", "PAY-3")
    option = f"{flag} --count {held}" if spec is not None else f"--managed {held}"
    return Refusal(Reason.NOT_ENOUGH_QUOTA,
                   f"only {held} {balance_name(spec)} remain, fewer than the {count} asked: the rest was used by orders "
                   f"or never added, and the balance cannot go below zero; remove at most {held}: "
                   f"`certpilot quota remove {option}`", "PAY-3")
