"""The Alibaba Cloud emulator (CAS 2020-04-07 + AliDNS 2015-01-09) for tests: launcher, admin client,
fixtures.

``start_alibaba_emulator(workdir, *, access_key_id, access_key_secret) -> AlibabaEmulator`` runs
``python -m tests.servers.alibaba_emulator`` (see its docstring for what it emulates) on free
loopback ports; the AccessKey secret reaches the child through an environment variable, never
its command line. The official SDK is pointed at ``endpoint`` with ``protocol="http"``
(`AlibabaEmulator.connection` builds certpilot's `AlibabaConnection` that way).

Fixtures: ``alibaba_server`` (session: one emulator) and ``alibaba`` (function: the same
emulator, reset before the test).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.servers.base import free_port, free_udp_tcp_port, missing, port_open, spawn, stop, wait_until

SECRET_ENV = "ALIBABA_EMULATOR_ACCESS_KEY_SECRET"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class AlibabaEmulator:
    """A running emulator and typed wrappers of its admin API (``/_emulator/...``)."""

    port: int
    dns_port: int
    tls_port: int
    access_key_id: str
    access_key_secret: str = field(repr=False)
    proc: subprocess.Popen | None = None
    log: Path | None = None

    # ------------------------------------------------------------ addresses
    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``: the SDK's endpoint (with ``protocol="http"``)."""
        return f"127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.endpoint}/_emulator"

    @property
    def nameservers(self) -> list[tuple[str, int]]:
        """The authoritative DNS server of the AliDNS zones, as (host, port) pairs."""
        return [("127.0.0.1", self.dns_port)]

    def connection(self, *, secret: str | None = None, access_key_id: str | None = None):
        """certpilot's `AlibabaConnection` to this emulator (another secret or key id to test refusals)."""
        from certpilot.adapters.alibaba.client import AlibabaConnection

        value = self.access_key_secret if secret is None else secret
        return AlibabaConnection(access_key_id or self.access_key_id, secret=lambda: value,
                                 cas_endpoint=self.endpoint, dns_endpoint=self.endpoint, protocol="http",
                                 timeout_ms=5_000)

    def sdk_config(self, *, secret: str | None = None):
        """An SDK `Config` pointed at the emulator (for tests that use the raw SDK clients)."""
        from alibabacloud_tea_openapi.utils_models import Config

        return Config(access_key_id=self.access_key_id,
                      access_key_secret=self.access_key_secret if secret is None else secret,
                      endpoint=self.endpoint, protocol="http", region_id="cn-hangzhou")

    # ------------------------------------------------------------ admin
    def _admin(self, method: str, path: str, body: dict | None = None) -> Any:
        import httpx

        r = httpx.request(method, f"{self.admin_url}/{path.lstrip('/')}", json=body, timeout=10)
        if r.status_code >= 400:
            raise RuntimeError(f"emulator admin {method} {path}: {r.status_code} {r.text}")
        return r.json()

    def reset(self) -> None:
        """Forget every package, order, certificate, resource, job, zone, fault and logged call."""
        self._admin("POST", "reset")

    @property
    def root_pem(self) -> str:
        """The emulator CA's root certificate (PEM)."""
        return self._admin("GET", "root")["root_pem"]

    @property
    def intermediate_pem(self) -> str:
        return self._admin("GET", "root")["intermediate_pem"]

    def settings(self, *, review_seconds: float | None = None, deploy_seconds: float | None = None) -> dict:
        """Set how long the CA review (``process``) and a deployment job last."""
        body = {k: v for k, v in (("review_seconds", review_seconds), ("deploy_seconds", deploy_seconds))
                if v is not None}
        return self._admin("POST", "settings", body)

    def add_package(self, product_code: str, *, total: int = 20, used: int = 0, brand: str = "DigiCert",
                    level: str = "DV", cert_type: str = "DV", max_domains: int = 1) -> dict:
        """A certificate resource package (quota) of `product_code`."""
        return self._admin("POST", "packages", {"product_code": product_code, "total": total, "used": used,
                                                "brand": brand, "level": level, "cert_type": cert_type,
                                                "max_domains": max_domains})

    def packages(self) -> dict:
        return self._admin("GET", "packages")

    def add_zone(self, zone: str) -> str:
        """An AliDNS zone (domain) of the account; returns its DomainId."""
        return self._admin("POST", "zones", {"zone": zone})["domain_id"]

    def records(self, zone: str) -> list[dict]:
        """Every record of `zone` (RecordId, RR, Type, Value, TTL, DomainName, ..., fqdn)."""
        return self._admin("GET", f"zones/{zone}/records")

    def txt(self, fqdn: str) -> set[str]:
        """The TXT values the emulator's AliDNS holds at `fqdn` (API state, not DNS)."""
        return set(self._admin("GET", f"txt/{fqdn.rstrip('.').lower()}"))

    def seed_certificate(self, names: Sequence[str], *, source: str = "buy", with_key: bool = True,
                         not_before: str | None = None, not_after: str | None = None, name: str | None = None,
                         product_code: str | None = None, brand: str | None = None, cert_type: str = "DV",
                         self_issued: bool = False, resources: Sequence[dict] = ()) -> dict:
        """A certificate already in the account: ``buy`` (issued by the emulator CA for an order) or
        ``upload``; the key held (deployable, served by TLS) or not; optional cloud resources using it
        (each ``{"domain", "cloud_product", ...}``). Returns cert_id, order_id, resource_ids,
        cert_pem, key_pem (None without key), fingerprint_sha256."""
        body: dict[str, Any] = {"names": list(names), "source": source, "with_key": with_key,
                                "cert_type": cert_type, "self_issued": self_issued, "resources": list(resources)}
        for k, v in (("not_before", not_before), ("not_after", not_after), ("name", name),
                     ("product_code", product_code), ("brand", brand)):
            if v is not None:
                body[k] = v
        return self._admin("POST", "certificates", body)

    def add_resource(self, domain: str, *, cert_id: int | None, cloud_product: str = "SLB", **extra: Any) -> dict:
        """A cloud resource (SLB listener, CDN domain, ...) serving `cert_id` for `domain`."""
        return self._admin("POST", "resources", {"domain": domain, "cert_id": cert_id, "cloud_product": cloud_product,
                                                 **extra})

    def resource(self, resource_id: int) -> dict:
        return self._admin("GET", f"resources/{resource_id}")

    def resource_cert_id(self, resource_id: int) -> int | None:
        """The CertId a resource uses now."""
        return self.resource(resource_id)["cert_id"]

    def order(self, order_id: int) -> dict:
        """An order as the emulator holds it (status, record_domain, record_value, cert_id, message...)."""
        return self._admin("GET", f"orders/{order_id}")

    def reject_order(self, order_id: int, message: str = "rejected by the CA") -> dict:
        return self._admin("POST", f"orders/{order_id}/reject", {"message": message})

    def validate_order(self, order_id: int) -> dict:
        """Mark an order's domain validated (FILE validation, which the emulator cannot fetch)."""
        return self._admin("POST", f"orders/{order_id}/validate", {})

    def job(self, job_id: int) -> dict:
        """A deployment job: status, message (why it failed), previous CertIds of its resources."""
        return self._admin("GET", f"jobs/{job_id}")

    def fail_deployment(self, *, job_id: int | None = None, resource_id: int | None = None,
                        message: str = "deployment failed") -> None:
        """Make a deployment job (or every job touching a resource) end ``error``."""
        self._admin("POST", "deploy-failures", {"job_id": job_id, "resource_id": resource_id, "message": message})

    def fault(self, action: str = "*", *, status: int = 400, code: str = "Throttling.User",
              message: str = "Request was denied due to user flow control.", times: int = 1,
              retry_after_ms: int = 100) -> dict:
        """Answer the next `times` calls of `action` (``*``: any) with this error (throttling codes carry
        the rate-limit headers the SDK reads)."""
        return self._admin("POST", "faults", {"action": action, "status": status, "code": code, "message": message,
                                              "times": times, "retry_after_ms": retry_after_ms})

    def calls(self, action: str | None = None) -> list[dict]:
        """The logged API calls (action, version, params, status, response), oldest first."""
        return [c for c in self._admin("GET", "calls") if action is None or c["action"] == action]


