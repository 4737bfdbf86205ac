"""A whole certpilot over real servers, for flow tests: Pebble + BIND (ACME DNS-01), nginx
(the deployment target, probed by TLS), a SQLite store and a vault of the test's own.

`site` imports an official DV certificate that nginx serves for `www.example.test` (expiring
in `days_left` days, in real time: Pebble and the probe see the real clock), records nginx as
its deployment target, and installs a `Services` whose default issuer is Pebble.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest

from certpilot import runtime as rt
from certpilot.adapters.dns.checks import caa_refusal, resolver_for, wait_until_visible
from certpilot.adapters.dns.rfc2136 import Rfc2136Provider
from certpilot.adapters.issuers.acme import AcmeIssuer
from certpilot.adapters.probe.verifier import ProbeVerifier
from certpilot.core.deployment import TargetKind
from certpilot.core.models import CertType, Level, Origin, Spec
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.operations import deployments, orders
from certpilot.operations.importing import import_certificate
from certpilot.store.db import ensure_schema, reset_engines, session_scope
from certpilot.store.ports import SqlAcmeAccountStore
from tests.servers.certs import make_leaf
from tests.servers.nginx import VHost

SITE = "www.example.test"
BRAND = "DigiCert"


class CollectingNotifier:
    """A Notifier (same Protocol as email/webhook) that keeps what it was sent."""

    name = "collect"

    def __init__(self):
        self.events = []

    def send(self, event) -> None:
        self.events.append(event)


@dataclass
class Site:
    """What `site` built: ids, servers and the runtime in force."""

    cert_id: str
    db_url: str
    db_path: Path
    nginx: object
    runtime: rt.Services
    notifier: CollectingNotifier
    issuer: AcmeIssuer
    old_fingerprint: str
    extra: dict = field(default_factory=dict)

    def session(self):
        return session_scope(self.db_url)


def build_site(tmp_path: Path, *, pebble, bind_server, nginx_factory, nginx_ca, days_left: int = 20,
               quota: int = 3, managed: int = 2, name: str = SITE) -> Site:
    """Import an official DV certificate served by a fresh nginx and install a Services (Pebble)."""
    db_path = tmp_path / "certpilot.db"
    db_url = f"sqlite:///{db_path}"
    ensure_schema(db_url)
    now = datetime.now(UTC)
    old = make_leaf(nginx_ca, [name], not_before=now - timedelta(days=365 - days_left),
                    not_after=now + timedelta(days=days_left))
    nginx = nginx_factory([VHost(name, old.fullchain_pem, old.key_pem)])
    vault = KeyVault(LocalMasterKey(os.urandom(32)))
    trust = tmp_path / "pebble-root.pem"  # the target trusts this run's Pebble root (VER-1 strict)
    trust.write_text(pebble.roots()[0])
    with session_scope(db_url) as s:
        res = import_certificate(s, cert_pem=old.cert_pem, key_pem=old.key_pem,
                                 chain_pem=b"".join(old.chain_pems), origin=Origin.OFFICIAL, level=Level.DV,
                                 brand=BRAND, owner="ops@example.test", now=now, vault=vault)
        cert_id = res.certificate.id
        deployments.add_target(s, cert_id, TargetKind.NGINX, name="nginx www",
                               config={"files": [{"cert": str(nginx.cert_path(name)), "key": str(nginx.key_path(name))}],
                                       "check_argv": nginx.check_argv(), "reload_argv": nginx.reload_argv(),
                                       "trust": str(trust)},
                               endpoints=[("127.0.0.1", nginx.port, name)])
        if quota:
            orders.add_quota(s, Spec(brand=BRAND, level=Level.DV, cert_type=CertType.SINGLE), quota, now=now)
        if managed:
            orders.add_managed(s, managed, now=now)
    sessions = partial(session_scope, db_url)
    dns = Rfc2136Provider(bind_server.host, bind_server.port, zones=bind_server.zones, keyname=bind_server.tsig_name,
                          secret=bind_server.tsig_secret, algorithm=bind_server.tsig_algorithm)
    resolver = resolver_for(bind_server.nameservers)
    issuer = AcmeIssuer(pebble.directory_url, accounts=SqlAcmeAccountStore(sessions), vault=vault, ca_bundle=str(pebble.ca_bundle),
                        contact_email="ops@example.test", dns_providers=[dns], publicly_trusted=False,
                        caa_check=lambda names: caa_refusal(names, pebble.ca_identifiers, resolver),
                        wait_visible=lambda fqdn, value: wait_until_visible(fqdn, value, bind_server.nameservers, 10),
                        validation_timeout=30)
    notifier = CollectingNotifier()
    runtime = rt.local_services(database_url=db_url, vault=vault, issuers={"acme/pebble": issuer},
                               default_issuer="acme/pebble", dns_providers=[dns], notifiers=[notifier],
                               verifier=ProbeVerifier(deadline=10.0), nameservers=bind_server.nameservers)
    runtime.poll_seconds = 10.0
    return Site(cert_id=cert_id, db_url=db_url, db_path=db_path, nginx=nginx, runtime=runtime, notifier=notifier,
                issuer=issuer, old_fingerprint=res.certificate.fingerprint_sha256)


@pytest.fixture
def site(tmp_path, pebble, bind_server, nginx_factory, nginx_ca, prefect_harness):
    """A served site and its runtime installed for the test (see module docstring)."""
    built = build_site(tmp_path, pebble=pebble, bind_server=bind_server, nginx_factory=nginx_factory,
                       nginx_ca=nginx_ca)
    with rt.use(built.runtime):
        yield built
    reset_engines()
