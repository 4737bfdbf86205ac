"""Debian's Prometheus on loopback, scraping one target every second, for the exporter's tests.

`start_prometheus(workdir, target)` writes a config that scrapes `target` (HOST:PORT, path
/metrics) every second and runs `prometheus` as a child we own (TSDB in the work dir, no
lifecycle API, no remote write). `query(promql)` runs an instant query over the HTTP API.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.servers.base import free_port, spawn, stop, wait_until, which

PROMETHEUS_FALLBACKS = ("/usr/bin/prometheus",)


@dataclass
class PrometheusServer:
    """A running Prometheus: its HTTP port and process."""

    port: int
    proc: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params: str) -> dict:
        """GET /api/v1/<path> with `params`; the decoded `data` (raises on an error status)."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus {path}: {body}")
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        """An instant query's result vector."""
        return self.api("query", query=promql)["result"]

    def target_health(self) -> str:
        """The health of the one scrape target ("up", "down", "unknown")."""
        targets = self.api("targets")["activeTargets"]
        return targets[0]["health"] if targets else "unknown"

    def stop(self) -> None:
        stop(self.proc)


def start_prometheus(workdir: Path, target: str, *, timeout: float = 30.0) -> PrometheusServer:
    """Start Prometheus scraping `target` (HOST:PORT) every second.

    Raises:
        FileNotFoundError: no prometheus binary. RuntimeError: it did not become ready (log tail inside).
    """
    binary = which("prometheus", *PROMETHEUS_FALLBACKS)
    if binary is None:
        raise FileNotFoundError("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                      "scrape_configs:\n  - job_name: certpilot\n    metrics_path: /metrics\n"
                      f"    static_configs:\n      - targets: ['{target}']\n")
    port = free_port()
    log = workdir / "prometheus.log"
    proc = spawn([binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
                  f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"], log=log, cwd=workdir)
    server = PrometheusServer(port, proc, log)
    try:
        wait_until(lambda: urllib.request.urlopen(f"{server.url}/-/ready", timeout=2).status == 200,
                   timeout=timeout, what="prometheus", proc=proc, log=log)
    except RuntimeError:
        server.stop()
        raise
    return server
