"""Serving certpilot's deployments from one process (`certpilot up`), after recovering from a crash.

`serve_all` first marks Crashed every certpilot run a previous incarnation left Running or
Pending on this (its own, local) Prefect server — a `kill -9` of `certpilot up` kills its server
and every run in its processes, and nothing else would ever end those runs — so that the first
scan sees their work as unfinished and relaunches it (`flows.scan`: a claimed run that crashed).
Then it serves every deployment, tagged `certpilot` (the failed-run and zombie automations match
the tag), and starts a first scan.

Flow runs started here send heartbeats (`PREFECT_FLOWS_HEARTBEAT_FREQUENCY`, default
`HEARTBEAT_SECONDS`): a run whose process dies while `up` lives (a scan process killed by the OOM
killer, say) stops beating, and the zombie automation marks it Crashed.

Each flow run the runner starts is still a process of its own (a crash or a kill of one run
takes nothing else down; the runner cancels and reaps it as ever), but forked from a warm
server process that imported Prefect and certpilot once (`warm_process_starts`), instead of a
fresh interpreter importing them again for every run.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

TAG = "certpilot"
HEARTBEAT_SECONDS = 30
"""Heartbeat period of the flow runs `certpilot up` starts (the zombie automation expects one
within 90 s)."""
POLL_SECONDS = 1.0
"""How often the runner asks for scheduled runs (Prefect's default: 10 s). A scan asked in the UI,
or a run resumed after its form was answered, starts within about a second instead of five on
average (bench/renew_batch.py: scan Scheduled → Pending in 0.7 s). The idle Prefect server's CPU
was not measurably higher (0.06-0.12 CPU-s per second with either period). A poll frequency set
in the Prefect profile or environment (PREFECT_RUNNER_POLL_FREQUENCY, not 10) is kept."""
LEFT_BEHIND = ("RUNNING", "PENDING", "CANCELLING")
"""State types of a run nothing will ever finish once the process that ran it is gone."""


def _say(message: str) -> None:
    print(f"certpilot up: {message}", flush=True)


def mark_left_behind_crashed(*, tag: str = TAG, states: Iterable[str] = LEFT_BEHIND) -> list[str]:
    """Mark Crashed every flow run tagged `tag` in one of `states`: at start, before anything of
    this incarnation runs, those were left by a previous one that died.

    Returns:
        The ids of the runs marked.
    """
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    flt = FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]),
                        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(s) for s in states])))
    marked: list[str] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_flow_runs(flow_run_filter=flt, limit=200)
            if not page:
                return marked
            for run in page:
                client.set_flow_run_state(run.id, Crashed(
                    message="left running by a certpilot process that stopped (killed or crashed); the next scan "
                            "relaunches its unfinished work"), force=True)
                marked.append(str(run.id))


def served() -> list[tuple[Any, dict[str, Any]]]:
    """Every certpilot deployment served from one process, tagged `certpilot`: (flow, its
    deployment's options)."""
    from flows.admin import cancel, import_certificate, policy, purchase
    from flows.alibaba import sync_alibaba
    from flows.batch import renewal_batch
    from flows.discovery import discover
    from flows.emergency import emergency
    from flows.fleet import import_folder
    from flows.renewal import renewal
    from flows.revoke import issuer, revoke
    from flows.scan import scan
    from flows.targets import deploy_target, target_add, target_remove, target_test

    tags = [TAG]
    return [
        (scan, dict(name="scan", cron="0 * * * *", tags=tags,
                    description="Hourly scan: managed starts (PL-4), CA reviews (CA-2), renewals launched "
                                "in-process, expiry notices (NT-1).")),
        (renewal, dict(name="renewal", tags=tags,
                       description="One run per certificate renewal: payment, CSR, validation, CA review, deploy, "
                                   "verify.")),
        (renewal_batch, dict(name="renewal-batch", tags=tags,
                             description="A chunk of renewals executed in one process (workers mode).")),
        (emergency, dict(name="emergency", tags=tags, description="EM-1..3: restore a site with an expired certificate.")),
        (cancel, dict(name="cancel", tags=tags, description="PL-7: cancel a not-activated certificate.")),
        (policy, dict(name="policy", tags=tags, description="A certificate's renewal policy (PL-1/PAY-2, DV-1..DV-4).")),
        (import_certificate, dict(name="import", tags=tags, description="UP-3: import a certificate.")),
        (purchase, dict(name="purchase", tags=tags, description="Buy a new certificate.")),
        (target_add, dict(name="target-add", tags=tags, description="Add a deployment target, validated first.")),
        (target_test, dict(name="target-test", tags=tags, description="Check a target without changing anything.")),
        (target_remove, dict(name="target-remove", tags=tags, description="Stop deploying to a target.")),
        (deploy_target, dict(name="deploy-target", tags=tags, description="One deployment task (a target's host).")),
        (discover, dict(name="discover", tags=tags, description="Discover served certificates and add them "
                                                               "(no key held) for the operator to adopt.")),
        (revoke, dict(name="revoke", tags=tags, description="Revoke a certificate at its CA (with replace: renew and "
                                                             "deploy it first).")),
        (issuer, dict(name="issuer", tags=tags, description="Name the issuer (and fallbacks) of a certificate.")),
        (import_folder, dict(name="import-folder", tags=tags, description="Import every bundle of a folder (UP-3).")),
        (sync_alibaba, dict(name="sync-alibaba", tags=tags, description="Inventory an Alibaba Cloud account's "
                            "certificates (CAS) and package quota; schedule it once its block exists.")),
    ]


def serve_all(first_scan: bool = True) -> None:
    """Recover, then serve every deployment from this process (blocking); optionally start a
    first scan (module docstring).

    The flows are added to the runner as flow objects (`Runner.add_flow`, what `flow.serve`
    does), not as deployments to load from their entrypoint: the runner then starts a run by
    handing the flow to `run_flow_in_subprocess` (forked from the warm server,
    `warm_process_starts`) instead of `python -m prefect.engine`, a fresh interpreter that
    imports everything again.
    """
    from prefect.exceptions import TerminationSignal
    from prefect.runner import Runner

    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_SECONDS))
    warm_process_starts()
    if marked := mark_left_behind_crashed():
        _say(f"{len(marked)} run(s) left running by a previous certpilot up marked Crashed; the first scan "
             "relaunches their work")
    runner = Runner(pause_on_shutdown=True, limit=8, query_seconds=poll_seconds())
    flows = served()
    for flow, options in flows:
        runner.add_flow(flow, **options)
    _say("serving " + ", ".join(f"{flow.name}/{options['name']}" for flow, options in flows))
    if first_scan:
        threading.Thread(target=_first_scan, name="first-scan", daemon=True).start()
    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal):
        _say("stopping the runner")


