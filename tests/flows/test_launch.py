"""The launcher on the single-machine default (in-process): many renewal runs of the `renewal`
deployment executed in this process's threads — no process start per renewal — each a top-level
deployment run named after its certificate; idempotent by key; a dead run relaunched once.

Real parts: the embedded private CA, files targets served over TLS by SNI and probed, a SQLite
store, the Prefect test harness (`tests/flows/launch_env.py`).
"""

from __future__ import annotations

import threading
import time

import pytest

from certpilot.core.runs import LaunchOutcome, relaunch_key
from certpilot.core.scan import RenewalLaunch, renewal_key
from certpilot.store.repository import Repository
from tests.flows import launch_env
from tests.flows.launch_env import ProcessStarts, fleet_fixture, flow_runs_of

pytestmark = pytest.mark.flows

renewal_deployment = launch_env.renewal_deployment
in_process = launch_env.in_process
fleet20 = fleet_fixture(20)
fleet3 = fleet_fixture(3)


def _items(fleet) -> list[RenewalLaunch]:
    with fleet.session() as s:
        repo = Repository(s)
        certs = [repo.certificate_model(cid) for cid in fleet.cert_ids]
    return [RenewalLaunch(c.id, 1, renewal_key(c.id, c.not_after), c.common_name) for c in certs]


def _renewed(fleet) -> dict[str, str]:
    """Original id -> state of the first certificate of its one renewal order (the plan's later
    certificates wait, not activated, PL-3): every certificate renewed once."""
    with fleet.session() as s:
        repo = Repository(s)
        out = {}
        for cid in fleet.cert_ids:
            children = repo.children(cid)
            assert len({c.order_id for c in children}) == 1, f"{cid} has {len(children)} renewal orders"
            out[cid] = min(children, key=lambda c: c.plan_index).state.value
    return out


def test_scan_launches_20_due_renewals_in_process_without_a_process_start(fleet20, in_process, monkeypatch):
    """20 due certificates: one scan launches 20 runs of deployment renewal/renewal, executed in
    this process (0 process starts), 20 distinct names (the common names), all Completed, one per
    certificate; every certificate issued, deployed and served; the scan returns when they are done."""
    from flows.scan import scan

    starts = ProcessStarts(monkeypatch)
    began = time.perf_counter()
    summary = scan()
    wall = time.perf_counter() - began
    print(f"\nscan → 20 renewals issued, deployed, verified: {wall:.2f} s wall")
    assert starts.count == 0
    assert (summary.renewals, summary.launched, summary.completed, summary.failed, summary.errors) == (20, 20, 20, 0, 0)
    runs = flow_runs_of(in_process, names=fleet20.names)
    assert len(runs) == 20
    assert sorted(r.name for r in runs) == sorted(fleet20.names)
    assert {r.state.type.value for r in runs} == {"COMPLETED"}
    assert sorted(r.parameters["certificate_id"] for r in runs) == sorted(fleet20.cert_ids)
    assert all("certpilot" in r.tags and r.deployment_id == in_process for r in runs)
    assert set(_renewed(fleet20).values()) == {"issued"}
    assert fleet20.counts()["orders"] == 20


