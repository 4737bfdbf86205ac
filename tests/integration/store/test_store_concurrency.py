"""Concurrent writers: one payment per order (PAY-4) and one managed start (PL-8), for real.

PostgreSQL: two threads, two sessions; the second writer is observed blocked on the first's
lock (pg_stat_activity) before the first commits, so the race is not left to chance.
SQLite: two processes; BEGIN IMMEDIATE makes the second wait for the first's write lock.
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers_store import NOW, SPEC, cert, order
from sqlalchemy import create_engine, func, select, text

from certpilot.core.errors import IllegalTransitionError
from certpilot.core.models import LedgerEntry, LedgerKind, OrderState, Status
from certpilot.store import db
from certpilot.store.db import session_scope
from certpilot.store.repository import Repository, ledger_key, new_id
from certpilot.store.tables import AuditRow, LedgerRow
from tests.servers.base import wait_until

PG = pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
TIMEOUT = 20


def payment_entries(order_id: str) -> list[LedgerEntry]:
    """What the orders operation writes for one order: keys derived from the order (PAY-4)."""
    return [
        LedgerEntry(id=new_id(), kind=LedgerKind.QUOTA, spec_key=SPEC.key, delta=-2, order_id=order_id,
                    idempotency_key=ledger_key(order_id, LedgerKind.QUOTA, 0), created_at=NOW),
        LedgerEntry(id=new_id(), kind=LedgerKind.MANAGED, spec_key=None, delta=-1, order_id=order_id,
                    idempotency_key=ledger_key(order_id, LedgerKind.MANAGED, 0), created_at=NOW),
        LedgerEntry(id=new_id(), kind=LedgerKind.CHARGE, spec_key=SPEC.key, delta=0, amount=100,
                    order_id=order_id, idempotency_key=ledger_key(order_id, LedgerKind.CHARGE, 0),
                    created_at=NOW),
    ]


def seed(url: str) -> None:
    with session_scope(url) as s:
        repo = Repository(s)
        repo.append_ledger([
            LedgerEntry(id=new_id(), kind=LedgerKind.QUOTA, spec_key=SPEC.key, delta=5, order_id=None,
                        idempotency_key="buy-quota", created_at=NOW),
            LedgerEntry(id=new_id(), kind=LedgerKind.MANAGED, spec_key=None, delta=3, order_id=None,
                        idempotency_key="buy-managed", created_at=NOW),
        ])
        repo.add_order(order("o-1"), now=NOW)


def assert_paid_once(url: str) -> None:
    with session_scope(url) as s:
        repo = Repository(s)
        assert repo.get_order("o-1").state is OrderState.PAID
        assert s.scalar(select(func.count()).select_from(LedgerRow).where(LedgerRow.order_id == "o-1")) == 3
        assert repo.balances().quota == {SPEC.key: 3}
        assert repo.balances().managed == 2
        paid = s.scalar(select(func.count()).select_from(AuditRow)
                        .where(AuditRow.entity_id == "o-1", AuditRow.to_state == "paid"))
        assert paid == 1


def blocked_on_lock(url: str) -> bool:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            n = conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")).scalar_one()
            return n >= 1
    finally:
        engine.dispose()


def _first_holds_until_second_blocks(url: str, first, second):
    """Run `first(repo)` and keep its transaction open until `second(repo)` waits on its lock."""
    first_done, release = threading.Event(), threading.Event()

    def run_first():
        try:
            with session_scope(url) as s:
                result = first(Repository(s))
                first_done.set()
                assert release.wait(TIMEOUT)
            return result
        finally:
            first_done.set()  # a failing `first` must not leave the others waiting

    def run_second():
        assert first_done.wait(TIMEOUT)
        with session_scope(url) as s:
            return second(Repository(s))

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.submit(run_first), pool.submit(run_second)
        assert first_done.wait(TIMEOUT)
        if a.done():
            a.result()  # `first` failed: raise its error now
        wait_until(lambda: blocked_on_lock(url), timeout=TIMEOUT, what="second writer blocked on the lock")
        release.set()
        return a.result(TIMEOUT), b.result(TIMEOUT)


@PG
def test_pay4_two_concurrent_payments_of_one_order_write_one_set_of_entries(store_url):
    """PAY-4: two sessions pay one order at once; the second waits, finds it paid, consumes nothing."""
    seed(store_url)

    def pay(who):
        return lambda repo: repo.pay_order_atomically("o-1", payment_entries("o-1"), actor=who,
                                                      why="paid", now=NOW)

    a, b = _first_holds_until_second_blocks(store_url, pay("a"), pay("b"))
    assert (a.paid_now, b.paid_now) == (True, False)
    assert {e.id for e in b.entries} == {e.id for e in a.entries}
    assert_paid_once(store_url)


@PG
def test_pay4_concurrent_appends_of_the_same_keys_do_not_duplicate(store_url):
    """PAY-4: even without the order's compare-and-set, the unique keys admit one set of entries."""
    seed(store_url)
    a, b = _first_holds_until_second_blocks(
        store_url,
        lambda repo: repo.append_ledger(payment_entries("o-1")),
        lambda repo: repo.append_ledger(payment_entries("o-1")),
    )
    assert [e.id for e in a] == [e.id for e in b]
    with session_scope(store_url) as s:
        assert s.scalar(select(func.count()).select_from(LedgerRow).where(LedgerRow.order_id == "o-1")) == 3


