"""Crash recovery around the scanner: `certpilot up` marks the runs a dead incarnation left
Running or Pending Crashed before its first scan (their work then looks dead and is relaunched),
and the zombie automation marks a run whose heartbeats stopped Crashed on a fleet."""

from __future__ import annotations

import pytest

from tests.flows import launch_env

pytestmark = pytest.mark.flows

renewal_deployment = launch_env.renewal_deployment


@pytest.fixture
def runs_in_states(prefect_harness):
    """Flow runs of a small flow in various states, tagged certpilot or not: {label: run id}."""
    from prefect import flow, get_client
    from prefect.states import Completed, Pending, Running, Suspended

    @flow(name="crash-recovery-probe")
    def probe() -> None:
        """Never executed: only its runs' states matter."""

    deployment_id = probe.to_deployment(name="probe").apply()
    made = {}
    with get_client(sync_client=True) as client:
        for label, tags, state in (("running", ["certpilot"], Running()), ("pending", ["certpilot"], Pending()),
                                   ("completed", ["certpilot"], Completed()),
                                   ("suspended", ["certpilot"], Suspended(pause_key="review-x-1")),
                                   ("foreign", ["other"], Running())):
            run = client.create_flow_run_from_deployment(deployment_id, tags=tags, state=Pending())
            if label != "pending":
                client.set_flow_run_state(run.id, state, force=True)
            made[label] = str(run.id)
    return made


def _state(run_id: str) -> str:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state.type.value


def test_runs_a_dead_incarnation_left_running_or_pending_are_marked_crashed(runs_in_states):
    """Only certpilot runs, only Running and Pending ones: a suspended run waits for its answer,
    a finished one stays finished, another product's run is not ours to touch."""
    from certpilot.serving import mark_left_behind_crashed

    marked = mark_left_behind_crashed()
    assert {runs_in_states["running"], runs_in_states["pending"]} <= set(marked)
    assert {label: _state(run_id) for label, run_id in runs_in_states.items()} == {
        "running": "CRASHED", "pending": "CRASHED", "completed": "COMPLETED", "suspended": "PAUSED",
        "foreign": "RUNNING"}
    assert runs_in_states["running"] not in mark_left_behind_crashed()  # once


def test_zombie_automation_installs_without_a_notification_block(prefect_harness):
    """The zombie automation needs no notification block: installed alone when none is configured;
    proactive on the heartbeats of certpilot runs, it marks a silent run Crashed after 90 s."""
    from prefect.automations import Automation

    from certpilot.automations import install

    assert install() == ["certpilot-zombie-runs"]
    assert install() == ["certpilot-zombie-runs"]  # reinstalling replaces it
    automation = Automation.read(name="certpilot-zombie-runs")
    trigger = automation.trigger
    assert (trigger.posture.value, trigger.within.total_seconds(), set(trigger.after)) == (
        "Proactive", 90.0, {"prefect.flow-run.heartbeat"})
    assert {"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Suspended"} <= set(
        trigger.expect)
    assert [(a.type, a.state.value) for a in automation.actions] == [("change-flow-run-state", "CRASHED")]


def test_kill_9_mid_batch_then_one_scan_finishes_every_renewal_exactly_once(tmp_path, renewal_deployment):
    """The issue's crash: 12 due certificates, the scanning process killed with SIGKILL after some
    renewals were issued; at restart the runs it left are marked Crashed and ONE scan finishes
    every renewal in flight: each certificate renewed by one order (no second order or debit),
    issued, deployed and verified, none left pending."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from prefect.settings import PREFECT_API_URL

    from certpilot import runtime as rt
    from certpilot.core.models import Status
    from certpilot.serving import mark_left_behind_crashed
    from certpilot.store.db import reset_engines
    from certpilot.store.repository import Repository
    from flows.scan import scan
    from tests.flows.launch_env import build_fleet

    fleet = build_fleet(tmp_path, 12)
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value(), CERTPILOT_LAUNCH_MODE="in-process",
               PYTHONPATH=str(Path(__file__).resolve().parents[3]))
    child = subprocess.Popen([sys.executable, str(Path(__file__).with_name("crash_child.py")), fleet.db_url],
                             stdin=subprocess.PIPE, env=env, text=True)
    child.stdin.write(fleet.extra["master_key"].hex() + "\n")
    child.stdin.close()

    def issued() -> int:
        with fleet.session() as s:
            repo = Repository(s)
            return sum(1 for cid in fleet.cert_ids for c in repo.children(cid) if c.state is Status.ISSUED)

    deadline = time.monotonic() + 240
    while issued() < 4 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.2)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    done_before = issued()
    assert 4 <= done_before < 12, f"the kill came too late to test anything ({done_before} issued)"
    mark_left_behind_crashed()
    with rt.use(fleet.runtime):
        os.environ["CERTPILOT_LAUNCH_MODE"] = "in-process"
        try:
            summary = scan()
        finally:
            os.environ.pop("CERTPILOT_LAUNCH_MODE", None)
    assert summary.errors == 0 and summary.failed == 0
    with fleet.session() as s:
        repo = Repository(s)
        firsts = {}
        for cid in fleet.cert_ids:
            children = repo.children(cid)
            assert len({c.order_id for c in children}) == 1, f"{cid}: {len({c.order_id for c in children})} orders"
            firsts[cid] = min(children, key=lambda c: c.plan_index).state
    assert set(firsts.values()) == {Status.ISSUED}
    assert fleet.counts() == {"orders": 12, "ledger": 13}  # one quota top-up, one debit per order
    with rt.use(fleet.runtime):  # one scan was enough: nothing is left to launch
        assert scan().launched == 0
    reset_engines()
