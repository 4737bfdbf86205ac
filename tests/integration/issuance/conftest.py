"""Fixtures for issuance against real servers: a store, a vault, DNS writers, ACME issuers.

Pebble, BIND and challtestsrv come from the DNS part's session fixtures (tests/servers/acme.py).
Each test gets its own SQLite file (so "the key is only encrypted in the DB" can be checked by
reading that file) and its own master key.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import httpx
import pytest

from certpilot.adapters.dns.checks import caa_refusal, resolver_for, wait_until_visible
from certpilot.adapters.dns.rfc2136 import Rfc2136Provider
from certpilot.adapters.issuers.acme import AcmeIssuer
from certpilot.core.models import Certificate, CertType, KeyAlgorithm, Origin, Status, ValidationMethod
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.store.db import reset_engines, session_scope
from certpilot.store.ports import SqlAcmeAccountStore
from certpilot.store.repository import Repository, new_id

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class ChallTestSrvDns:
    """A DnsProvider over pebble-challtestsrv's management API (its real TXT records).

    challtestsrv keeps one TXT value per name (set-txt replaces it), so use it for one name
    per challenge name; BIND (RFC 2136) covers the wildcard + base case.
    """

    name = "challtestsrv"

    def __init__(self, srv, zones: tuple[str, ...] = ("example.test",)):
        self.srv, self.zones = srv, zones

    def zone_for(self, fqdn: str) -> str | None:
        fqdn = fqdn.rstrip(".").lower()
        return next((z for z in self.zones if fqdn == z or fqdn.endswith("." + z)), None)

    def present(self, fqdn: str, value: str) -> None:
        self.srv.set_txt(fqdn, value)

    def cleanup(self, fqdn: str, value: str) -> None:
        self.srv.clear_txt(fqdn)


@pytest.fixture
def db_url(tmp_path) -> Iterator[str]:
    """A fresh SQLite database file for one test."""
    url = f"sqlite:///{tmp_path / 'issuance.db'}"
    yield url
    reset_engines()


@pytest.fixture
def sessions(db_url) -> Callable:
    """A factory of transactional sessions on the test's database."""
    return partial(session_scope, db_url)


@pytest.fixture
def vault() -> KeyVault:
    """A vault with a fresh local master key."""
    return KeyVault(LocalMasterKey(os.urandom(32)))


@pytest.fixture
def bind_dns(bind_server) -> Rfc2136Provider:
    """RFC 2136 writer for the BIND test zones."""
    return Rfc2136Provider(bind_server.host, bind_server.port, zones=bind_server.zones,
                           keyname=bind_server.tsig_name, secret=bind_server.tsig_secret,
                           algorithm=bind_server.tsig_algorithm)


def bind_issuer(pebble, bind_server, bind_dns, sessions, vault, **kw) -> AcmeIssuer:
    """An AcmeIssuer for `pebble` writing DNS-01 records into BIND, with CAA and visibility checks."""
    resolver = resolver_for(bind_server.nameservers)
    kw.setdefault("caa_check", lambda names: caa_refusal(names, pebble.ca_identifiers, resolver))
    kw.setdefault("wait_visible", lambda fqdn, value: wait_until_visible(fqdn, value, bind_server.nameservers, 10))
    return AcmeIssuer(pebble.directory_url, accounts=SqlAcmeAccountStore(sessions), vault=vault, ca_bundle=str(pebble.ca_bundle),
                      contact_email="ops@example.test", dns_providers=[bind_dns], publicly_trusted=False,
                      validation_timeout=30, **kw)


@pytest.fixture
def acme_bind(pebble, bind_server, bind_dns, sessions, vault) -> AcmeIssuer:
    """The issuer most tests use: Pebble + BIND."""
    return bind_issuer(pebble, bind_server, bind_dns, sessions, vault)


def add_certificate(sessions, names: list[str], *, alg: KeyAlgorithm = KeyAlgorithm.EC_P256,
                    method: ValidationMethod = ValidationMethod.DNS_AUTO, parent_id: str | None = None,
                    state: Status = Status.PENDING_APPLICATION, **extra) -> str:
    """Insert a certificate awaiting its application; returns its id."""
    cert_type = CertType.WILDCARD if any(n.startswith("*.") for n in names) else (
        CertType.MULTI if len(names) > 1 else CertType.SINGLE)
    cid = new_id()
    with sessions() as s:
        Repository(s).add_certificate(Certificate(
            id=cid, common_name=names[0], names=names, cert_type=cert_type, origin=Origin.OFFICIAL,
            key_algorithm=alg, state=state, validation_method=method, parent_id=parent_id, **extra), now=NOW)
    return cid


def pebble_roots(pebble) -> tuple[str, str]:
    """(root, intermediate) PEMs fetched from Pebble's management port."""
    return pebble.roots()


def db_file(db_url: str) -> Path:
    """The SQLite file behind a sqlite:/// URL."""
    return Path(db_url.removeprefix("sqlite:///"))


def order_count(pebble) -> int | None:
    """Pebble does not expose a count of orders; None (kept for symmetry with other CAs)."""
    return None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def http_get(url: str, ca_bundle) -> httpx.Response:
    return httpx.get(url, verify=str(ca_bundle), timeout=10)