@PG
def test_pay4_barrier_race_of_two_payers(store_url):
    """PAY-4: both payers read the order as awaiting payment, then pay at the same instant."""
    seed(store_url)
    barrier = threading.Barrier(2, timeout=TIMEOUT)

    def payer(who):
        with session_scope(store_url) as s:
            repo = Repository(s)
            assert repo.get_order("o-1").state is OrderState.AWAITING_PAYMENT
            barrier.wait()
            return repo.pay_order_atomically("o-1", payment_entries("o-1"), actor=who, why="paid", now=NOW)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(payer, ["a", "b"]))
    assert sorted(r.paid_now for r in results) == [False, True]
    assert_paid_once(store_url)


@PG
def test_pl8_two_scanners_start_one_managed_application(store_url):
    """PL-8: two sessions moving NOT_ACTIVATED -> PENDING_APPLICATION: one wins, one is refused."""
    with session_scope(store_url) as s:
        Repository(s).add_certificate(cert("c-1", state=Status.NOT_ACTIVATED, not_after=None), now=NOW)

    def start(who):
        def go(repo):
            try:
                return repo.set_state("c-1", Status.PENDING_APPLICATION, actor=who, why="managed start",
                                      now=NOW).state
            except IllegalTransitionError as exc:
                return exc
        return go

    a, b = _first_holds_until_second_blocks(store_url, start("scan-a"), start("scan-b"))
    assert a is Status.PENDING_APPLICATION
    assert isinstance(b, IllegalTransitionError)
    with session_scope(store_url) as s:
        assert [x.to_state for x in Repository(s).audit("c-1")] == ["not_activated", "pending_application"]


def _pay_in_child(url: str, who: str, barrier, results) -> None:
    db.reset_engines()  # never reuse the parent's pooled connections after fork
    barrier.wait()
    with session_scope(url) as s:
        outcome = Repository(s).pay_order_atomically("o-1", payment_entries("o-1"), actor=who,
                                                     why="paid", now=NOW)
    results.put(outcome.paid_now)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_pay4_two_processes_pay_one_order_on_sqlite(store_url):
    """PAY-4 on SQLite: two processes pay at once; the second waits for the write lock, pays nothing."""
    seed(store_url)
    db.reset_engines()
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2, timeout=TIMEOUT), ctx.Queue()
    procs = [ctx.Process(target=_pay_in_child, args=(store_url, who, barrier, results)) for who in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(TIMEOUT)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sorted(results.get(timeout=1) for _ in procs) == [False, True]
    assert_paid_once(store_url)
