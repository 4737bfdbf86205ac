"""The scan's fleet probe against a real nginx: a certificate replaced behind certpilot's back is
found by the next scan and told once (inbox message, notice, Prefect event); the scan after says
nothing new.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from certpilot import runtime as rt
from certpilot.adapters.notify.base import EventKind
from certpilot.core.deployment import TargetKind
from certpilot.core.models import Level, Origin
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.operations import deployments, inbox
from certpilot.operations.importing import import_bundle
from certpilot.store.db import ensure_schema
from tests.servers.certs import make_leaf
from tests.servers.nginx import VHost

pytestmark = pytest.mark.flows
NAME = "drift.example.test"


class CollectingNotifier:
    """A Notifier (the Protocol email and webhook implement) that keeps what it is sent."""

    name = "collect"

    def __init__(self) -> None:
        self.events = []
        self._lock = threading.Lock()

    def send(self, event) -> None:
        with self._lock:
            self.events.append(event)


def drift_events(since: datetime) -> list[dict]:
    """`certpilot.certificate.drift` events the Prefect server recorded since `since`."""
    from prefect.settings import get_current_settings

    body = {"filter": {"event": {"prefix": ["certpilot.certificate.drift"]},
                       "occurred": {"since": since.isoformat()}}, "limit": 50}
    resp = httpx.post(f"{get_current_settings().api.url}/events/filter", json=body, timeout=10)
    resp.raise_for_status()
    return resp.json()["events"]


def test_fleet_drift_replaced_behind_certpilots_back_is_told_once_with_an_event(tmp_path, prefect_harness,
                                                                                nginx_factory, nginx_ca, monkeypatch):
    """Fleet probe: scan 1 finds the site as recorded (nothing told); the certificate is replaced
    on the server by hand; scan 2 tells the drift once (inbox, notice, `certpilot.certificate.drift`
    event naming the certificate); scan 3 tells nothing new."""
    from flows.scan import scan

    monkeypatch.setenv("CERTPILOT_LAUNCH_MODE", "none")
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    ensure_schema(url)
    now = datetime.now(UTC)
    recorded = make_leaf(nginx_ca, [NAME], now - timedelta(days=10), now + timedelta(days=200))
    server = nginx_factory([VHost(NAME, recorded.fullchain_pem, recorded.key_pem)])
    trust = tmp_path / "trust.pem"
    trust.write_bytes(nginx_ca.root_pem)
    notifier = CollectingNotifier()
    svc = rt.local_services(database_url=url, notifiers=[notifier], vault=KeyVault(LocalMasterKey(os.urandom(32))),
                            issuers={})
    with rt.use(svc):
        cid = import_bundle(svc, cert_pem=recorded.cert_pem, key_pem=recorded.key_pem,
                            chain_pem=b"".join(recorded.chain_pems), origin=Origin.UPLOADED, level=Level.DV,
                            owner="ops@example.test", actor="test").certificate.id
        with svc.session() as s:
            deployments.add_target(s, cid, TargetKind.NGINX, name="www nginx", config={
                "files": [{"cert": str(server.cert_path(NAME)), "key": str(server.key_path(NAME))}],
                "check_argv": server.check_argv(), "reload_argv": server.reload_argv(), "trust": str(trust)},
                endpoints=[("127.0.0.1", server.port, NAME)])
        first = scan()
        assert (first.probed, first.fleet_findings, first.fleet_told) == (1, 0, 0)

        # Someone replaces the certificate on the server by hand.
        other = make_leaf(nginx_ca, [NAME], now - timedelta(days=1), now + timedelta(days=90))
        server.cert_path(NAME).write_bytes(other.fullchain_pem)
        server.key_path(NAME).write_bytes(other.key_pem)
        server.reload()
        since = datetime.now(UTC) - timedelta(seconds=5)

        second = scan()
        third = scan()
        assert (second.probed, second.fleet_findings, second.fleet_told) == (1, 1, 1)
        assert (third.probed, third.fleet_findings, third.fleet_told) == (1, 1, 0)  # still drifted, not told again
        told = [e for e in notifier.events if e.kind is EventKind.DRIFT]
        assert len(told) == 1 and told[0].certificate_id == cid
        assert other.fingerprint[:16] in told[0].body and recorded.fingerprint[:16] in told[0].body
        messages = [m for m in inbox.messages(svc) if "another certificate is served" in m.subject]
        assert len(messages) == 1
        deadline = time.monotonic() + 20  # events reach the server asynchronously
        while not (events := drift_events(since)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [(e["resource"]["prefect.resource.id"], e["resource"]["prefect.resource.name"]) for e in events] == [
            (f"certpilot.certificate.{cid}", NAME)]