def start_alibaba_emulator(workdir: Path, *, access_key_id: str = "LTAI5tEmulatorTestKey",
                           access_key_secret: str | None = None, timeout: float = 20.0) -> AlibabaEmulator:
    """Start the emulator on free loopback ports and wait until its admin API answers.

    Args:
        workdir: a directory for its log and transient TLS files.
        access_key_id: the only AccessKey id it accepts.
        access_key_secret: that key's secret (random by default); passed in the environment.

    Raises:
        RuntimeError: it did not answer in time (the message holds its log tail).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    secret = access_key_secret or secrets.token_urlsafe(24)
    port, tls_port, dns_port = free_port(), free_port(), free_udp_tcp_port()
    log = workdir / "alibaba-emulator.log"
    env = {**os.environ, SECRET_ENV: secret, "PYTHONPATH": os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = spawn([sys.executable, "-m", "tests.servers.alibaba_emulator", "--port", str(port), "--dns-port",
                  str(dns_port), "--tls-port", str(tls_port), "--access-key-id", access_key_id,
                  "--workdir", str(workdir)], log=log, env=env, cwd=REPO_ROOT)
    server = AlibabaEmulator(port=port, dns_port=dns_port, tls_port=tls_port, access_key_id=access_key_id,
                             access_key_secret=secret, proc=proc, log=log)

    def ready() -> bool:
        import httpx

        return port_open(port) and port_open(tls_port) and httpx.get(
            f"{server.admin_url}/health", timeout=2).status_code == 200

    wait_until(ready, timeout=timeout, what="alibaba emulator", proc=proc, log=log)
    return server


@pytest.fixture(scope="session")
def alibaba_server(tmp_path_factory) -> Iterable[AlibabaEmulator]:
    """One Alibaba Cloud emulator for the session."""
    try:
        server = start_alibaba_emulator(tmp_path_factory.mktemp("alibaba"))
    except (FileNotFoundError, RuntimeError) as exc:
        missing(f"alibaba emulator ({exc})")
    yield server
    stop(server.proc)


@pytest.fixture
def alibaba(alibaba_server) -> AlibabaEmulator:
    """The session's emulator, reset (empty account, review/deploy take 0 s) before the test."""
    alibaba_server.reset()
    return alibaba_server


__all__: Sequence[str] = ("AlibabaEmulator", "start_alibaba_emulator", "alibaba_server", "alibaba")