WARM_MODULES = (
    "prefect.flow_engine", "prefect.task_engine", "prefect.runtime.flow_run", "prefect.artifacts",
    "flows.scan", "flows.renewal", "flows.batch", "flows.emergency", "flows.admin", "flows.targets", "flows.discovery",
    "flows.revoke", "flows.fleet", "flows.alibaba",
    "certpilot.runtime", "blocks", "certpilot.store.db", "certpilot.store.ports", "certpilot.crypto.vault",
    "certpilot.adapters.issuers.private_ca", "certpilot.adapters.deploy.factory", "certpilot.adapters.probe.verifier",
)
"""What the warm server imports once: Prefect's engines and everything a certpilot run loads
(importing them costs a fresh interpreter ~2.5 s of CPU; a fork of the warm server milliseconds).
Imports only: nothing here opens a connection or starts a thread at import time, so a fork of
the server is as clean as a new interpreter."""


class _WarmStarts:
    """`multiprocessing` as `prefect.flow_engine` sees it, except that the context its
    `run_flow_in_subprocess` asks for ("spawn": a fresh interpreter) is the warm forkserver's."""

    def __init__(self, context: Any) -> None:
        self._context = context

    def get_context(self, method: str | None = None) -> Any:
        return self._context

    def __getattr__(self, name: str) -> Any:
        return getattr(multiprocessing, name)


def warm_process_starts(modules: Iterable[str] = WARM_MODULES) -> bool:
    """Make the runner start each flow run's process by forking a warm server (multiprocessing's
    forkserver, `modules` imported once) instead of spawning a fresh interpreter.

    The runner executes a served flow in a process of its own through
    `prefect.flow_engine.run_flow_in_subprocess`, which spawns an interpreter that imports
    Prefect and certpilot again: measured 3.4 s from the scan's Pending to Running
    (bench/renew_batch.py). The forked process is still a separate process per run (what a
    crash or a cancellation kills), with the environment and settings Prefect hands it; only
    its start is cheap. The server is started now, in the background, so the first run does not
    wait for its imports. Linux and macOS only (no forkserver on Windows: spawning as before).

    Returns:
        True when the runner's starts now fork the warm server.
    """
    import prefect.flow_engine as engine

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    if getattr(engine, "multiprocessing", None) is not multiprocessing or not hasattr(engine, "run_flow_in_subprocess"):
        # A Prefect whose engine starts run processes otherwise: keep its own way (slower, correct);
        # tests/unit/test_prefect_engine_hooks.py fails so that an upgrade is looked at.
        return False
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(modules))
    engine.multiprocessing = _WarmStarts(context)  # type: ignore[assignment] - a stand-in for the module
    from multiprocessing import forkserver

    threading.Thread(target=forkserver.ensure_running, name="warm-process-starts", daemon=True).start()
    return True


def poll_seconds() -> float:
    """The runner's poll period: `POLL_SECONDS`, unless the Prefect settings say otherwise
    (a value other than Prefect's default of 10 s was set on purpose)."""
    from prefect.settings import get_current_settings

    configured = get_current_settings().runner.poll_frequency
    return POLL_SECONDS if configured == 10 else float(configured)


def _first_scan() -> None:
    from prefect.deployments import run_deployment

    key = f"first-scan-{os.getpid()}-{time.time():.0f}"  # one first scan per start of `up`
    for _ in range(120):
        try:
            run = run_deployment("scan/scan", timeout=0, idempotency_key=key)
            _say(f"first scan started: flow run {run.name} ({run.id})")
            return
        except Exception:  # noqa: BLE001 - deployments not registered yet
            time.sleep(0.5)
