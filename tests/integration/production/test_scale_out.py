"""Scale-out on the distributed engine (issue 9): a Prefect server on PostgreSQL (asyncpg, Prefect's
own driver), certpilot's store on PostgreSQL, two `prefect worker start --pool certpilot`
processes, `CERTPILOT_LAUNCH_MODE=workers` (the scan hands chunks of renewals to `renewal-batch`
runs, each executing its chunk in-process), N due certificates (default 200,
`CERTPILOT_SCALE_N` to change) with live sites served over TLS.

Mid-batch, one worker is killed with SIGKILL together with the flow-run processes it started
(its process group: a machine lost). Prefect's heartbeats stop; certpilot's zombie automation
marks those runs Crashed; the next scan (the hourly schedule's job, asked for here) relaunches
the work their claims held. Proven on outcomes: every site serves the renewed certificate the
store recorded, and the store holds exactly one renewal order, one quota debit, one CA issuance
and one succeeded deployment task per certificate.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.production.conftest import REPO, Operator, operator_env
from tests.integration.production.fleet import counts, load_fleet, renewed, served
from tests.servers.base import free_port
from tests.servers.prefect import asyncpg_url, start_prefect_server

pytestmark = [pytest.mark.servers, pytest.mark.timeout(1500)]

N = int(os.environ.get("CERTPILOT_SCALE_N", "200"))
ZOMBIE_WINDOW = 45
"""Seconds without a heartbeat before the zombie automation marks a run Crashed, as this test's
operator tunes it (the shipped default is 90: three missed 30 s heartbeats; Prefect's minimum
heartbeat interval is 30 s, so 45 is one missed heartbeat plus margin)."""


@pytest.fixture(scope="module")
def fleet(postgres_server, tmp_path_factory):
    """The README's fleet topology on one machine: Prefect server + PostgreSQL, `certpilot setup`,
    `prefect deploy --all`, two workers; N due certificates with their sites."""
    base = tmp_path_factory.mktemp("scale-out")
    api = start_prefect_server(base / "prefect",
                               database_url=asyncpg_url(postgres_server.create_database("prefect_scale")))
    store = postgres_server.create_database("certpilot_scale")
    env = operator_env(api, base / "home")
    # Chunks as for 200 (8 of 25) whatever N is, so that both workers have renewals to lose.
    env.update({"CERTPILOT_DATABASE_URL": store, "CERTPILOT_LAUNCH_MODE": "workers",
                "CERTPILOT_LAUNCH_BATCH_SIZE": str(max(1, N // 8))})
    op = Operator(api, Path(sys.executable).parent, base / "home", env)
    setup = op.certpilot("setup", "--private-ca", "--json", cwd=REPO)
    assert setup.code == 0, setup.out + setup.err
    deploy = op.prefect("deploy", "--all", cwd=REPO)
    assert deploy.code == 0, deploy.out + deploy.err
    _tune_zombie_window(op, ZOMBIE_WINDOW)
    yield op, store, base
    op.stop_workers()
    api.stop()


def _tune_zombie_window(op: Operator, seconds: int) -> None:
    """The operator shortens the zombie automation's window (an API update, as in the UI)."""
    import httpx

    [auto] = [a for a in op.api_post("/automations/filter", {}) if a["name"] == "certpilot-zombie-runs"]
    auto["trigger"]["within"] = seconds
    body = {k: v for k, v in auto.items() if k not in ("id", "created", "updated")}
    r = httpx.put(f"{op.api.api_url}/automations/{auto['id']}", json=body, timeout=10)
    assert r.status_code in (200, 204), r.text


@pytest.fixture
def services_of(monkeypatch):
    """Services on the fleet's store and vault, in this process (the data is written directly)."""
    from certpilot import runtime
    from certpilot.settings import get_settings
    from certpilot.store.db import reset_engines

    def make(op: Operator, store: str):
        for name in ("CERTPILOT_HOME", "CERTPILOT_MASTER_KEY"):
            monkeypatch.setenv(name, op.env[name])
        monkeypatch.setenv("CERTPILOT_DATABASE_URL", store)
        get_settings.cache_clear()
        reset_engines()
        return runtime.local_services(database_url=store)

    yield make
    get_settings.cache_clear()
    reset_engines()


