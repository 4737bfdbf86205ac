"""Shared plumbing for the real test servers: ports, child processes, skip-or-fail.

Every server is a child process we own, bound to 127.0.0.1 on a port picked here, stopped by
PID at teardown (and at interpreter exit, whatever happens). Benchmarks reuse these launchers.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

_children: list[subprocess.Popen] = []


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bind to 0 and read it back)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_tcp_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (for DNS servers)."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP+UDP port")


def missing(what: str) -> None:
    """Skip on a laptop without a server; fail in CI, where every server must be there."""
    msg = f"test server unavailable: {what}"
    if IN_CI:
        pytest.fail(msg + " (CI=true: a missing server fails the run)", pytrace=False)
    pytest.skip(msg)


def which(binary: str, *fallbacks: str) -> str | None:
    """Path of a binary on PATH or at one of the fallback paths."""
    found = shutil.which(binary)
    if found:
        return found
    return next((f for f in fallbacks if os.access(f, os.X_OK)), None)


def spawn(argv: Sequence[str], *, log: Path, env: dict | None = None, user: str | None = None,
          cwd: str | Path | None = None) -> subprocess.Popen:
    """Start a child process in its own process group, output to `log`; killed at exit."""
    fh = open(log, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    kwargs: dict = {}
    if user is not None and os.geteuid() == 0:
        kwargs["user"] = user
    proc = subprocess.Popen(list(argv), stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                            start_new_session=True, **kwargs)
    _children.append(proc)
    return proc


def stop(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    """Terminate a child's process group, then kill it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout)


@atexit.register
def _stop_all() -> None:
    for proc in reversed(_children):
        stop(proc, timeout=2.0)


def wait_until(ready: Callable[[], bool], *, timeout: float, what: str, proc: subprocess.Popen | None = None,
               log: Path | None = None) -> None:
    """Poll `ready` with a short growing delay until true; raise with the log tail otherwise."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 - not ready yet
            pass
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not become ready in {timeout}s\n{tail}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when a TCP connect to host:port succeeds."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0
