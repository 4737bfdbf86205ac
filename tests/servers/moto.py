"""moto_server on loopback: the AWS APIs (ACM, ELBv2, EC2, KMS, Route53, ACM-PCA) for tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers.base import free_port, missing, port_open, spawn, stop, wait_until, which


@dataclass
class MotoServer:
    """A running moto_server; `endpoint_url` and dummy credentials for boto3."""

    endpoint_url: str
    proc: object
    region: str = "us-east-1"

    def client(self, service: str):
        """A boto3 client for `service` pointed at this server."""
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def reset(self) -> None:
        """Forget every resource (moto's reset API)."""
        import httpx

        httpx.post(f"{self.endpoint_url}/moto-api/reset", timeout=5)


def start_moto(workdir: Path) -> MotoServer:
    """Start moto_server on a free loopback port and wait until it answers."""
    binary = which("moto_server", str(Path(__import__("sys").executable).parent / "moto_server"))
    if binary is None:
        raise FileNotFoundError("moto_server")
    port = free_port()
    log = workdir / "moto.log"
    proc = spawn([binary, "-H", "127.0.0.1", "-p", str(port)], log=log)
    wait_until(lambda: port_open(port), timeout=20, what="moto_server", proc=proc, log=log)
    return MotoServer(endpoint_url=f"http://127.0.0.1:{port}", proc=proc)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """One moto_server for the session (tests use distinct resource names or reset it)."""
    try:
        server = start_moto(tmp_path_factory.mktemp("moto"))
    except (FileNotFoundError, RuntimeError) as exc:
        missing(f"moto_server ({exc})")
    yield server
    stop(server.proc)
