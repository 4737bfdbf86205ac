"""UP-3 and CSR-5 against both stores (SQLite file and a real PostgreSQL 15).

The import use case in the caller's transaction: a refusal leaves every table as it was, a
concurrent duplicate rolls back to the savepoint, and no column of any table holds key bytes.
"""

from __future__ import annotations

import importlib

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import inspect, select, table, text
from sqlalchemy.exc import IntegrityError

from certpilot.core.errors import BadInputError, Reason, RefusedError
from certpilot.core.models import Origin, Status
from certpilot.crypto.vault import KeyVault, LocalMasterKey, key_aad
from certpilot.operations.importing import import_certificate
from certpilot.store.db import get_engine, session_scope
from certpilot.store.repository import Repository

pki = importlib.import_module("tests.fixtures.import.pki")
VAULT = KeyVault(LocalMasterKey(bytes(range(100, 132)), source="test"))


def snapshot(url: str) -> dict[str, list[tuple]]:
    """Every row of every table, sorted: 'nothing stored changed' compares two of these."""
    engine = get_engine(url)
    names = inspect(engine).get_table_names()
    with session_scope(url, readonly=True) as s:
        return {n: sorted(map(tuple, s.execute(select(text("*")).select_from(table(n)))), key=repr)
                for n in names if n != "alembic_version"}


def do_import(url, case, **kw):
    with session_scope(url) as s:
        return import_certificate(s, cert_pem=case.cert, key_pem=case.key, chain_pem=case.chain,
                                  passphrase=case.passphrase, origin=kw.pop("origin", "uploaded"), level="DV",
                                  brand="DigiCert", owner="Ops <ops@example.com>", now=pki.NOW, vault=VAULT, **kw)


@pytest.mark.servers
def test_up3_import_refusals_leave_every_table_unchanged(store_url):
    """UP-3: after a good import, each refused import leaves every row of every table as it was."""
    corpus = pki.corpus()
    first = do_import(store_url, corpus["base"])
    before = snapshot(store_url)
    for case, reason in [("key_mismatch", Reason.KEY_MISMATCH), ("unrelated_chain", Reason.BAD_CHAIN),
                         ("der_cert", Reason.BAD_PEM), ("rsa1024", Reason.WEAK_KEY), ("no_san", Reason.NO_SAN),
                         ("encrypted_no_passphrase", Reason.ENCRYPTED_KEY), ("base", Reason.DUPLICATE)]:
        with pytest.raises((BadInputError, RefusedError)) as exc:
            do_import(store_url, corpus[case])
        assert exc.value.reason is reason, case
        assert snapshot(store_url) == before, case
    with session_scope(store_url, readonly=True) as s:
        assert Repository(s).certificate_model(first.certificate.id) == first.certificate


@pytest.mark.servers
def test_up3_concurrent_duplicate_rolls_back_key_row(store_url, monkeypatch):
    """UP-3: the unique fingerprint stops a duplicate that slipped past the check; the key row written
    before it is rolled back with the savepoint, even though the caller commits."""
    case = pki.corpus()["single"]
    do_import(store_url, case)
    before = snapshot(store_url)
    monkeypatch.setattr(Repository, "find_by_fingerprint", lambda self, fp: None)
    with session_scope(store_url) as s:
        with pytest.raises(IntegrityError):
            import_certificate(s, cert_pem=case.cert, key_pem=case.key, chain_pem=case.chain, origin="uploaded",
                               level="DV", brand="DigiCert", owner=None, now=pki.NOW, vault=VAULT)
        s.execute(text("SELECT 1"))  # the caller's transaction is still usable
    assert snapshot(store_url) == before


@pytest.mark.servers
def test_csr5_no_column_of_any_table_holds_key_bytes(store_url):
    """CSR-5: after imports, no value in any table contains the key's DER, PEM lines or PEM header."""
    corpus = pki.corpus()
    imported = {name: do_import(store_url, corpus[name]) for name in ("rsa3072", "ec_p384", "wildcard")}
    dump = repr(snapshot(store_url)).encode()
    blobs = b"".join(v if isinstance(v, bytes) else repr(v).encode()
                     for rows in snapshot(store_url).values() for row in rows for v in row)
    for name, result in imported.items():
        key = serialization.load_pem_private_key(corpus[name].key, None, unsafe_skip_rsa_key_validation=True)
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        lines = corpus[name].key.splitlines()[1:-1]
        assert der not in blobs and der[-48:] not in blobs
        assert not [ln for ln in lines if ln in dump or ln in blobs]
        assert result.certificate.state is Status.UPLOADED
    assert b"PRIVATE KEY" not in dump


@pytest.mark.servers
def test_up3_private_ca_import_round_trip(store_url):
    """A private-CA certificate: UPLOADED, not publicly trusted, owner parsed, key opens from the store."""
    case = pki.good(["10.9.8.7", "internal.example.com"])
    result = do_import(store_url, case, origin=Origin.PRIVATE_CA)
    with session_scope(store_url, readonly=True) as s:
        repo = Repository(s)
        stored = repo.certificate_model(result.certificate.id)
        sealed = repo.get_sealed_key(result.key_id)
        _alg, public_fp = repo.key_info(result.key_id)
    assert (stored.state, stored.publicly_trusted, stored.origin) == (Status.UPLOADED, False, Origin.PRIVATE_CA)
    assert (stored.owner.name, stored.owner.email) == ("Ops", "ops@example.com")
    assert VAULT.open(sealed, key_aad(public_fp)).startswith(b"-----BEGIN PRIVATE KEY-----")
