"""Which Prefect API the CLI talks to (issue 9: it used to force 127.0.0.1:4200).

The user's Prefect settings win: PREFECT_API_URL, else the active profile's URL. With neither, the
local server of `certpilot up` (its URL and auth string from CERTPILOT_HOME); with nothing at all,
a usage error. Each case is a `certpilot scan --json` process whose API does not answer: the error
names the URL it tried, which is the one chosen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.base import free_port

CERTPILOT = str(Path(sys.executable).parent / "certpilot")


@pytest.fixture
def shell(tmp_path):
    """`run(extra_env) -> (exit code, JSON error)` of `certpilot scan --json` with no Prefect
    setting of the machine (an empty PREFECT_HOME, no PREFECT_* variable) and a fresh home."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CERTPILOT_"))}
    base.update({"PREFECT_HOME": str(tmp_path / "prefect"), "CERTPILOT_HOME": str(tmp_path / "home"),
                 "PREFECT_CLIENT_MAX_RETRIES": "0"})

    def run(**extra: str) -> tuple[int, dict]:
        proc = subprocess.run([CERTPILOT, "scan", "--json"], env={**base, **extra}, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)
        return proc.returncode, json.loads(proc.stdout)["error"]

    return run


def test_without_any_prefect_api_the_cli_says_what_to_configure(shell):
    code, error = shell()
    assert code == 5
    assert "no Prefect API is configured" in error["message"] and "PREFECT_API_URL" in error["message"]


def test_prefect_api_url_in_the_environment_is_used_as_is(shell):
    url = f"http://127.0.0.1:{free_port()}/api"
    code, error = shell(PREFECT_API_URL=url)
    assert code == 5 and f"at {url}" in error["message"]


def test_the_active_prefect_profile_is_respected(shell, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/api"
    (tmp_path / "prefect").mkdir()
    (tmp_path / "prefect" / "profiles.toml").write_text(
        f'active = "ops"\n\n[profiles.ops]\nPREFECT_API_URL = "{url}"\n')
    code, error = shell()
    assert code == 5 and f"at {url}" in error["message"]


def test_with_nothing_configured_the_local_certpilot_up_server_is_used(shell, tmp_path):
    """`certpilot up` ran from this home (its auth file exists): its server, on its port."""
    from certpilot.prefect_server import ensure_auth

    (tmp_path / "home").mkdir(mode=0o700)
    ensure_auth(tmp_path / "home")
    port = free_port()
    code, error = shell(CERTPILOT_PREFECT_PORT=str(port))
    assert code == 5 and f"at http://127.0.0.1:{port}/api" in error["message"]


def test_setup_against_an_api_that_does_not_answer_changes_nothing(tmp_path):
    """`certpilot setup` checks the API before anything else: no database is migrated."""
    url = f"http://127.0.0.1:{free_port()}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CERTPILOT_"))}
    env.update({"PREFECT_HOME": str(tmp_path / "prefect"), "CERTPILOT_HOME": str(tmp_path / "home"),
                "PREFECT_CLIENT_MAX_RETRIES": "0", "PREFECT_API_URL": url})
    proc = subprocess.run([CERTPILOT, "setup", "--private-ca", "--json"], env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert proc.returncode == 5
    assert f"the Prefect API at {url} did not answer" in json.loads(proc.stdout)["error"]["message"]
    assert not (tmp_path / "home").exists() and not (tmp_path / "prefect.yaml").exists()