def test_launching_the_same_items_again_or_twice_at_once_starts_nothing_new(fleet3, in_process):
    """Idempotency: two launchers at once with the same keys execute each run once; launching
    again afterwards finds the completed runs (DONE) and starts nothing."""
    from flows.launch import launch_renewals

    items = _items(fleet3)
    results: list = []
    barrier = threading.Barrier(2)

    def launcher():
        barrier.wait()
        results.append(launch_renewals(items))

    threads = [threading.Thread(target=launcher) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(180)
    outcomes = sorted(r.outcome.value for batch in results for r in batch)
    # Each item: one launcher executed it; the other found it running (LIVE) or done (DONE).
    assert outcomes.count("completed") == 3 and len(outcomes) == 6
    assert set(outcomes) <= {"completed", "live", "done"}
    again = launch_renewals(items)
    assert [r.outcome for r in again] == [LaunchOutcome.DONE] * 3
    runs = flow_runs_of(in_process, names=fleet3.names)
    assert len(runs) == 3 and {r.state.type.value for r in runs} == {"COMPLETED"}
    assert set(_renewed(fleet3).values()) == {"issued"}
    assert fleet3.counts()["orders"] == 3


def test_a_key_whose_run_crashed_is_launched_again_after_it(fleet3, in_process):
    """A key whose run crashed is spent for good on the server: the launcher starts one new run
    under `<key>:after:<dead id>`, which renews the certificate; launching again starts nothing."""
    from prefect import get_client
    from prefect.states import Crashed, Pending

    from flows.launch import launch_renewals

    item = _items(fleet3)[0]
    with get_client(sync_client=True) as client:
        dead = client.create_flow_run_from_deployment(in_process, parameters={"certificate_id": item.certificate_id},
                                                      name=item.name, idempotency_key=item.key, state=Pending(),
                                                      tags=["certpilot"])
        client.set_flow_run_state(dead.id, Crashed(message="test: the process died"), force=True)
    first = launch_renewals([item])
    assert [(r.outcome, r.key) for r in first] == [(LaunchOutcome.COMPLETED, relaunch_key(item.key, str(dead.id)))]
    assert [(r.outcome, r.key) for r in launch_renewals([item])] == [(LaunchOutcome.DONE, first[0].key)]
    runs = flow_runs_of(in_process, names=[item.name])
    assert sorted(r.state.type.value for r in runs) == ["COMPLETED", "CRASHED"]
    assert fleet3.counts()["orders"] == 1


def test_workers_mode_hands_chunks_to_renewal_batch_runs_each_renewing_its_chunk_once(fleet3, in_process, monkeypatch):
    """Workers mode: the scan hands its 3 renewals to renewal-batch runs in chunks of 2 (Scheduled,
    for a worker); a batch executed the way a worker does (its flow run, `run_flow`) renews its
    chunk in-process; the same batch executed again (a retry) renews nothing twice."""
    from prefect import get_client
    from prefect.flow_engine import run_flow

    from flows.batch import renewal_batch
    from flows.scan import scan

    batch_deployment = renewal_batch.to_deployment(name="renewal-batch", tags=["certpilot"]).apply()
    monkeypatch.setenv("CERTPILOT_LAUNCH_MODE", "workers")
    monkeypatch.setenv("CERTPILOT_LAUNCH_BATCH_SIZE", "2")
    from certpilot.settings import get_settings

    get_settings.cache_clear()
    try:
        summary = scan()
    finally:
        get_settings.cache_clear()
    assert (summary.launched, summary.elsewhere, summary.completed) == (3, 3, 0)
    with get_client(sync_client=True) as client:
        batches = [r for r in client.read_flow_runs(limit=200) if r.deployment_id == batch_deployment
                   and {i["certificate_id"] for i in r.parameters["items"]} <= set(fleet3.cert_ids)]
    assert sorted(len(b.parameters["items"]) for b in batches) == [1, 2]
    assert {b.state.type.value for b in batches} == {"SCHEDULED"}
    starts = ProcessStarts(monkeypatch)
    counts = [run_flow(renewal_batch, flow_run=b, return_type="result") for b in batches]
    assert sorted(c.get("completed", 0) for c in counts) == [1, 2] and starts.count == 0
    with get_client(sync_client=True) as client:
        retry = client.read_flow_run(batches[0].id)
    assert set(run_flow(renewal_batch, flow_run=retry, return_type="result")) == {"done"}
    assert set(_renewed(fleet3).values()) == {"issued"}
    assert fleet3.counts()["orders"] == 3
    assert len(flow_runs_of(in_process, names=fleet3.names)) == 3
