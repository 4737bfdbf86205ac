"""Fixtures for operation-level order tests: a fresh SQLite store and an importer of real PEMs."""

from __future__ import annotations

import base64
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization


def at(s: str) -> datetime:
    """`YYYY-MM-DD` as midnight UTC."""
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


class Store:
    """A test's store: sessions on its own SQLite file, and a way to import certificates."""

    def __init__(self, url: str, ca):
        self.url = url
        self.ca = ca

    @contextmanager
    def session(self):
        from certpilot.store.db import session_scope

        with session_scope(self.url) as s:
            yield s

    def import_cert(self, names: list[str], not_before: str, not_after: str, *, origin: str = "official",
                    level: str = "DV", brand: str = "DigiCert", now: str = "2025-09-01") -> str:
        """Import a real certificate signed by the session's test CA; returns its id."""
        from certpilot.crypto.vault import default_vault
        from certpilot.demo import issue_leaf
        from certpilot.operations.importing import import_certificate

        ca_key, ca_cert = self.ca
        key, cert = issue_leaf(ca_key, ca_cert, names, at(not_before), at(not_after))
        with self.session() as s:
            r = import_certificate(
                s, cert_pem=cert.public_bytes(serialization.Encoding.PEM),
                key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()),
                chain_pem=ca_cert.public_bytes(serialization.Encoding.PEM), origin=origin, level=level,
                brand=brand, owner="ops@example.com", now=at(now), vault=default_vault(),
            )
            return r.certificate.id


@pytest.fixture(scope="session")
def orders_ca():
    from certpilot.demo import make_ca

    return make_ca("certpilot orders test CA", at("2025-01-01"), 3650)


@pytest.fixture
def store(tmp_path, monkeypatch, orders_ca) -> Store:
    """An isolated store under tmp_path (schema migrated on first use)."""
    from certpilot.settings import get_settings
    from certpilot.store.db import reset_engines

    monkeypatch.setenv("CERTPILOT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CERTPILOT_DATABASE_URL", raising=False)
    monkeypatch.setenv("CERTPILOT_MASTER_KEY", base64.b64encode(bytes(range(32))).decode())
    get_settings.cache_clear()
    reset_engines()
    yield Store(f"sqlite:///{tmp_path / 'home' / 'certpilot.db'}", orders_ca)
    get_settings.cache_clear()
    reset_engines()