def _spawn_worker(op: Operator, directory: Path, log: Path):
    import subprocess

    directory.mkdir(exist_ok=True)
    proc = subprocess.Popen([str(op.bin / "prefect"), "worker", "start", "--pool", "certpilot"], cwd=directory,
                            env={**op.env, "PREFECT_WORKER_QUERY_SECONDS": "1"}, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    op.workers.append(proc)
    return proc


def _scan(op: Operator) -> str:
    scan = op.api_get("/deployments/name/scan/scan")
    return op.api_post(f"/deployments/{scan['id']}/create_flow_run", {"tags": ["certpilot"]})["id"]


def _live_runs(op: Operator, since: str) -> list[dict]:
    """Certpilot runs due since `since` that have not ended and that something will move on (the
    hourly schedule's future runs are not due yet, so they are not counted).

    A renewal run still Pending is not counted: a `renewal-batch` process creates its chunk's runs
    Pending and takes them one by one, so the runs a killed batch had not taken yet stay Pending
    until the next scan hands them (same idempotency keys) to a new batch; with its batch alive
    the batch run itself is live.
    """
    now = datetime.now(UTC).isoformat()
    renewal = op.api_get("/deployments/name/renewal/renewal")["id"]
    runs = op.flow_runs(tags={"all_": ["certpilot"]}, expected_start_time={"after_": since, "before_": now},
                        state={"type": {"any_": ["SCHEDULED", "PENDING", "RUNNING", "CANCELLING"]}})
    return [r for r in runs if not (r["state_type"] == "PENDING" and r["deployment_id"] == renewal)]


def _children(pid: int) -> list[int]:
    """The child processes of `pid` (Linux /proc)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(x) for x in text]
    return out


def _busy_worker(workers, timeout: float = 120.0):
    """The first worker that has started a flow-run process (it is running a renewal batch)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in workers:
            if _children(proc.pid):
                return proc
        time.sleep(0.2)
    raise AssertionError("no worker started a flow run")


def test_scale_out_two_workers_postgres_kill9_one_worker_every_site_renewed_exactly_once(fleet, services_of):
    """N due certificates, two workers on PostgreSQL; one worker and its runs killed with SIGKILL
    mid-batch → its runs marked Crashed by the zombie automation, the next scan completes their
    work: every site serves its renewed certificate; exactly N orders, N debits, N CA issuances,
    N succeeded deployment tasks (0 duplicates)."""
    op, store, base = fleet
    svc = services_of(op, store)
    from certpilot.serve import DemoTlsServer

    port = free_port()
    DemoTlsServer(base / "deploy", port=port).start()
    ids = load_fleet(svc, N, base / "deploy", port)
    before = served(ids, port)
    assert all(before.values()), "every site serves its current certificate before the scan"
    workers = [_spawn_worker(op, base / f"w{i}", base / f"worker{i}.log") for i in range(2)]

    since = datetime.now(UTC).isoformat()
    started = time.monotonic()
    _scan(op)
    while len(renewed(svc, ids)) < max(1, N // 5):  # mid-batch: some renewals issued, most not
        assert time.monotonic() - started < 600, f"no progress: {op.log_tail()}"
        time.sleep(0.5)
    doomed = _busy_worker(workers)
    os.killpg(doomed.pid, signal.SIGKILL)  # the worker and every flow-run process it started
    killed_at = time.monotonic()
    issued_at_kill = len(renewed(svc, ids))

    print(f"scale-out: worker {workers.index(doomed)} killed {killed_at - started:.1f} s after the scan, {issued_at_kill} issued")
    scans, shown = 1, 0.0
    deadline = time.monotonic() + 900
    while True:
        done = renewed(svc, ids)
        if time.monotonic() - shown > 10:
            shown = time.monotonic()
            live = _live_runs(op, since)
            print(f"  +{shown - started:.0f} s: {len(done)}/{N} issued, {len(live)} live run(s), {scans} scan(s): "
                  f"{sorted((r['name'], r['state_name']) for r in live)[:8]}")
        now_served = served(ids, port) if len(done) == N else {}
        if len(done) == N and all(now_served.get(n) == fp for n, fp in done.items()):
            break
        assert time.monotonic() < deadline, (
            f"{len(done)}/{N} renewed after {scans} scans; live runs: "
            f"{sorted((r['name'], r['state_type']) for r in _live_runs(op, since))[:20]}\n{op.log_tail()}")
        if not _live_runs(op, since):  # everything live ended or was marked Crashed: the next scan
            _scan(op)
            scans += 1
        time.sleep(2.0)
    took = time.monotonic() - started

    crashed = op.flow_runs(tags={"all_": ["certpilot"]}, expected_start_time={"after_": since},
                           state={"type": {"any_": ["CRASHED"]}})
    assert crashed, "the kill hit no run: nothing was mid-renewal"
    evidence = counts(svc)
    attempts = evidence.pop("deploy_attempts")
    assert evidence == {"orders": N, "debits": N, "issued_by_ca": N, "deployment_tasks": N, "deployed": N}
    assert N <= attempts <= N + len(crashed)  # a deployment re-entered only where a killed run left it
    print(f"scale-out: {N} renewed on 2 workers (PostgreSQL) in {took:.1f} s, {scans} scans; worker killed "
          f"after {issued_at_kill} issued, {len(crashed)} run(s) marked Crashed, recovered "
          f"{time.monotonic() - killed_at:.1f} s after the kill")
