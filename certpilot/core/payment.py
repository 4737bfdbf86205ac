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

from collections.abc import Iterable

from certpilot.core.models import Balances, LedgerKind, PaymentLine, Policy, Spec


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


def renewal_attempt_key(certificate_id: str, closed_orders: int) -> str:
    """PAY-4: the idempotency key of the renewal order a flow places for a certificate.

    A rerun of the same attempt derives the same key and finds the same order; after a declined
    or cancelled order (`closed_orders` of them) the next attempt gets a new key, so a new order.

    Example: ``renewal_attempt_key("crt-1", 0)`` → ``"renew:crt-1"``; with 2 → ``"renew:crt-1#2"``.
    """
    return f"renew:{certificate_id}" + (f"#{closed_orders}" if closed_orders else "")
