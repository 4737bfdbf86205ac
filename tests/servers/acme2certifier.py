"""acme2certifier (PyPI `acme2certifier`) on loopback: an ACME server that serves ACME Renewal
Information (RFC 9773), with its OpenSSL CA handler signing from a CA made at start-up.

Debian's Pebble 2.4 has no renewalInfo, so ARI is tested against this one. It runs as a child
process (its configuration is read once per process) on plain http through wsgiref: the issuer
is built with ``allow_insecure=True`` (tests only). Challenge validation is switched off
(``ACME2CERTIFIER_I_KNOW_THE_RISK=1``): what is tested here is the renewal window and the
`replaces` of new orders, not DNS-01 (Pebble's tests prove that); certpilot still writes its
DNS-01 records through the provider it is given.

API
---
``start_acme2certifier(workdir, *, threshold_pct=10, window="1d") -> A2cServer``
    The window a certificate gets starts `threshold_pct` percent into its lifetime and lasts
    `window` (acme2certifier's ``renewalthreshold_pctg`` / ``renewal_window_duration``).
    ``A2cServer``: ``directory_url`` (http://127.0.0.1:PORT/directory), ``ca_pem``, ``log``
    (its debug log), ``requests`` (each POST's JWS payload as received, JSON lines; read with
    ``payloads(path_part)``), ``proc``.

Fixture (session scope): ``acme2certifier``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers.base import free_port, missing, port_open, spawn, stop, wait_until

_SERVE = """
import base64, io, json, sys
from wsgiref.simple_server import make_server
from acme2certifier.share import acme2certifier_wsgi as w

def recording(app, path):
    # Keeps each POST's JWS payload as the server received it (acme2certifier does not log it).
    def wrapped(environ, start_response):
        if environ.get("REQUEST_METHOD") == "POST":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            try:
                raw = json.loads(body).get("payload") or ""
                payload = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))) if raw else None
            except Exception:
                payload = None
            with open(path, "a") as f:
                f.write(json.dumps({"path": environ.get("PATH_INFO"), "payload": payload}) + "\\n")
        return app(environ, start_response)
    return wrapped

app = recording(w.application, sys.argv[2])
make_server("127.0.0.1", int(sys.argv[1]), app, handler_class=w.get_handler_cls()).serve_forever()
"""

_CONFIG = """[DEFAULT]
debug: True

[Nonce]
nonce_check_disable: False

[CAhandler]
handler_module: acme2certifier.cahandlers.openssl_ca_handler
issuing_ca_key: {dir}/ca.key
issuing_ca_cert: {dir}/ca.pem
issuing_ca_crl: {dir}/ca.crl
ca_cert_chain_list: ["{dir}/ca.pem"]
cert_validity_days: 90
cert_save_path: {dir}/certs

[DBhandler]
handler_module: acme2certifier.dbhandlers.wsgi_handler
dbfile: {dir}/acme_srv.db

[Challenge]
challenge_validation_disable: True

[Certificate]
revocation_reason_check_disable: False

[Renewalinfo]
renewalthreshold_pctg: {threshold}
renewal_window_duration: {window}
retry_after_timeout: 3600

[Order]
tnauthlist_support: False
"""


@dataclass
class A2cServer:
    """A running acme2certifier."""

    directory_url: str
    ca_pem: str
    log: Path
    requests: Path
    proc: object
    started_in: float = 0.0

    def payloads(self, path_part: str) -> list[dict]:
        """The JWS payloads the server received on paths containing `path_part`, in order."""
        import json

        if not self.requests.exists():
            return []
        lines = [json.loads(line) for line in self.requests.read_text().splitlines() if line]
        return [r["payload"] for r in lines if path_part in (r["path"] or "") and r["payload"] is not None]


def start_acme2certifier(workdir: Path, *, threshold_pct: int = 10, window: str = "1d",
                         timeout: float = 30.0) -> A2cServer:
    """Start acme2certifier with a fresh CA; wait until its directory answers.

    Raises:
        FileNotFoundError: the acme2certifier package is not installed.
        RuntimeError: it did not answer in time.
    """
    try:
        import acme2certifier  # noqa: F401
    except ImportError:
        raise FileNotFoundError("acme2certifier (pip install acme2certifier)") from None
    from cryptography.hazmat.primitives import serialization

    from tests.servers.certs import make_ca

    t0 = time.monotonic()
    workdir = Path(workdir)
    (workdir / "certs").mkdir(parents=True, exist_ok=True)
    ca = make_ca("issue13 acme2certifier CA")
    (workdir / "ca.key").write_bytes(ca.key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    ca_pem = ca.cert.public_bytes(serialization.Encoding.PEM).decode()
    (workdir / "ca.pem").write_text(ca_pem)
    (workdir / "acme_srv.cfg").write_text(_CONFIG.format(dir=workdir, threshold=threshold_pct, window=window))
    (workdir / "serve.py").write_text(_SERVE)
    port = free_port()
    log = workdir / "acme2certifier.log"
    env = {**os.environ, "ACME_SRV_CONFIGFILE": str(workdir / "acme_srv.cfg"), "ACME2CERTIFIER_I_KNOW_THE_RISK": "1"}
    requests = workdir / "requests.jsonl"
    proc = spawn([sys.executable, str(workdir / "serve.py"), str(port), str(requests)], log=log, env=env, cwd=workdir)
    url = f"http://127.0.0.1:{port}/directory"

    def answers() -> bool:
        import httpx

        return port_open(port) and httpx.get(url, timeout=2).status_code == 200

    wait_until(answers, timeout=timeout, what="acme2certifier", proc=proc, log=log)
    return A2cServer(directory_url=url, ca_pem=ca_pem, log=log, requests=requests, proc=proc,
                     started_in=time.monotonic() - t0)


@pytest.fixture(scope="session")
def acme2certifier(tmp_path_factory) -> Iterable[A2cServer]:
    """One acme2certifier for the session (windows: 10 % into a certificate's life, one day long)."""
    try:
        server = start_acme2certifier(tmp_path_factory.mktemp("acme2certifier"))
    except (FileNotFoundError, RuntimeError) as exc:
        missing(f"acme2certifier ({exc})")
    yield server
    stop(server.proc)
