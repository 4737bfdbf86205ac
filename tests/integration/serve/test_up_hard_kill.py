"""A hard kill of `certpilot up` leaves no Prefect server behind; the next `up` on the same home
starts cleanly, and stops a server a dead predecessor left (issue 9, locked down)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from certpilot.prefect_server import STATE_FILE, PrefectServer, ServerInUseError, _port_in_use, _proc_start
from tests.integration.serve.conftest import process_gone, start_up_like
from tests.servers.base import free_port

pytestmark = pytest.mark.servers

STAND_IN = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("listening", flush=True)
time.sleep(600)
"""


def _stand_in(port: int) -> subprocess.Popen:
    """A process listening on `port` whose command line says prefect (a stand-in for a server)."""
    proc = subprocess.Popen([sys.executable, "-c", STAND_IN, str(port), "prefect-server-stand-in"],
                            stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout.readline() == b"listening\n"
    return proc


def _dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux")
def test_lock_kill_9_of_up_leaves_no_server(tmp_path):
    """kill -9 of the `up` process: its Prefect server is gone within 5 s and the port is free;
    a new `up` on the same home takes the home and the port at once."""
    up = start_up_like(tmp_path / "home")
    assert not process_gone(up.server_pid)
    os.kill(up.proc.pid, signal.SIGKILL)
    up.proc.wait(5)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5 and not (process_gone(up.server_pid) and not _port_in_use("127.0.0.1", up.port)):
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    print(f"server gone {elapsed * 1000:.0f} ms after kill -9 of up")
    try:
        assert process_gone(up.server_pid)
        assert not _port_in_use("127.0.0.1", up.port)
    finally:  # a failure must not leave the orphan behind either
        if not process_gone(up.server_pid):
            os.killpg(up.server_pid, signal.SIGKILL)
    assert (up.home / STATE_FILE).exists()  # the dead process could not clean up: the next one does

    again = PrefectServer(up.home, port=up.port)
    again.claim()  # the kernel dropped the dead up's lock; its server is gone
    try:
        assert not (up.home / STATE_FILE).exists()
    finally:
        again.release()


def test_lock_server_left_by_a_dead_up_is_stopped(tmp_path):
    """A server recorded by this home's previous `up` (dead) and still running is stopped by the
    next `up`, which then has the port; the state file is cleared."""
    home, port = tmp_path / "home", free_port()
    home.mkdir(mode=0o700)
    left = _stand_in(port)
    (home / STATE_FILE).write_text(json.dumps({
        "owner_pid": _dead_pid(), "owner_start": None, "server_pid": left.pid, "server_start": _proc_start(left.pid),
        "host": "127.0.0.1", "port": port, "api_url": f"http://127.0.0.1:{port}/api"}))
    server = PrefectServer(home, port=port)
    try:
        server.claim()
        left.wait(10)
        assert left.returncode is not None
        assert not _port_in_use("127.0.0.1", port)
        assert not (home / STATE_FILE).exists()
    finally:
        server.release()
        if left.poll() is None:
            left.kill()


def test_lock_server_not_started_by_this_home_is_never_stopped(tmp_path):
    """A listener on the port that the state file does not name (or names with another start
    time: a reused pid) is refused, never killed."""
    home, port = tmp_path / "home", free_port()
    home.mkdir(mode=0o700)
    foreign = _stand_in(port)
    try:
        (home / STATE_FILE).write_text(json.dumps({
            "owner_pid": _dead_pid(), "server_pid": foreign.pid, "server_start": "1", "port": port}))
        with pytest.raises(ServerInUseError, match=f"^port {port} on 127.0.0.1 is already in use"):
            PrefectServer(home, port=port).claim()
        assert foreign.poll() is None
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        foreign.kill()
        foreign.wait(5)
