"""A store, a vault and the embedded private CA on a clock the test moves, for plan tests through the
flows (VA-1, VA-2, VA-5, PL-4, PL-7): an official DV certificate due in `days_left` days, quota and
managed credits to pay its plan, a DNS provider that holds the zone (PL-5: managed starts start
themselves; the private CA validates nothing, so it is never called)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from certpilot import runtime as rt
from certpilot.adapters.dns.rfc2136 import Rfc2136Provider
from certpilot.adapters.issuers.private_ca import PrivateCa, PrivateCaPolicy
from certpilot.core.models import CertType, Level, Origin, Spec, Status
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.operations import orders
from certpilot.operations.importing import import_certificate
from certpilot.store.db import ensure_schema, session_scope
from certpilot.store.ports import SqlPrivateCaStore
from certpilot.store.repository import Repository
from tests.servers.acme import _start_or_skip, start_pebble, stop
from tests.servers.certs import make_ca, make_leaf

BRAND = "DigiCert"
SPEC = Spec(brand=BRAND, level=Level.DV, cert_type=CertType.SINGLE)


class CollectingNotifier:
    """A Notifier (the Protocol email and webhook implement) that keeps what it is sent."""

    name = "collect"

    def __init__(self):
        self.events = []

    def send(self, event) -> None:
        self.events.append(event)


class Clock:
    """A wall clock the test moves (the CA, the scanner and the pipeline all read it); whole seconds."""

    def __init__(self):
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class PlanSite:
    """What `plan_site` made."""

    cid: str
    db_url: str
    svc: Any
    clock: Clock
    ca: PrivateCa
    extra: dict = field(default_factory=dict)

    def session(self):
        return session_scope(self.db_url)

    def plan(self) -> list:
        """The certificates renewing the original, by plan index."""
        with self.session() as s:
            return sorted(Repository(s).children(self.cid), key=lambda c: c.plan_index)

    def balances(self):
        with self.session() as s:
            return Repository(s).balances()


def plan_site(tmp_path: Path, *, name: str = "plan", days_left: int = 20, quota: int = 3, managed: int = 2,
              max_validity_days: int | None = None, common_name: str = "cov.example.test",
              origin: Origin = Origin.OFFICIAL) -> PlanSite:
    """The site (see the module docstring); the private CA signs at most `max_validity_days`.
    `origin` PRIVATE_CA imports the original as the private CA's (EL-4: reissued, no quota)."""
    db_url = f"sqlite:///{tmp_path / (name + '.db')}"
    ensure_schema(db_url)
    clock = Clock()
    now = clock()
    leaf = make_leaf(make_ca(f"{name} CA"), [common_name], not_before=now - timedelta(days=365 - days_left),
                     not_after=now + timedelta(days=days_left))
    vault = KeyVault(LocalMasterKey(os.urandom(32)))
    with session_scope(db_url) as s:
        cid = import_certificate(s, cert_pem=leaf.cert_pem, key_pem=leaf.key_pem, chain_pem=b"".join(leaf.chain_pems),
                                 origin=origin, level=Level.DV, brand=BRAND, owner="ops@example.test",
                                 now=now, vault=vault).certificate.id
        if quota:
            orders.add_quota(s, SPEC, quota, now=now)
        if managed:
            orders.add_managed(s, managed, now=now)
    ca = PrivateCa(SqlPrivateCaStore(partial(session_scope, db_url)), vault, clock=clock,
                   policy=PrivateCaPolicy(max_validity_days=max_validity_days))
    zone = Rfc2136Provider("127.0.0.1", 53, zones=["example.test"], keyname="plan-test", secret="cGxhbgAA")
    notifier = CollectingNotifier()
    svc = rt.local_services(database_url=db_url, vault=vault, issuers={"private-ca": ca}, clock=clock,
                            dns_providers=[zone], notifiers=[notifier])
    svc.poll_seconds = 0.5
    return PlanSite(cid, db_url, svc, clock, ca, extra={"notifier": notifier})


def issued(certs) -> list:
    """The issued certificates of a plan, by plan index."""
    return [c for c in certs if c.state is Status.ISSUED]


PEBBLE_VALIDITY_DAYS = 90


@pytest.fixture(scope="session")
def pebble_90d(tmp_path_factory, bind_server):
    """A Pebble for the session that signs 90-day certificates (an ACME CA's usual lifetime), resolving
    through `bind_server`: a multi-year plan on it needs several certificates (VA-5)."""
    server = _start_or_skip("pebble", start_pebble, tmp_path_factory.mktemp("pebble-90d"), bind_server.port,
                            validity_seconds=PEBBLE_VALIDITY_DAYS * 86400)
    yield server
    stop(server.proc)
