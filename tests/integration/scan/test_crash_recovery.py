"""Crash recovery around the scanner: `certpilot up` marks the runs a dead incarnation left
Running or Pending Crashed before its first scan (their work then looks dead and is relaunched),
and the zombie automation marks a run whose heartbeats stopped Crashed on a fleet."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.flows


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
