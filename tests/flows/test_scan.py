"""The `scan` flow under prefect_test_harness: exactly-once managed starts with two scanners
(PL-4, PL-8), a PL-5 refusal told once (NT-2), expiry notices once each (NT-1), CA reviews
followed (CA-2), and the artifacts read back through the Prefect client.

Inventories are written through the Repository with fixed dates; the scanner's time is the
installed services' clock (the scan has no parameters) and nothing is launched
(`CERTPILOT_LAUNCH_MODE=none`: these tests are about the decisions; tests/flows/test_launch*.py
launch). Notifications go to a list-collecting Notifier (the Notifier Protocol).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from certpilot import runtime as rt
from certpilot.adapters.dns.rfc2136 import Rfc2136Provider
from certpilot.adapters.issuers.private_ca import PrivateCa, PrivateCaPolicy
from certpilot.adapters.notify.base import EventKind, Notifier
from certpilot.core.models import CsrMode, Level, Order, OrderKind, OrderState, Origin, Policy, Spec, Status
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.operations import pipeline
from certpilot.store.db import ensure_schema, session_scope
from certpilot.store.ports import SqlPrivateCaStore
from certpilot.store.repository import Repository
from certpilot.store.tables_pipeline import ManagedStartRow

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "scan"))
from scan_inventory import DAY, NOW, add_plan, certificate, counts, seed_ledger  # noqa: E402

pytestmark = pytest.mark.flows
AT = NOW.isoformat()


class CollectingNotifier:
    """A Notifier (the Protocol email and webhook implement) that keeps what it is sent."""

    name = "collect"

    def __init__(self) -> None:
        self.events = []
        self._lock = threading.Lock()

    def send(self, event) -> None:
        with self._lock:
            self.events.append(event)


@pytest.fixture
def env(tmp_path, prefect_harness, monkeypatch):
    """A SQLite store, a runtime writing the zone example.test, a collecting notifier; the scans
    launch nothing."""
    monkeypatch.setenv("CERTPILOT_LAUNCH_MODE", "none")
    url = f"sqlite:///{tmp_path / 'scan.db'}"
    ensure_schema(url)
    notifier = CollectingNotifier()
    assert isinstance(notifier, Notifier)
    zone = Rfc2136Provider("127.0.0.1", 53, zones=["example.test"], keyname="scan-test", secret="c2NhbgAA")
    clock = {"now": NOW}
    vault = KeyVault(LocalMasterKey(os.urandom(32)))
    ca = PrivateCa(SqlPrivateCaStore(lambda: session_scope(url)), vault, clock=lambda: clock["now"],
                   policy=PrivateCaPolicy(review_delay=timedelta(days=5), review_rejects=("bad.example.test",)))

    def make(policy: Policy | None = None) -> rt.Services:
        return rt.local_services(database_url=url, notifiers=[notifier], dns_providers=[zone], vault=vault,
                                issuers={"private-ca": ca}, clock=lambda: clock["now"], extra={"clock": clock},
                                **({"policy": policy} if policy else {}))

    env = type("Env", (), {})()
    env.url, env.notifier, env.make, env.clock = url, notifier, make, clock
    return env


def run_scan(at: str = AT):
    """One scan at `at` (the installed services' clock reads `rt.services().extra["clock"]`)."""
    from datetime import datetime

    from flows.scan import scan

    rt.services().extra["clock"]["now"] = datetime.fromisoformat(at)
    state = scan(return_state=True)
    return state.result(), state.state_details.flow_run_id


def test_pl8_pl4_two_scans_at_once_start_200_applications_exactly_once(env):
    """PL-8 / PL-4: two scans at the same time over 200 due certificates start 200 applications: 200
    managed_starts rows, 200 NOT_ACTIVATED -> PENDING_APPLICATION transitions, the ledger untouched
    (the managed services were paid at order time, PAY-1)."""
    with session_scope(env.url) as s:
        repo = Repository(s)
        seed_ledger(repo)
        for n in range(200):
            add_plan(repo, n, left=20 * DAY)
    results = []
    with rt.use(env.make(Policy(notice_days=()))):
        barrier = threading.Barrier(2)

        def one():
            barrier.wait()
            results.append(run_scan()[0])

        threads = [threading.Thread(target=one) for _ in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(240)
    assert len(results) == 2
    assert sum(r.started for r in results) == 200
    assert all(r.waiting_manual == 0 and r.notices == 0 for r in results)
    with session_scope(env.url) as s:
        assert counts(s) == {"managed_starts": 200, "started": 200, "transitions": 200, "ledger": 2, "notices": 0}
        repo = Repository(s)
        assert {repo.certificate_model(f"p{n}-c2").state for n in range(200)} == {Status.PENDING_APPLICATION}
    with rt.use(env.make(Policy(notice_days=()))):
        again, _ = run_scan()
    # The decision, the look at the unfinished work (the 200 pending applications) and the fleet
    # probe: 3 task runs.
    assert (again.managed_starts, again.started, again.task_runs) == (0, 0, 3)


def test_pl5_nt2_refused_start_waits_and_tells_the_owner_once(env):
    """PL-5 / NT-2: no configured DNS provider holds other.test: the certificate waits for a manual
    submission and its owner hears why once, however many scans run."""
    with session_scope(env.url) as s:
        _, _, c2 = add_plan(Repository(s), 1, left=10 * DAY, names=["www.other.test"])
    with rt.use(env.make(Policy(notice_days=()))):
        first, _ = run_scan()
        second, _ = run_scan()
    assert (first.managed_starts, first.waiting_manual, first.started) == (1, 1, 0)
    assert (second.managed_starts, second.waiting_manual) == (0, 0)
    events = [e for e in env.notifier.events if e.kind is EventKind.ACTION_NEEDED]
    assert [(e.certificate_id, e.common_name) for e in events] == [(c2, "www.other.test")]
    assert "no configured DNS provider holds the zone" in events[0].body
    with session_scope(env.url) as s:
        assert Repository(s).certificate_model(c2).state is Status.NOT_ACTIVATED
        assert s.get(ManagedStartRow, c2).outcome == "waiting_manual"


def test_nt1_expiry_notices_once_each_across_scans(env):
    """NT-1: each threshold's notice once per certificate across scans; first seen at 5 days -> the
    7-day notice; expired -> none; the next threshold when it is crossed."""
    with session_scope(env.url) as s:
        repo = Repository(s)
        for cid, left in (("five", 5 * DAY), ("twenty", 20 * DAY), ("forty", 40 * DAY), ("gone", -DAY)):
            repo.add_certificate(certificate(cid, left=left, origin=Origin.UPLOADED, state=Status.UPLOADED), now=NOW)
    with rt.use(env.make()):
        first, _ = run_scan()
        second, _ = run_scan()
        later, _ = run_scan((NOW + 3 * DAY).isoformat())
    assert (first.notices, second.notices, later.notices) == (2, 0, 1)
    sent = [(e.certificate_id, e.subject) for e in env.notifier.events if e.kind is EventKind.EXPIRING]
    assert sorted(sent[:2]) == [("five", "certpilot: five.example.test expires in 5 days"),
                                ("twenty", "certpilot: twenty.example.test expires in 20 days")]
    assert sent[2:] == [("five", "certpilot: five.example.test expires in 2 days")]


def _submitted(env, cid: str, name: str) -> None:
    """A purchased OV certificate submitted to the private CA, under its (5-day) review."""
    with session_scope(env.url) as s:
        repo = Repository(s)
        repo.add_order(Order(id=f"{cid}-order", kind=OrderKind.PURCHASE, certificate_id=None,
                             spec=Spec(brand="DigiCert", level=Level.OV, cert_type="single"), years=1,
                             state=OrderState.PAID, created_at=NOW), now=NOW)
        repo.add_certificate(certificate(cid, state=Status.PENDING_APPLICATION, level=Level.OV,
                                         order_id=f"{cid}-order", names=[name]), now=NOW)
    run = rt.services()
    pipeline.create_key_and_csr(run, cid, CsrMode.SYSTEM)
    pipeline.submit(run, cid)


def test_ca2_scanner_follows_reviews_issued_and_rejected(env):
    """CA-2: the scanner polls reviews; issued -> counted (its deployment is unfinished work the
    scan launches a renewal run for); rejected -> the owner is told once."""
    with rt.use(env.make()):
        _submitted(env, "ok", "ok.example.test")
        _submitted(env, "bad", "bad.example.test")
        with session_scope(env.url) as s:
            assert Repository(s).certificate_model("ok").state is Status.UNDER_REVIEW
        waiting, _ = run_scan()
        env.clock["now"] = NOW + 6 * DAY
        done, _ = run_scan((NOW + 6 * DAY).isoformat())
        after, _ = run_scan((NOW + 6 * DAY).isoformat())
    assert (waiting.reviews, waiting.issued) == (2, 0)
    assert (done.reviews, done.issued) == (2, 1)
    assert after.reviews == 0
    with session_scope(env.url) as s:
        repo = Repository(s)
        assert (repo.certificate_model("ok").state, repo.certificate_model("bad").state) == (
            Status.ISSUED, Status.REJECTED)
    told = [e for e in env.notifier.events if e.kind is EventKind.ACTION_NEEDED]
    assert [e.certificate_id for e in told] == ["bad"]
    assert told[0].subject == "certpilot: the CA rejected bad.example.test"


def test_artifacts_table_progress_and_task_runs(env):
    """The scan writes the inventory table, a summary and a progress artifact at 100 %, and creates
    one task run for the decision, one for the unfinished work, plus one per due item (PL-4, NT-1)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
    )

    with session_scope(env.url) as s:
        repo = Repository(s)
        add_plan(repo, 1, left=20 * DAY)                     # 1 managed start + the 30-day notice of c1
        for n in range(20):                                  # far from expiry: no task runs
            repo.add_certificate(certificate(f"quiet{n}", left=200 * DAY), now=NOW)
    with rt.use(env.make()):
        summary, flow_run_id = run_scan()
    assert (summary.managed_starts, summary.started, summary.notices, summary.task_runs) == (1, 1, 1, 5)
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
        # Task runs reach the server as events recorded asynchronously: poll until they are in.
        deadline = time.monotonic() + 30
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            if len(runs) >= 5 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    by_key = {a.key: a for a in arts}
    assert set(by_key) == {"scan-progress", "scan-inventory", "scan-summary", "certpilot-inbox",  # DEP-3 inbox too
                           "certpilot-inventory", "certpilot-inventory-page-1", "certpilot-deployments"}
    assert float(by_key["scan-progress"].data) == 100.0
    table = by_key["scan-inventory"].data
    table = json.loads(table) if isinstance(table, str) else table
    assert [(r["name"], r["status"], r["days left"], r["next action"]) for r in table] == [
        ("p1-orig.example.test", "expired", -345, "renewed (successor live)"),
        ("p1-c1.example.test", "expiring_soon", 20, "renewal in progress"),
        ("p1-c2.example.test", "not_activated", "", "managed start due (PL-4)"),
    ]
    assert "**Inventory**: 23 certificate(s)" in by_key["scan-summary"].data
    # The whole inventory (after the scan started c2): every certificate counted by status, all 23 listed.
    whole = by_key["certpilot-inventory"].data
    table = whole.split("| status | count |\n|---|---|\n", 1)[1].split("\n\n", 1)[0]
    assert "23 certificate(s)" in whole and "Listed: 23" in whole, whole
    assert dict(line.strip("|").replace(" ", "").split("|") for line in table.splitlines()) == {
        "valid": "20", "expired": "1", "expiring_soon": "1", "pending_application": "1"}, whole  # started by the scan
    page = by_key["certpilot-inventory-page-1"].data
    page = json.loads(page) if isinstance(page, str) else page
    assert len(page) == 23 and page[0]["name"] == "p1-orig.example.test"  # soonest expiry (expired) first
    assert len(runs) == summary.task_runs == 5
