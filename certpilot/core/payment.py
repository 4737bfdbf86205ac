"""Payment arithmetic (PAY-1..PAY-4, pure parts). No I/O; the store keeps the ledger.

PAY-1: an order is paid first from the account's quota of the same specification and its
managed-service credits; only the shortfall is charged, at `Policy.quota_price` per certificate
and `Policy.managed_price` per managed service. PAY-3: balances are the sum of the ledger's
deltas per kind (and per specification for quota); CHARGE entries record money and move no
balance. PAY-4: every movement of an order has a deterministic idempotency key, so a retried or
concurrent payment writes the same keys and the ledger's unique key keeps it single.
"""

from __future__ import annotations

from collections.abc import Iterable

from certpilot.core.models import Balances, LedgerEntry, LedgerKind, PaymentLine, Policy, Spec


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


def balances_from(entries: Iterable[LedgerEntry]) -> Balances:
    """PAY-3: remaining quota per specification and managed credits, from the ledger's entries.

    Specifications whose quota sums to zero are left out; CHARGE entries move no balance.
    """
    quota: dict[str, int] = {}
    managed = 0
    for e in entries:
        if e.kind is LedgerKind.QUOTA and e.spec_key is not None:
            quota[e.spec_key] = quota.get(e.spec_key, 0) + e.delta
        elif e.kind is LedgerKind.MANAGED:
            managed += e.delta
    return Balances(quota={k: v for k, v in sorted(quota.items()) if v != 0}, managed=managed)


def idempotency_key(order_id: str, kind: LedgerKind, step: str, spec_key: str | None = None) -> str:
    """PAY-4: the ledger key of one movement of an order: the same inputs always give the same key.

    Example: ``idempotency_key("o1", QUOTA, "consume", "DigiCert/DV/single")`` →
    ``"o1:quota:DigiCert/DV/single:consume"``.
    """
    return f"{order_id}:{kind.value}:{spec_key or '-'}:{step}"


def renewal_attempt_key(certificate_id: str, closed_orders: int) -> str:
    """PAY-4: the idempotency key of the renewal order a flow places for a certificate.

    A rerun of the same attempt derives the same key and finds the same order; after a declined
    or cancelled order (`closed_orders` of them) the next attempt gets a new key, so a new order.

    Example: ``renewal_attempt_key("crt-1", 0)`` → ``"renew:crt-1"``; with 2 → ``"renew:crt-1#2"``.
    """
    return f"renew:{certificate_id}" + (f"#{closed_orders}" if closed_orders else "")
