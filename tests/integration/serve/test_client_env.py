"""How clients find the auth string of `certpilot up` (issue 9, locked down): `client_env` for the
runner and this process, `cli_env` for the CLI (respecting the operator's Prefect settings)."""

from __future__ import annotations

import json
import os

import pytest

from certpilot.core.errors import PermanentError
from certpilot.prefect_server import AUTH_FILE, STATE_FILE, cli_env, client_env, ensure_auth, load_auth


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A home where `certpilot up` ran on port 4567; no Prefect API configured in the env."""
    for name in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "PREFECT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(tmp_path / "profiles.toml"))
    h = tmp_path / "home"
    h.mkdir(mode=0o700)
    (h / STATE_FILE).write_text(json.dumps({"api_url": "http://127.0.0.1:4567/api", "port": 4567}))
    return h


def test_lock_auth_generated_once_0600(home):
    """The auth string is made once, random, 0600; later calls read the same one."""
    first = ensure_auth(home)
    assert ensure_auth(home) == first == load_auth(home)
    assert os.stat(home / AUTH_FILE).st_mode & 0o777 == 0o600
    assert ensure_auth(home.parent / "other") != first


def test_lock_auth_file_readable_by_others_refused(home):
    """A group/world-readable auth file is refused (its string may be known), not used."""
    ensure_auth(home)
    os.chmod(home / AUTH_FILE, 0o644)
    with pytest.raises(PermanentError, match="accessible by group or others"):
        client_env(home)


def test_lock_client_env(home):
    """The runner and `up` itself: the recorded URL and the auth string; nothing before `up` ran."""
    assert client_env(home) == {}
    auth = ensure_auth(home)
    assert client_env(home) == {"PREFECT_API_URL": "http://127.0.0.1:4567/api", "PREFECT_API_AUTH_STRING": auth}


def test_lock_cli_env_respects_the_operators_prefect_settings(home, monkeypatch):
    """The CLI: the local `up` when no API is configured; only the auth string when the configured
    URL is that server's; nothing for another API or when an auth string is configured."""
    assert cli_env(home) == {}
    auth = ensure_auth(home)
    assert cli_env(home) == {"PREFECT_API_URL": "http://127.0.0.1:4567/api", "PREFECT_API_AUTH_STRING": auth}
    for url in ("http://127.0.0.1:4567/api", "http://localhost:4567/api/"):
        monkeypatch.setenv("PREFECT_API_URL", url)
        assert cli_env(home) == {"PREFECT_API_AUTH_STRING": auth}
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "ops:their-own")
    assert cli_env(home) == {}
    monkeypatch.delenv("PREFECT_API_AUTH_STRING")
    monkeypatch.setenv("PREFECT_API_URL", "https://prefect.example.com/api")
    assert cli_env(home) == {}
