"""The issue's single-machine crash (issue 9, "Stuck after a crash"): 12 due certificates,
`certpilot up` killed with SIGKILL together with its Prefect server and the flow-run processes
its runner started (its process group) after some renewals were issued, then started again:
every renewal in flight finishes without a human, within the first scan of the new `up` (it
marks the runs the dead incarnation left Running or Pending Crashed, so their claimed work looks
dead and is relaunched). Proven on outcomes: every site serves the store's renewed certificate;
exactly 12 renewal orders, 12 quota debits, 12 CA issuances and 12 succeeded deployments.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from certpilot.prefect_server import STATE_FILE
from tests.integration.production.fleet import counts, load_fleet, renewed, served
from tests.integration.serve.conftest import ROOT, process_gone
from tests.servers.base import free_port

pytestmark = [pytest.mark.servers, pytest.mark.timeout(900)]

N = 12


def _start_up(home: Path, port: int, log: Path) -> subprocess.Popen:
    """`certpilot up --no-demo` on its own port and home, in a process group of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CERTPILOT_"))}
    env.update(CERTPILOT_HOME=str(home), PREFECT_HOME=str(home / "prefect"), CERTPILOT_PREFECT_PORT=str(port),
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return subprocess.Popen([str(Path(sys.executable).parent / "certpilot"), "up", "--no-demo"], cwd=ROOT, env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _task_states(svc) -> dict[str, int]:
    from collections import Counter

    from sqlalchemy import select

    from certpilot.store.tables_deploy import DeploymentTaskRow

    with svc.session(readonly=True) as s:
        return dict(Counter(s.execute(select(DeploymentTaskRow.state)).scalars()))


@pytest.fixture
def home_services(tmp_path, monkeypatch):
    """The home `certpilot up` will use, migrated, and Services on its store and vault here."""
    from certpilot import runtime
    from certpilot.operations.admin import upgrade_schema
    from certpilot.settings import get_settings
    from certpilot.store.db import reset_engines

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    for name in ("CERTPILOT_DATABASE_URL", "CERTPILOT_MASTER_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CERTPILOT_HOME", str(home))
    get_settings.cache_clear()
    reset_engines()
    svc = runtime.local_services()
    upgrade_schema(svc)
    yield home, svc
    get_settings.cache_clear()
    reset_engines()


def test_kill9_of_up_and_its_server_mid_batch_then_restart_finishes_every_renewal_once(home_services, tmp_path):
    """12 due; `up` + server + runs killed with SIGKILL after a third issued and before all; the
    server is gone with it; `up` again → every site renewed, each exactly once."""
    from certpilot.serve import DemoTlsServer

    home, svc = home_services
    site_port = free_port()
    DemoTlsServer(tmp_path / "deploy", port=site_port).start()
    ids = load_fleet(svc, N, tmp_path / "deploy", site_port, prefix="up")
    port = free_port()
    log = tmp_path / "up.log"
    first = _start_up(home, port, log)
    started = time.monotonic()
    while len(renewed(svc, ids)) < N // 3:  # a third issued: the rest in flight or not started
        assert first.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() - started < 300, f"no renewal issued: {log.read_text(errors='replace')[-3000:]}"
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)  # up, its Prefect server, the scan and renewal processes
    assert len(renewed(svc, ids)) < N, "every renewal finished before the kill: nothing was in flight"
    first.wait(10)
    issued_at_kill = len(renewed(svc, ids))
    deadline = time.monotonic() + 10
    while not _port_free(port):
        assert time.monotonic() < deadline, f"the Prefect server of the killed up still answers on {port}"
        time.sleep(0.1)
    state = json.loads((home / STATE_FILE).read_text())  # the server the killed `up` recorded
    assert process_gone(int(state["server_pid"]))

    second = _start_up(home, port, log)
    try:
        restarted = time.monotonic()
        while True:  # every site serves its renewal ...
            done = renewed(svc, ids)
            if len(done) == N and served(ids, site_port) == done:
                break
            assert second.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() - restarted < 400, (
                f"{len(done)}/{N} renewed after the restart: {log.read_text(errors='replace')[-4000:]}")
            time.sleep(0.5)
        settled = time.monotonic()
        while counts(svc)["deployed"] < N:  # ... and every deployment task finished (verified, finalized)
            assert time.monotonic() - settled < 90, (
                f"deployment tasks {_task_states(svc)} 90 s after every site served its renewal: "
                f"{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        took = time.monotonic() - restarted
        evidence = counts(svc)
        attempts = evidence.pop("deploy_attempts")
        assert evidence == {"orders": N, "debits": N, "issued_by_ca": N, "deployment_tasks": N, "deployed": N}
        assert attempts >= N
        text = log.read_text(errors="replace")
        assert "marked Crashed" in text, text[-3000:]
        print(f"up crash: killed after {issued_at_kill}/{N} issued; after the restart all {N} served in {took:.1f} s")
    finally:
        second.send_signal(signal.SIGINT)
        try:
            second.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(second.pid, signal.SIGKILL)
