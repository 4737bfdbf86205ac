"""Many due certificates renewed end to end on the single-machine default, for the launcher's and
the scanner's flow tests: the embedded private CA issues, a files target per site is served over
TLS by SNI (`certpilot.serve.DemoTlsServer`, the endpoint `certpilot up` serves its demo with),
the TLS probe verifies, a SQLite store.

`fleet(n)` imports `n` official DV certificates due in 20 days (real time: the probe and the CA
see the real clock), each with a files target holding its current bundle, and `n` quota; the
`renewal/renewal` deployment is registered in the test harness without a work pool (nothing
polls it: the in-process launcher executes its runs).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import func, select

from certpilot import runtime as rt
from certpilot.adapters.issuers.private_ca import PrivateCa
from certpilot.core.models import CertType, Level, Origin, Spec
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.operations import orders
from certpilot.operations.importing import import_certificate
from certpilot.store.db import ensure_schema, reset_engines, session_scope
from certpilot.store.ports import SqlPrivateCaStore
from certpilot.store.tables import LedgerRow, OrderRow
from tests.servers.base import free_port
from tests.servers.certs import make_ca, make_leaf

BRAND = "DigiCert"
SPEC = Spec(brand=BRAND, level=Level.DV, cert_type=CertType.SINGLE)


class CollectingNotifier:
    """A Notifier (the Protocol email and webhook implement) that keeps what it is sent."""

    name = "collect"

    def __init__(self) -> None:
        self.events: list = []
        self._lock = threading.Lock()

    def send(self, event) -> None:
        with self._lock:
            self.events.append(event)


@dataclass
class Fleet:
    """What `fleet` built."""

    db_url: str
    runtime: rt.Services
    notifier: CollectingNotifier
    cert_ids: list[str]
    names: list[str]
    deployment_id: object = None
    extra: dict = field(default_factory=dict)

    def session(self):
        return session_scope(self.db_url)

    def counts(self) -> dict[str, int]:
        """Orders and ledger debits in the store (exactly-once checks)."""
        with session_scope(self.db_url, readonly=True) as s:
            return {"orders": s.execute(select(func.count()).select_from(OrderRow)).scalar_one(),
                    "ledger": s.execute(select(func.count()).select_from(LedgerRow)).scalar_one()}


def build_fleet(tmp_path: Path, n: int, *, days_left: int = 20, prefix: str | None = None,
                quota: int | None = None, master_key: bytes | None = None) -> Fleet:
    """`n` due official DV certificates served by a files target each (module docstring); the
    names carry a prefix of their own (the harness, and its runs, outlive one test)."""
    import uuid

    prefix = prefix or f"s{uuid.uuid4().hex[:6]}-"
    from certpilot.demo_targets import serve_site
    from certpilot.serve import DemoTlsServer

    db_url = f"sqlite:///{tmp_path / 'fleet.db'}"
    ensure_schema(db_url)
    now = datetime.now(UTC)
    ca = make_ca("launch test CA")
    master_key = master_key or os.urandom(32)
    vault = KeyVault(LocalMasterKey(master_key))
    names = [f"{prefix}{i:03d}.example.test" for i in range(n)]
    ids = []
    with session_scope(db_url) as s:
        for name in names:
            leaf = make_leaf(ca, [name], not_before=now - timedelta(days=365 - days_left),
                             not_after=now + timedelta(days=days_left))
            ids.append(import_certificate(s, cert_pem=leaf.cert_pem, key_pem=leaf.key_pem,
                                          chain_pem=b"".join(leaf.chain_pems), origin=Origin.OFFICIAL, level=Level.DV,
                                          brand=BRAND, owner="ops@example.test", now=now,
                                          vault=vault).certificate.id)
        if quota is None or quota > 0:
            orders.add_quota(s, SPEC, n if quota is None else quota, now=now)
    issuer = PrivateCa(SqlPrivateCaStore(partial(session_scope, db_url)), vault, clock=lambda: datetime.now(UTC))
    notifier = CollectingNotifier()
    runtime = rt.local_services(database_url=db_url, vault=vault, issuers={"private-ca": issuer},
                                default_issuer="private-ca", notifiers=[notifier])
    tls = DemoTlsServer(tmp_path / "deploy", port=free_port())
    tls.start()
    with runtime.session() as s:  # each site as it is served today: a files target with its bundle
        for cid, name in zip(ids, names, strict=True):
            serve_site(runtime, s, cid, name, tmp_path / "deploy", port=tls.port, trust="private-ca")
    return Fleet(db_url=db_url, runtime=runtime, notifier=notifier, cert_ids=ids, names=names,
                 extra={"tls": tls, "master_key": master_key})


@pytest.fixture(scope="session")
def renewal_deployment(prefect_harness):
    """The `renewal/renewal` deployment in the harness (no work pool: nothing polls it); its id."""
    from flows.renewal import renewal

    return renewal.to_deployment(name="renewal", tags=["certpilot"]).apply()


@pytest.fixture
def in_process(monkeypatch, renewal_deployment) -> Iterator[object]:
    """The launch mode `certpilot up` uses (from the environment, as in production)."""
    monkeypatch.setenv("CERTPILOT_LAUNCH_MODE", "in-process")
    yield renewal_deployment


def flow_runs_of(deployment_id, *, names: list[str] | None = None) -> list:
    """Every flow run of the deployment (optionally only those with these names)."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterName,
    )

    runs: list = []
    with get_client(sync_client=True) as client:
        flt = FlowRunFilter(name=FlowRunFilterName(any_=names)) if names else None
        while True:
            page = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                                         flow_run_filter=flt, limit=200, offset=len(runs))
            runs += page
            if len(page) < 200:
                return runs


class ProcessStarts:
    """Counts process starts (subprocess, multiprocessing, fork) while active."""

    def __init__(self, monkeypatch) -> None:
        import multiprocessing
        import subprocess

        self.count = 0
        popen_init = subprocess.Popen.__init__
        mp_start = multiprocessing.process.BaseProcess.start
        fork = os.fork

        def counting_popen(this, *a, **kw):
            self.count += 1
            return popen_init(this, *a, **kw)

        def counting_start(this, *a, **kw):
            self.count += 1
            return mp_start(this, *a, **kw)

        def counting_fork():
            self.count += 1
            return fork()

        monkeypatch.setattr(subprocess.Popen, "__init__", counting_popen)
        monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", counting_start)
        monkeypatch.setattr(os, "fork", counting_fork)


def fleet_fixture(n: int, **kw):
    """A pytest fixture building a fleet of `n` (`build_fleet` options) with the harness, its
    services installed."""

    @pytest.fixture
    def _fleet(tmp_path, prefect_harness):
        built = build_fleet(tmp_path, n, **kw)
        with rt.use(built.runtime):
            yield built
        reset_engines()

    return _fleet
