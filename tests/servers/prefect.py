"""Prefect under test: one temporary API server for the whole session, heartbeats off.

Non-autouse: only tests that run flows ask for `prefect_harness` (it costs ~10 s once).
PREFECT_HOME is pointed at a temp dir by tests/conftest.py before prefect is imported.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def prefect_harness():
    """Start `prefect_test_harness` once; sync flows skip their ~1 s heartbeat wait at exit."""
    from prefect.settings import temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        with temporary_settings(updates={"flows.heartbeat_frequency": None}):
            yield


# ---------------------------------------------------------------- a real `prefect server start`

import os  # noqa: E402 - the real-server part below is separate from the harness above
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

from tests.servers.base import free_port  # noqa: E402


@dataclass
class PrefectApi:
    """A `prefect server start` child on 127.0.0.1 that a test owns.

    `env` is what a client process (CLI, `prefect deploy`, `prefect worker start`) needs to talk to it:
    PREFECT_API_URL and a PREFECT_HOME of its own (so no profile of the machine leaks in).
    """

    api_url: str
    home: Path
    proc: subprocess.Popen
    log: Path
    env: dict = field(default_factory=dict)

    def stop(self) -> None:
        """Stop the server (SIGTERM to its process group, SIGKILL after 15 s)."""
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def start_prefect_server(home: Path, *, database_url: str | None = None, timeout: float = 90.0,
                         extra_env: dict[str, str] | None = None) -> PrefectApi:
    """Start `prefect server start` on a free loopback port and wait for /api/health.

    Args:
        home: PREFECT_HOME of the server and of its clients (created).
        database_url: `PREFECT_API_DATABASE_CONNECTION_URL` (e.g. `postgresql+asyncpg://…`);
            default SQLite under `home`.
        timeout: seconds to wait for health.
        extra_env: more settings for the server process (e.g. auth string, CSRF).
    Raises:
        RuntimeError: the server exited or did not become healthy (the log's tail in the message).
    """
    import httpx

    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_UI_ENABLED": "false", "PREFECT_SERVER_API_HOST": "127.0.0.1",
                "PREFECT_SERVER_API_PORT": str(port)})
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    env.update(extra_env or {})
    log = home / "server.log"
    proc = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port),
                             "--no-ui", "--analytics-off"], stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    client_env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    client_env.update({"PREFECT_HOME": str(home), "PREFECT_API_URL": api_url})
    api = PrefectApi(api_url, home, proc, log, client_env)
    deadline, delay = time.monotonic() + timeout, 0.1
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{api_url}/health", timeout=1.0).status_code == 200:
                return api
        except httpx.HTTPError:
            pass
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    api.stop()
    raise RuntimeError(f"prefect server did not become healthy at {api_url}:\n"
                       f"{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def prefect_server_factory(tmp_path_factory):
    """`make(database_url=None, **kw) -> PrefectApi`: real Prefect servers, stopped at teardown."""
    started: list[PrefectApi] = []

    def make(database_url: str | None = None, **kw) -> PrefectApi:
        api = start_prefect_server(tmp_path_factory.mktemp("prefect-home"), database_url=database_url, **kw)
        started.append(api)
        return api

    yield make
    for api in started:
        api.stop()


def asyncpg_url(sqlalchemy_url: str) -> str:
    """The suite's PostgreSQL URL (psycopg) rewritten for Prefect's own driver (asyncpg).

    A password is added (the cluster trusts loopback, so any will do): without one, the URL
    Prefect rebuilds reaches asyncpg as the role `postgres@127.0.0.1`."""
    url = sqlalchemy_url.replace("postgresql+psycopg://", "postgresql+asyncpg://", 1)
    return url.replace("://postgres@", "://postgres:postgres@", 1)
