"""Fixtures of the lock-down tests: a `certpilot up`-like process (`up_like.py`) with secrets in its env."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers.base import free_port

HELPER = Path(__file__).with_name("up_like.py")
ROOT = Path(__file__).resolve().parents[3]

PARENT_SECRETS = {
    "CERTPILOT_MASTER_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    "AWS_SECRET_ACCESS_KEY": "parent-aws-secret",
    "AWS_ACCESS_KEY_ID": "AKIAPARENT",
    "PREFECT_API_KEY": "parent-prefect-api-key",
    "PREFECT_API_AUTH_STRING": "parent:client-auth",
    "GITHUB_TOKEN": "parent-github-token",
    "SMTP_PASSWORD": "parent-smtp-password",
}
"""What a worker's environment may hold; none of it may reach a child process."""


@dataclass
class UpLike:
    """A running `up_like.py`: its process, its home, the server it started."""

    proc: subprocess.Popen
    home: Path
    port: int
    server_pid: int
    api_url: str

    def stop(self) -> None:
        """SIGTERM (the helper stops its server, as Ctrl-C does for `certpilot up`)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_up_like(home: Path, *, timeout: float = 250.0) -> UpLike:
    """Start `up_like.py` on a free port with `PARENT_SECRETS` in its env; wait for READY.

    Raises:
        RuntimeError: it exited or did not report READY in time (its stderr in the message).
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CERTPILOT_"))}
    env.update(PARENT_SECRETS, CERTPILOT_HOME=str(home), PREFECT_HOME=str(home / "prefect"),
               CERTPILOT_PREFECT_PORT=str(port), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    err = home.parent / f"{home.name}-up-like.err"
    proc = subprocess.Popen([sys.executable, str(HELPER)], stdout=subprocess.PIPE, stderr=err.open("wb"),
                            env=env, cwd=ROOT, start_new_session=True)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if sel.select(timeout=1.0):
            line = proc.stdout.readline().decode()
            if line.startswith("READY "):
                info = json.loads(line[6:])
                return UpLike(proc, home, port, info["server_pid"], info["api_url"])
    proc.kill()
    proc.wait(5)
    raise RuntimeError(f"up_like did not report READY:\n{err.read_text(errors='replace')[-3000:]}")


def process_gone(pid: int) -> bool:
    """True when `pid` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def environ_of(pid: int) -> dict[str, str]:
    """A running process's environment, from /proc."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


@pytest.fixture(scope="module")
def up_like(tmp_path_factory):
    """One `certpilot up`-like process (real locked-down Prefect server) for a test module."""
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc")
    running = start_up_like(tmp_path_factory.mktemp("up") / "home")
    yield running
    running.stop()
