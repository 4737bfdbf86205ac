"""The Prometheus exporter: the page parsed by prometheus_client's parser, and a real Prometheus
(Debian's) scraping `certpilot metrics` on loopback and answering PromQL over it."""

from __future__ import annotations

import os
import secrets
import time
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from certpilot.core.deployment import TargetKind
from certpilot.core.models import Certificate, CertType, Level, Origin, Spec, Status
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.metrics_server import start_sidecar
from certpilot.operations import deployments, orders
from certpilot.operations.metrics import exposition
from certpilot.runtime import local_services
from certpilot.store import fleet_queries
from certpilot.store.db import ensure_schema
from certpilot.store.repository import Repository
from certpilot.store.tables_deploy import DeploymentTaskRow
from tests.servers.base import free_port, missing

NOW = datetime.now(UTC).replace(microsecond=0)
# id -> (days left, state, origin); ids expiring within 30 days (and not expired): e10, e20.
CERTS = {"e10": (10, Status.ISSUED, Origin.OFFICIAL), "e20": (20, Status.UPLOADED, Origin.UPLOADED),
         "e45": (45, Status.ISSUED, Origin.PRIVATE_CA), "e400": (400, Status.ISSUED, Origin.OFFICIAL),
         "gone": (-3, Status.ISSUED, Origin.OFFICIAL), "wait": (None, Status.PENDING_APPLICATION, Origin.OFFICIAL)}


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    """Services on a fresh store holding CERTS, one target with a pending deployment, one probe
    observation, two deployment tasks (the newest rolled back) and 3 quota of one specification."""
    url = f"sqlite:///{tmp_path_factory.mktemp('metrics') / 'certpilot.db'}"
    ensure_schema(url)
    svc = local_services(database_url=url, vault=KeyVault(LocalMasterKey(os.urandom(32))), issuers={})
    with svc.session() as s:
        repo = Repository(s)
        for cid, (days, state, origin) in CERTS.items():
            na = NOW + timedelta(days=days) if days is not None else None
            repo.add_certificate(Certificate(
                id=cid, common_name=f'{cid}.example.test', names=[f"{cid}.example.test"], cert_type=CertType.SINGLE,
                origin=origin, level=Level.OV if cid == "e20" else Level.DV, not_before=NOW - timedelta(days=30),
                not_after=na, fingerprint_sha256=secrets.token_hex(32) if na else None, state=state,
                key_held=False), now=NOW)
        deployments.add_target(s, "e10", TargetKind.FILES, config={"directory": "/nonexistent"}, name='web "1"',
                               target_id="tgt-web1", endpoints=[("127.0.0.1", 1, "e10.example.test")], now=NOW)
        fleet_queries.record_observation(s, {
            "endpoint": "127.0.0.1:1/e10.example.test", "host": "127.0.0.1", "port": 1, "sni": "e10.example.test",
            "target_id": "tgt-web1", "certificate_id": "e10", "outcome": "ok", "finding": "ok", "detail": "",
            "earliest_expiry": NOW + timedelta(days=9), "observed_at": NOW})
        orders.add_quota(s, Spec(brand="DigiCert", level=Level.DV, cert_type=CertType.SINGLE), 3, now=NOW)
        s.flush()
        for i, state in enumerate(("succeeded", "rolled_back")):  # the newest task's state is the one shown
            s.add(DeploymentTaskRow(id=f"dep-{i}", certificate_id=("e45", "e400")[i], target_id="tgt-web1",
                                    state=state, progress=100, details="", attempts=1,
                                    created_at=NOW + timedelta(seconds=i), updated_at=NOW))
    return svc


def samples(page: bytes) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(page.decode())}


def test_metrics_page_parses_with_the_names_and_values(svc):
    """Every metric of the issue, parsed by prometheus_client's own parser, with exact values."""
    got = samples(exposition(svc, at=NOW))
    expiry = {s.labels["id"]: (s.value, s.labels) for s in got["certpilot_certificate_expiration_timestamp_seconds"]}
    assert set(expiry) == {"e10", "e20", "e45", "e400", "gone"}  # dated states only
    assert expiry["e10"] == ((NOW + timedelta(days=10)).timestamp(), {
        "id": "e10", "name": "e10.example.test", "origin": "official", "level": "DV"})
    due = {s.labels["id"]: s.value for s in got["certpilot_certificate_renewal_due_timestamp_seconds"]}
    assert due["e400"] == (NOW + timedelta(days=400 - 60)).timestamp()
    status = {s.labels["status"]: s.value for s in got["certpilot_certificate_status"]}
    assert (status["valid"], status["expiring_soon"], status["expired"], status["pending_application"]) == (1, 3, 1, 1)
    assert [(s.labels, s.value) for s in got["certpilot_probe_ssl_earliest_cert_expiry"]] == [
        ({"endpoint": "127.0.0.1:1/e10.example.test"}, (NOW + timedelta(days=9)).timestamp())]
    quota = {s.labels["spec"]: s.value for s in got["certpilot_quota_remaining"]}
    assert quota == {"DigiCert/DV/single": 3, "managed": 0}
    assert [(s.labels, s.value) for s in got["certpilot_deployment_last_status"]] == [
        ({"target": "tgt-web1", "name": 'web "1"', "status": "rolled_back"}, 1)]


@pytest.fixture(scope="module")
def scraped(svc, tmp_path_factory):
    """`certpilot metrics` served (the sidecar `certpilot up` runs) and a real Prometheus scraping it."""
    from tests.servers.prometheus import start_prometheus

    port = free_port()
    server = start_sidecar(svc, f"127.0.0.1:{port}")
    try:
        prom = start_prometheus(tmp_path_factory.mktemp("prometheus"), f"127.0.0.1:{port}")
    except FileNotFoundError as exc:
        server.shutdown()
        missing(f"prometheus ({exc})")
    yield prom
    prom.stop()
    server.shutdown()


def test_metrics_real_prometheus_promql_expiring_within_30_days(scraped):
    """A real Prometheus scrapes the exporter; PromQL for certificates expiring within 30 days
    (and not expired) returns exactly e10 and e20."""
    query = ("certpilot_certificate_expiration_timestamp_seconds - time() < 30 * 86400 "
             "and certpilot_certificate_expiration_timestamp_seconds - time() > 0")
    deadline = time.monotonic() + 20
    ids: list[str] = []
    while time.monotonic() < deadline:
        ids = sorted(r["metric"]["id"] for r in scraped.query(query))
        if ids:
            break
        time.sleep(0.2)
    assert scraped.target_health() == "up"
    assert ids == ["e10", "e20"]
    by_status = {r["metric"]["status"]: float(r["value"][1]) for r in scraped.query("certpilot_certificate_status")}
    assert by_status["expiring_soon"] == 3
