"""Orders and the ledger: idempotent entries (PAY-4), balances (PAY-3), one payment per order."""

from __future__ import annotations

import pytest
from helpers_store import NOW, SPEC, cert, day, order
from sqlalchemy import func, select

from certpilot.core.errors import IllegalTransitionError, NotFoundError
from certpilot.core.models import LedgerEntry, LedgerKind, OrderState, PaymentLine
from certpilot.store.db import session_scope
from certpilot.store.repository import Repository, ledger_key, new_id
from certpilot.store.tables import LedgerRow

OV = "GlobalSign/OV/wildcard"


def entry(key: str, kind: LedgerKind, delta: int, spec_key: str | None = None, order_id: str | None = None,
          amount: int = 0) -> LedgerEntry:
    return LedgerEntry(id=new_id(), kind=kind, spec_key=spec_key, delta=delta, order_id=order_id,
                       idempotency_key=key, created_at=NOW, amount=amount, note=key)


def _count(s) -> int:
    return s.scalar(select(func.count()).select_from(LedgerRow))


def test_pay4_same_idempotency_key_twice_gives_one_entry(store_url):
    """PAY-4: a retried append writes nothing new and returns the entry already stored."""
    with session_scope(store_url) as s:
        first = Repository(s).append_ledger([entry("buy-1", LedgerKind.QUOTA, 5, SPEC.key)])
    with session_scope(store_url) as s:
        repo = Repository(s)
        again = repo.append_ledger([entry("buy-1", LedgerKind.QUOTA, 5, SPEC.key),
                                    entry("buy-2", LedgerKind.MANAGED, 2)])
        # Same key in one batch too.
        twice = repo.append_ledger([entry("buy-3", LedgerKind.MANAGED, 1), entry("buy-3", LedgerKind.MANAGED, 1)])
    assert again[0] == first[0]
    assert [e.idempotency_key for e in again] == ["buy-1", "buy-2"]
    assert twice[0] == twice[1]
    with session_scope(store_url) as s:
        assert _count(s) == 3
        assert Repository(s).balances().quota == {SPEC.key: 5}


@pytest.mark.parametrize("entries, expected_quota, expected_managed", [
    ([], {}, 0),
    ([("q1", LedgerKind.QUOTA, 3, SPEC.key), ("q2", LedgerKind.QUOTA, -1, SPEC.key)], {SPEC.key: 2}, 0),
    ([("q1", LedgerKind.QUOTA, 3, SPEC.key), ("q2", LedgerKind.QUOTA, 1, OV),
      ("m1", LedgerKind.MANAGED, 4, None), ("m2", LedgerKind.MANAGED, -1, None),
      ("c1", LedgerKind.CHARGE, 1, SPEC.key)], {SPEC.key: 3, OV: 1}, 3),
    ([("q1", LedgerKind.QUOTA, 1, SPEC.key), ("q2", LedgerKind.QUOTA, -1, SPEC.key)], {SPEC.key: 0}, 0),
])
def test_pay3_balances_by_specification_and_managed_credits(store_url, entries, expected_quota, expected_managed):
    """PAY-3: remaining quota per specification and managed credits are sums over the ledger."""
    with session_scope(store_url) as s:
        Repository(s).append_ledger([entry(k, kind, d, spec) for k, kind, d, spec in entries])
    with session_scope(store_url, readonly=True) as s:
        balances = Repository(s).balances()
    assert balances.quota == expected_quota
    assert balances.managed == expected_managed


def test_order_round_trip_and_idempotent_placement(store_url):
    with session_scope(store_url) as s:
        repo = Repository(s)
        repo.add_certificate(cert("c-0"), now=NOW)
        placed = repo.add_order(order("o-1", certificate_id="c-0"), idempotency_key="renew:c-0", now=NOW)
        again = repo.add_order(order("o-2", certificate_id="c-0"), idempotency_key="renew:c-0", now=NOW)
    assert placed == order("o-1", certificate_id="c-0")
    assert again.id == "o-1"
    with session_scope(store_url) as s:
        repo = Repository(s)
        assert repo.get_order("o-1") == placed
        assert [o.id for o in repo.orders_for_certificate("c-0")] == ["o-1"]
        assert [(a.from_state, a.to_state) for a in repo.audit("o-1")] == [(None, "awaiting_payment")]
        with pytest.raises(NotFoundError):
            repo.get_order("o-2")


def _payment_entries(order_id: str) -> list[LedgerEntry]:
    return [
        entry(ledger_key(order_id, LedgerKind.QUOTA, 0), LedgerKind.QUOTA, -2, SPEC.key, order_id),
        entry(ledger_key(order_id, LedgerKind.MANAGED, 0), LedgerKind.MANAGED, -1, None, order_id),
    ]


def test_pay4_paying_an_order_twice_consumes_once(store_url):
    """PAY-4: a retried payment finds the order paid and writes no second set of entries."""
    with session_scope(store_url) as s:
        repo = Repository(s)
        repo.append_ledger([entry("buy", LedgerKind.QUOTA, 5, SPEC.key), entry("buym", LedgerKind.MANAGED, 3)])
        repo.add_order(order("o-1"), now=NOW)
    bill = [PaymentLine(kind=LedgerKind.QUOTA, spec_key=SPEC.key, needed=2, from_balance=2, shortfall=0)]
    results = []
    for attempt in range(2):
        with session_scope(store_url) as s:
            results.append(Repository(s).pay_order_atomically(
                "o-1", _payment_entries("o-1"), actor=f"payer{attempt}", why="paid from quota",
                now=day("2025-09-11"), payment=bill))
    assert [r.paid_now for r in results] == [True, False]
    assert sorted(results[0].entries, key=lambda e: e.idempotency_key) == results[1].entries
    with session_scope(store_url) as s:
        repo = Repository(s)
        assert repo.get_order("o-1").state is OrderState.PAID
        assert repo.get_order("o-1").payment == bill
        assert [e.idempotency_key for e in repo.ledger_for_order("o-1")] == [
            "order:o-1:managed:0", "order:o-1:quota:0"]
        assert repo.balances().quota == {SPEC.key: 3} and repo.balances().managed == 2
        assert [(a.actor, a.from_state, a.to_state) for a in repo.audit("o-1")] == [
            ("system", None, "awaiting_payment"), ("payer0", "awaiting_payment", "paid")]


def test_paying_a_cancelled_order_is_refused_and_consumes_nothing(store_url):
    with session_scope(store_url) as s:
        repo = Repository(s)
        repo.add_order(order("o-1"), now=NOW)
        repo.set_order_state("o-1", OrderState.CANCELLED, expected=OrderState.AWAITING_PAYMENT,
                             actor="ops", why="changed mind", now=NOW)
    with pytest.raises(IllegalTransitionError), session_scope(store_url) as s:
        Repository(s).pay_order_atomically("o-1", _payment_entries("o-1"), actor="p", why="pay", now=NOW)
    with session_scope(store_url) as s:
        assert _count(s) == 0
        with pytest.raises(IllegalTransitionError):
            Repository(s).set_order_state("o-1", OrderState.PAID, expected=OrderState.AWAITING_PAYMENT,
                                          actor="p", why="pay", now=NOW)


def test_pay4_ledger_is_append_only():
    """PAY-4: the repository offers no way to change or remove a ledger entry."""
    ledger_api = {n for n in dir(Repository) if "ledger" in n}
    assert ledger_api == {"append_ledger", "ledger", "ledger_entry", "ledger_for_order", "lock_ledger"}
