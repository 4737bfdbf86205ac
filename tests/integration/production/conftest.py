"""The README's production path, as an operator runs it: real processes, one real Prefect server.

`production_api` is one `prefect server start` (SQLite) for the production tests of the session.
`Operator` runs commands the way a shell would (`certpilot …`, `prefect …` as subprocesses in a
directory of its choosing, with PREFECT_API_URL and a CERTPILOT_HOME of its own) and starts
`prefect worker start --pool certpilot` processes. It reads the API over plain HTTP, so the test
process's own Prefect settings (the session's test harness) are never touched.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from tests.servers.base import spawn, stop
from tests.servers.prefect import PrefectApi, start_prefect_server

REPO = Path(__file__).resolve().parents[3]
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass
class Result:
    """One command: exit code, stdout, stderr; `json` parses stdout."""

    code: int
    out: str
    err: str

    @property
    def json(self):
        return json.loads(self.out)


@dataclass
class Operator:
    """A shell on one host: where the commands live (`bin`), its environment and home."""

    api: PrefectApi
    bin: Path
    home: Path
    env: dict[str, str]
    workers: list[subprocess.Popen] = field(default_factory=list)

    def run(self, program: str, *args: str, cwd: Path, timeout: float = 180, env: dict | None = None) -> Result:
        """Run `program args…` (a command of `bin`) in `cwd`, stdin closed (no prompt answers),
        with `env` added to the shell's environment."""
        proc = subprocess.run([str(self.bin / program), *map(str, args)], cwd=cwd, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def certpilot(self, *args: str, cwd: Path, env: dict | None = None) -> Result:
        return self.run("certpilot", *args, cwd=cwd, env=env)

    def prefect(self, *args: str, cwd: Path) -> Result:
        return self.run("prefect", *args, cwd=cwd)

    def start_worker(self, cwd: Path, log: Path) -> subprocess.Popen:
        """`prefect worker start --pool certpilot` in `cwd` (polling every second)."""
        proc = spawn([str(self.bin / "prefect"), "worker", "start", "--pool", "certpilot"], log=log,
                     env={**self.env, "PREFECT_WORKER_QUERY_SECONDS": "1"}, cwd=cwd)
        self.workers.append(proc)
        return proc

    def stop_workers(self) -> None:
        for proc in self.workers:
            stop(proc, timeout=15)
        self.workers.clear()

    # ------------------------------------------------------------ the API, over HTTP

    # 30 s: the test observes a server that N renewals keep busy on 2 cores; a slow answer to the
    # observer is not what these tests judge.
    def api_get(self, path: str) -> dict:
        r = httpx.get(f"{self.api.api_url}{path}", timeout=30)
        r.raise_for_status()
        return r.json()

    def api_post(self, path: str, body: dict) -> list | dict:
        r = httpx.post(f"{self.api.api_url}{path}", json=body, timeout=30)
        r.raise_for_status()
        return r.json()

    def flow_runs(self, **flow_run_filter) -> list[dict]:
        """Flow runs matching a `flow_runs` filter (the API's JSON)."""
        return self.api_post("/flow_runs/filter", {"flow_runs": flow_run_filter, "limit": 200})

    def wait_for_run(self, flow_run_id: str, timeout: float = 120) -> dict:
        """Wait until the flow run is in a terminal state; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.api_get(f"/flow_runs/{flow_run_id}")
            if run["state_type"] in TERMINAL:
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"flow run {flow_run_id} still {run['state_type']} after {timeout} s; "
                                     f"worker logs: {self.log_tail()}")
            time.sleep(0.5)

    def wait_until_idle(self, since: str, timeout: float = 180) -> list[dict]:
        """Wait until every certpilot flow run due between `since` (ISO 8601) and now has ended
        (a suspended one counts as ended); returns those runs. Runs the hourly schedule made for
        later are not waited for."""
        deadline = time.monotonic() + timeout
        while True:
            now = datetime.now(UTC).isoformat()
            runs = self.flow_runs(tags={"all_": ["certpilot"]}, expected_start_time={"after_": since, "before_": now})
            if runs and all(r["state_type"] in TERMINAL | {"PAUSED"} for r in runs):
                return runs
            if time.monotonic() > deadline:
                states = sorted((r["name"], r["state_type"]) for r in runs)
                raise AssertionError(f"runs not finished after {timeout} s: {states}; {self.log_tail()}")
            time.sleep(0.5)

    def run_logs(self, flow_run_id: str) -> str:
        """Every log line of a flow run (and its task runs), joined."""
        logs = self.api_post("/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200})
        return "\n".join(entry["message"] for entry in logs)

    def log_tail(self) -> str:
        logs = sorted(self.home.parent.glob("*.log"))
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)


@pytest.fixture(scope="session")
def production_api(tmp_path_factory) -> PrefectApi:
    """One real Prefect server (SQLite, no UI) for the production tests of the session."""
    api = start_prefect_server(tmp_path_factory.mktemp("production-prefect"))
    yield api
    api.stop()


def operator_env(api: PrefectApi, home: Path) -> dict[str, str]:
    """A shell's environment: the server's client settings, its own certpilot home and master key."""
    env = {k: v for k, v in api.env.items() if not k.startswith("CERTPILOT_")}
    env.update({"CERTPILOT_HOME": str(home),
                "CERTPILOT_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
                "PREFECT_LOGGING_LEVEL": "INFO"})
    return env


def due_certificate(directory: Path, name: str, *, days_left: int = 20) -> tuple[Path, Path, Path]:
    """An official-looking certificate of `name` expiring in `days_left` days of real time (the
    worker decides with the wall clock): (certificate, key, chain) PEM files in `directory`."""
    from certpilot.demo import issue_leaf, make_ca

    now = datetime.now(UTC)
    ca_key, ca_cert = make_ca("production test CA", now - timedelta(days=400), 3650)
    key, cert = issue_leaf(ca_key, ca_cert, [name], now - timedelta(days=365 - days_left),
                           now + timedelta(days=days_left))
    paths = (directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}-chain.pem")
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[1].chmod(0o600)
    paths[2].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return paths


@pytest.fixture
def store_of(monkeypatch):
    """`store_of(op) -> Services` on that operator's store and vault, in this process: the data a
    test starts from is written directly (a `certpilot` process per row costs seconds; the CLI's
    import and quota commands have tests of their own)."""
    from certpilot import runtime
    from certpilot.settings import get_settings
    from certpilot.store.db import reset_engines

    def make(op: Operator):
        for name in ("CERTPILOT_HOME", "CERTPILOT_MASTER_KEY"):
            monkeypatch.setenv(name, op.env[name])
        monkeypatch.delenv("CERTPILOT_DATABASE_URL", raising=False)
        get_settings.cache_clear()
        reset_engines()
        return runtime.local_services()

    yield make
    get_settings.cache_clear()
    reset_engines()


def import_due(svc, directory: Path, name: str, *, quota: int = 1) -> str:
    """Buy `quota` DigiCert DV quota and import a due official DV DigiCert certificate of `name`
    (its key sealed in the operator's vault); its id."""
    from certpilot.core.models import CertType, Level, Origin, Spec
    from certpilot.operations import orders
    from certpilot.operations.importing import import_bundle

    if quota:
        orders.top_up(svc, count=quota, spec=Spec(brand="DigiCert", level=Level.DV, cert_type=CertType.SINGLE))
    cert, key, chain = due_certificate(directory, name)
    result = import_bundle(svc, cert_pem=cert.read_bytes(), key_pem=key.read_bytes(), chain_pem=chain.read_bytes(),
                           origin=Origin.OFFICIAL, level=Level.DV, brand="DigiCert", owner="ops@example.com",
                           actor="test")
    return result.certificate.id


def renewal_state(svc, cert_id: str) -> str:
    """The state of the certificate's first renewal (its child, LC-2); "none" without one."""
    from certpilot.operations.inventory import show_certificate

    children = sorted(show_certificate(svc, cert_id).children, key=lambda c: c.plan_index or 0)
    return children[0].state.value if children else "none"
