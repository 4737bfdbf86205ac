"""PAY-1, PAY-3, PAY-4 (pure parts): pricing from balances first, ledger arithmetic, idempotency keys."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from certpilot.core.models import Balances, CertType, LedgerEntry, LedgerKind, Level, Policy, Spec
from certpilot.core.payment import (
    balances_from,
    cancel_key,
    ledger_key,
    needs_approval,
    price_order,
    renewal_attempt_key,
    shortfall,
    top_up_key,
)

SPEC = Spec(brand="DigiCert", level=Level.DV, cert_type=CertType.SINGLE)
OTHER = Spec(brand="GlobalSign", level=Level.OV, cert_type=CertType.WILDCARD)
P = Policy()  # quota 100, managed 20


@pytest.mark.parametrize("certs, managed, quota, credits, expected, money", [
    # (needed, from_balance, shortfall) per line: quota, then managed
    (1, 0, 1, 0, [(1, 1, 0)], 0),
    (1, 0, 0, 0, [(1, 0, 1)], 100),
    (3, 2, 1, 1, [(3, 1, 2), (2, 1, 1)], 220),
    (3, 2, 5, 9, [(3, 3, 0), (2, 2, 0)], 0),
    (2, 1, 0, 0, [(2, 0, 2), (1, 0, 1)], 220),
    (2, 1, -3, -1, [(2, 0, 2), (1, 0, 1)], 220),   # a negative balance never pays
])
def test_pay1_balance_first_then_shortfall(certs, managed, quota, credits, expected, money):
    """PAY-1: quota of the same specification and managed credits first; only the shortfall is charged."""
    balances = Balances(quota={SPEC.key: quota, OTHER.key: 50}, managed=credits)
    lines = price_order(SPEC, certificates=certs, managed=managed, balances=balances, policy=P)
    assert [(x.needed, x.from_balance, x.shortfall) for x in lines] == expected
    assert [x.kind for x in lines] == [LedgerKind.QUOTA, LedgerKind.MANAGED][: len(expected)]
    assert lines[0].spec_key == "DigiCert/DV/single" and lines[0].unit_price == 100
    assert shortfall(lines) == money
    assert needs_approval(lines) is (money > 0)


def test_pay1_quota_of_another_specification_does_not_pay():
    lines = price_order(SPEC, certificates=1, managed=0, balances=Balances(quota={OTHER.key: 10}), policy=P)
    assert (lines[0].from_balance, lines[0].shortfall) == (0, 1)
    assert lines[0].description == "1 certificate quota of DigiCert/DV/single: 0 from the balance, 1 to charge"


def test_pay1_prices_come_from_policy():
    lines = price_order(SPEC, certificates=2, managed=1, balances=Balances(), policy=Policy(quota_price=7,
                                                                                           managed_price=3))
    assert shortfall(lines) == 2 * 7 + 3


def test_pay1_free_shortfall_needs_no_approval():
    lines = price_order(SPEC, certificates=1, managed=0, balances=Balances(), policy=Policy(quota_price=0))
    assert lines[0].shortfall == 1 and needs_approval(lines) is False


def test_pay1_negative_counts_are_refused():
    with pytest.raises(ValueError):
        price_order(SPEC, certificates=-1, managed=0, balances=Balances(), policy=P)


def _e(kind: LedgerKind, spec: str | None, delta: int, n: int) -> LedgerEntry:
    return LedgerEntry(id=f"e{n}", kind=kind, spec_key=spec, delta=delta, order_id="o1", idempotency_key=f"k{n}",
                       created_at=datetime(2025, 9, 10, tzinfo=UTC))


def test_pay3_balances_are_the_ledger_sums():
    """PAY-3: remaining quota per specification and managed credits, from the ledger at any time;
    a specification ever bought stays listed at 0 once used up; CHARGE moves no balance."""
    entries = [
        _e(LedgerKind.QUOTA, SPEC.key, 5, 1), _e(LedgerKind.QUOTA, SPEC.key, -2, 2),
        _e(LedgerKind.QUOTA, OTHER.key, 1, 3), _e(LedgerKind.QUOTA, OTHER.key, -1, 4),
        _e(LedgerKind.MANAGED, None, 3, 5), _e(LedgerKind.MANAGED, None, -1, 6),
        _e(LedgerKind.CHARGE, None, 0, 7), _e(LedgerKind.QUOTA, None, 9, 8),
    ]
    b = balances_from((e.kind, e.spec_key, e.delta) for e in entries)
    assert b == Balances(quota={"DigiCert/DV/single": 3, "GlobalSign/OV/wildcard": 0}, managed=2)
    assert b.quota_for(SPEC) == 3 and b.quota_for(OTHER) == 0
    assert balances_from([]) == Balances()


def test_pay3_balances_from_group_sums_equal_balances_from_entries():
    """PAY-3: the store folds per-(kind, specification) sums; the result is the same as entry by entry."""
    entries = [(LedgerKind.QUOTA, SPEC.key, 2), (LedgerKind.QUOTA, SPEC.key, -1), ("managed", None, 4),
               ("managed", None, -4), ("charge", SPEC.key, 300)]
    grouped = [("quota", SPEC.key, 1), ("managed", None, 0), ("charge", SPEC.key, 300)]
    assert balances_from(entries) == balances_from(grouped) == Balances(quota={SPEC.key: 1}, managed=0)


def test_pay4_idempotency_keys_are_deterministic_and_keep_their_stored_formats():
    """PAY-4: a retried payment, cancellation or flow rerun computes the same keys, so the ledger's
    unique key never charges or restores twice; the formats are those already stored."""
    assert ledger_key("o1", LedgerKind.QUOTA, 0) == "order:o1:quota:0"
    assert ledger_key("o1", "charge", 1) == ledger_key("o1", LedgerKind.CHARGE, 1) == "order:o1:charge:1"
    keys = {ledger_key(o, k, i) for o in ("o1", "o2") for k in LedgerKind for i in range(3)}
    assert len(keys) == 2 * len(LedgerKind) * 3
    assert (cancel_key("crt-1", LedgerKind.QUOTA), cancel_key("crt-1", "managed")) == (
        "cancel:crt-1:quota", "cancel:crt-1:managed")
    assert top_up_key(LedgerKind.MANAGED, "add-1") == "managed:add-1"
    assert [renewal_attempt_key("crt-1", n) for n in (0, 1, 2)] == ["renew:crt-1", "renew:crt-1#1", "renew:crt-1#2"]
