"""The Prefect server of `certpilot up`, locked down (issue 9): auth, CSRF, CORS, private files,
no secret in its environment, one `up` per home, no foreign server used."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap

import httpx
import pytest

from certpilot.prefect_server import (
    AUTH_FILE,
    ENCRYPTION_KEY_FILE,
    STATE_FILE,
    PrefectServer,
    ServerInUseError,
    client_env,
    load_auth,
)
from tests.integration.serve.conftest import PARENT_SECRETS, ROOT, environ_of
from tests.servers.base import wait_until

pytestmark = pytest.mark.servers


def _basic(auth: str) -> tuple[str, str]:
    user, _, password = auth.partition(":")
    return user, password


def test_lock_unauthenticated_requests_are_refused(up_like):
    """GETs without the auth string answer 401; state-changing requests without it are refused
    too (403: Prefect's CSRF check runs before its auth check); only health is open."""
    api = up_like.api_url
    assert httpx.get(f"{api}/health").status_code == 200  # open by design (probes)
    for path in ("/csrf-token?client=x", "/admin/settings", "/admin/version",
                 "/block_documents/00000000-0000-0000-0000-000000000000"):
        response = httpx.get(f"{api}{path}")
        assert (path, response.status_code) == (path, 401)
    wrong = httpx.get(f"{api}/admin/settings", auth=("certpilot", "not-the-auth-string"))
    assert wrong.status_code == 401
    read_secrets = httpx.post(f"{api}/block_documents/filter", json={"include_secrets": True})
    assert (read_secrets.status_code, read_secrets.json()) == (403, {"detail": "Missing CSRF token."})
    forged = httpx.post(f"{api}/block_documents/filter", json={"include_secrets": True},
                        headers={"Prefect-Csrf-Token": "forged", "Prefect-Csrf-Client": "forged"})
    assert forged.status_code == 403


def test_lock_authenticated_request_needs_a_csrf_token(up_like):
    """With the auth string, a POST still needs the CSRF token (fetched with the auth string)."""
    auth = _basic(load_auth(up_like.home))
    api = up_like.api_url
    assert httpx.post(f"{api}/block_documents/filter", json={}, auth=auth).status_code == 403
    token = httpx.get(f"{api}/csrf-token?client=test-client", auth=auth)
    assert token.status_code == 200
    headers = {"Prefect-Csrf-Token": token.json()["token"], "Prefect-Csrf-Client": "test-client"}
    assert httpx.post(f"{api}/block_documents/filter", json={}, auth=auth, headers=headers).status_code == 200


def test_lock_prefect_client_with_client_env(up_like):
    """A separate process given `client_env(home)` (what the CLI and the runner use) reads and
    writes through Prefect's own client (auth string + CSRF handled by the client)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(client_env(up_like.home), PREFECT_HOME=str(up_like.home / "client-prefect"))
    assert env["PREFECT_API_URL"] == up_like.api_url
    script = textwrap.dedent("""
        import asyncio
        from prefect import get_client
        from prefect.client.schemas.actions import VariableCreate

        async def go():
            async with get_client() as client:
                await client.create_variable(VariableCreate(name="lock_down", value="yes"))
                print((await client.read_variable_by_name("lock_down")).value)

        asyncio.run(go())
    """)
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "yes"), done.stderr[-2000:]


def test_lock_cors_only_the_ui_origin(up_like):
    """A web page of another origin gets no CORS grant; the UI's own origins do."""
    url = f"{up_like.api_url}/block_documents/filter"
    evil = httpx.options(url, headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert evil.status_code == 400
    assert "access-control-allow-origin" not in evil.headers
    for origin in (f"http://127.0.0.1:{up_like.port}", f"http://localhost:{up_like.port}"):
        ui = httpx.options(url, headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert (ui.status_code, ui.headers.get("access-control-allow-origin")) == (200, origin)


def test_lock_ui_asks_for_the_auth_string(up_like):
    """The UI's settings tell it to ask for the auth string at login (BASIC) and to use CSRF tokens."""
    settings = httpx.get(f"http://127.0.0.1:{up_like.port}/ui-settings").json()
    assert (settings["auth"], settings["csrf_enabled"], settings["api_url"]) == ("BASIC", True, up_like.api_url)


def test_lock_home_and_secret_files_are_private(up_like):
    """CERTPILOT_HOME 0700; the auth string and the encryption key 0600; the auth string random."""
    home = up_like.home
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for name in (AUTH_FILE, ENCRYPTION_KEY_FILE, STATE_FILE):
        assert (name, stat.S_IMODE((home / name).stat().st_mode)) == (name, 0o600)
    auth = load_auth(home)
    user, _, password = auth.partition(":")
    assert user == "certpilot" and len(password) >= 43
    state = json.loads((home / STATE_FILE).read_text())
    assert (state["server_pid"], state["port"], state["api_url"]) == (up_like.server_pid, up_like.port,
                                                                       up_like.api_url)


def test_lock_server_environment_holds_no_parent_secret(up_like):
    """The server child's environment: the allow-list and its own lock-down settings, no secret of
    its parent (master key, AWS, Prefect API key or client auth string, tokens, passwords)."""
    env = environ_of(up_like.server_pid)
    leaked = sorted(name for name in PARENT_SECRETS if name in env)
    assert leaked == []
    assert not [v for v in env.values() if v in PARENT_SECRETS.values()]
    assert env["PREFECT_SERVER_API_AUTH_STRING"] == load_auth(up_like.home)
    assert env["PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED"] == "true"
    assert env["PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS"] == (f"http://127.0.0.1:{up_like.port},"
                                                              f"http://localhost:{up_like.port}")
    assert env["PREFECT_SERVER_ENCRYPTION_KEY"] == (up_like.home / ENCRYPTION_KEY_FILE).read_text().strip()
    assert set(env) <= {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "PREFECT_HOME",
                        "PREFECT_SERVER_API_HOST", "PREFECT_SERVER_API_PORT", "PREFECT_SERVER_API_AUTH_STRING",
                        "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED", "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS",
                        "PREFECT_SERVER_UI_API_URL", "PREFECT_SERVER_ANALYTICS_ENABLED",
                        "PREFECT_SERVER_ENCRYPTION_KEY"} | {k for k in env if k.startswith("LC_")}


def test_lock_second_up_on_the_same_home_is_refused(up_like):
    """While one `certpilot up` runs, another from the same home stops before touching anything."""
    with pytest.raises(ServerInUseError) as refused:
        PrefectServer(up_like.home, port=up_like.port).claim()
    assert str(refused.value).startswith(f"another certpilot up (pid {up_like.proc.pid}) is running from "
                                         f"{up_like.home} with its Prefect server on port {up_like.port}")


def test_lock_foreign_server_on_the_port_is_refused(up_like, tmp_path):
    """Another home's `certpilot up` finds the port taken by a server it did not start: a clear
    refusal naming the port, and the running server is left alone."""
    with pytest.raises(ServerInUseError) as refused:
        PrefectServer(tmp_path / "other-home", port=up_like.port).claim()
    assert str(refused.value).startswith(f"port {up_like.port} on 127.0.0.1 is already in use by a server this "
                                         "certpilot up did not start")
    assert "CERTPILOT_PREFECT_PORT" in str(refused.value)
    assert httpx.get(f"{up_like.api_url}/health").status_code == 200


RUNNER_FLOW = '''
import asyncio
import sys

from prefect import flow, get_client
from prefect.client.schemas.actions import VariableCreate


@flow(name="lock-down-probe")
def probe() -> str:
    """Runs in the runner's flow-run process: writes through the API (auth string + CSRF)."""
    async def write():
        async with get_client() as client:
            await client.create_variable(VariableCreate(name="runner_wrote", value="yes"))

    asyncio.run(write())
    return "ok"


if __name__ == "__main__":
    probe.serve(name="probe", limit=1)
'''

TRIGGER = '''
from prefect.deployments import run_deployment
from prefect import get_client
import asyncio

run = run_deployment("lock-down-probe/probe", timeout=150, poll_interval=1)

async def read():
    async with get_client() as client:
        return (await client.read_variable_by_name("runner_wrote")).value

print(run.state.type.value, asyncio.run(read()))
'''


def test_lock_runner_flow_runs_authenticate(up_like, tmp_path):
    """A runner serving a deployment with `client_env(home)` (as `certpilot up` serves its flows):
    the flow run it starts in a new process reports its states and writes through the API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(client_env(up_like.home), PREFECT_HOME=str(tmp_path / "prefect"),
               PREFECT_RUNNER_POLL_FREQUENCY="1")
    (tmp_path / "probe_flow.py").write_text(RUNNER_FLOW)
    runner = subprocess.Popen([sys.executable, "probe_flow.py"], env=env, cwd=tmp_path,
                              stdout=(tmp_path / "runner.log").open("wb"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        wait_until(lambda: "is being served" in (tmp_path / "runner.log").read_text(errors="replace"),
                   timeout=120, what="the runner's deployment", proc=runner, log=tmp_path / "runner.log")
        done = subprocess.run([sys.executable, "-c", TRIGGER], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=240)
        log = (tmp_path / "runner.log").read_text(errors="replace")[-3000:]
        assert (done.returncode, done.stdout.strip()) == (0, "COMPLETED yes"), done.stderr[-2000:] + log
    finally:
        os.killpg(runner.pid, signal.SIGTERM)
        runner.wait(30)
