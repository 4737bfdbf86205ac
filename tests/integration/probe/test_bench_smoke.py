"""bench/probe_rate.py keeps working (a tiny run; the figures themselves are not asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.servers.base import missing, which

ROOT = Path(__file__).resolve().parents[3]


def test_probe_rate_bench_runs_and_prints_ratio():
    """The benchmark starts its nginx, measures the three loops and prints `ratio: X`."""
    if which("nginx", "/usr/sbin/nginx") is None or which("openssl") is None:
        missing("nginx and openssl for bench/probe_rate.py")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "probe_rate.py"), "--names", "20",
                           "--openssl-names", "3", "--rounds", "1", "--concurrency", "8"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"^ratio: \d+(\.\d+)?$", done.stdout, re.M), done.stdout
    assert "certpilot / reference: " in done.stdout
