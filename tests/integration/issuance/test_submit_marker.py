"""The "submitting" marker and the row lock around `submit` (issue 13), on SQLite and PostgreSQL.

- A run killed between committing the marker and recording the CA's order: a rerun of the same
  run's claim within the marker's lifetime waits (TransientError, no second CA order); a run that
  took the work over (a new claim) or a later rerun recovers the attempt with the same
  idempotency token: exactly one order recorded.
- Two concurrent `submit`s of one certificate: one places the CA order, the other is told that
  a run is placing it (the application row is locked on PostgreSQL; SQLite serialises writers).

The CA is the embedded private CA (real signing, real store) behind a wrapper that counts orders.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from certpilot import runtime as rt
from certpilot.adapters.issuers.private_ca import PrivateCa
from certpilot.core.errors import TransientError
from certpilot.core.outcomes import SubmitKind
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.operations import applications, pipeline, runs
from certpilot.store.db import session_scope
from certpilot.store.ports import SqlPrivateCaStore
from tests.integration.issuance.conftest import add_certificate

pytestmark = [pytest.mark.servers]

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


class Crash(BaseException):
    """The process dies here: nothing on the way catches it."""


class CountingCa:
    """The private CA, counting orders (and their tokens); optionally slow, or dying once mid-order."""

    name = "counting-ca"
    publicly_trusted = False
    paid = True

    def __init__(self, inner: PrivateCa, *, delay: float = 0.0, crash_first: bool = False) -> None:
        self.inner, self.delay, self.crash_first = inner, delay, crash_first
        self.tokens: list[str] = []
        self._lock = threading.Lock()

    def submit(self, application):
        with self._lock:
            self.tokens.append(application.token)
            first = len(self.tokens) == 1
        if self.delay:
            time.sleep(self.delay)
        if first and self.crash_first:
            raise Crash("killed after the CA was asked, before its answer was recorded")
        return self.inner.submit(application)

    def advance(self, ref, application):
        return self.inner.advance(ref, application)

    def poll(self, ref):
        return self.inner.poll(ref)

    def fetch_chain(self, ref):
        return self.inner.fetch_chain(ref)


def _world(url: str, **ca_options):
    now = {"t": T0}
    clock = lambda: now["t"]  # noqa: E731 - the injected clock
    sessions = lambda: session_scope(url)  # noqa: E731
    vault = KeyVault(LocalMasterKey(os.urandom(32)))
    ca = CountingCa(PrivateCa(SqlPrivateCaStore(sessions), vault, clock=clock), **ca_options)
    svc = rt.local_services(database_url=url, vault=vault, issuers={"ca": ca}, default_issuer="ca", clock=clock)
    cid = add_certificate(sessions, ["marker.example.test"])
    pipeline.prepare(svc, cid)
    return svc, ca, now, cid


def _orders(svc, cid) -> str | None:
    with svc.session(readonly=True) as s:
        return applications.application_state(s, cid)["order_ref"]


def test_killed_between_marker_and_order_is_recovered_once(store_url):
    svc, ca, now, cid = _world(store_url, crash_first=True)
    runs.claim(svc, cid, "11111111-1111-1111-1111-111111111111")
    with pytest.raises(Crash):
        pipeline.submit(svc, cid)
    assert _orders(svc, cid) is None and len(ca.tokens) == 1

    now["t"] = T0 + timedelta(minutes=1)  # the same run's claim, a minute later: it may still be placing it
    with pytest.raises(TransientError, match="another run is placing"):
        pipeline.submit(svc, cid)
    assert len(ca.tokens) == 1

    runs.claim(svc, cid, "22222222-2222-2222-2222-222222222222")  # the scanner relaunched the work
    out = pipeline.submit(svc, cid)
    assert out.kind is SubmitKind.ISSUED
    assert ca.tokens[1] == ca.tokens[0] != ""  # the same attempt, the same idempotency token
    assert _orders(svc, cid) == out.order_ref


def test_stale_marker_of_the_same_claim_is_recovered(store_url):
    svc, ca, now, cid = _world(store_url, crash_first=True)
    with pytest.raises(Crash):
        pipeline.submit(svc, cid)
    now["t"] = T0 + applications.SUBMIT_MARKER_STALE
    assert pipeline.submit(svc, cid).kind is SubmitKind.ISSUED
    assert len(ca.tokens) == 2 and ca.tokens[0] == ca.tokens[1]


def test_concurrent_submits_place_one_order(store_url, monkeypatch):
    """Both runs read the application at once; the one that reads second waits for the first's
    marker (PostgreSQL: SELECT ... FOR UPDATE; without the lock both would read "no marker" and
    each place an order)."""
    svc, ca, now, cid = _world(store_url, delay=0.3)
    mark = applications._mark_submitting

    def slow_mark(*args, **kwargs):  # widen the window between reading the row and marking it
        time.sleep(0.3)
        return mark(*args, **kwargs)

    monkeypatch.setattr(applications, "_mark_submitting", slow_mark)
    start = threading.Barrier(2)
    results: list[object] = []

    def one():
        start.wait()
        try:
            results.append(pipeline.submit(svc, cid).kind)
        except TransientError as exc:
            results.append(exc.message)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(ca.tokens) == 1  # one CA order
    assert SubmitKind.ISSUED in results
    assert any(isinstance(r, str) and "another run is placing" in r for r in results)
    assert pipeline.submit(svc, cid).kind is SubmitKind.ISSUED and len(ca.tokens) == 1  # afterwards: resumed
