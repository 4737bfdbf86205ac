"""The local Prefect server `certpilot up` runs: a `prefect server start` child on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

API_HOST = "127.0.0.1"
API_PORT = 4200


def _say(message: str) -> None:
    print(f"certpilot up: {message}", flush=True)


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


class PrefectServer:
    """A `prefect server start` child process on loopback (SQLite), or one already running."""

    def __init__(self, home: Path, host: str = API_HOST, port: int = API_PORT):
        self.home, self.host, self.port = home, host, port
        self.api_url = f"http://{host}:{port}/api"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> None:
        """Start the server unless one answers already; wait until `/api/health` answers.

        Raises:
            RuntimeError: it did not become healthy in time (the log's tail is in the message).
        """
        if _healthy(self.api_url):
            _say(f"a Prefect server already answers at {self.api_url}; using it")
            return
        log = self.home / "prefect-server.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
        env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        env.pop("PREFECT_API_URL", None)
        self.proc = subprocess.Popen(
            [prefect, "server", "start", "--host", self.host, "--port", str(self.port), "--analytics-off"],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        delay = 0.1
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if _healthy(self.api_url):
                return
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
        tail = log.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"the Prefect server did not become healthy at {self.api_url}:\n{tail}")

    def stop(self) -> None:
        """Stop the server this object started (not one it found running)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
