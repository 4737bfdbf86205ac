"""CSR-5 at rest: an imported private key is stored sealed, never as plaintext bytes.

Imports keys into a real SQLite file (WAL mode) through the use case and the default vault
(master key file under the home), then searches every byte of the database files for the key's
DER, its PEM body lines and its private numbers.
"""

from __future__ import annotations

import importlib
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certpilot.core.models import Origin
from certpilot.crypto.vault import KEY_FILE, default_vault, key_aad
from certpilot.operations.importing import import_certificate
from certpilot.settings import Settings
from certpilot.store.db import session_scope
from certpilot.store.repository import Repository

pki = importlib.import_module("tests.fixtures.import.pki")

CASES = ["rsa2048", "ec_p256", "encrypted_with_passphrase"]


def needles(key_pem: bytes, passphrase: bytes | None) -> dict[str, bytes]:
    """Byte sequences that would betray the key if found at rest."""
    key = serialization.load_pem_private_key(key_pem, passphrase)
    plain = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    found = {
        "pkcs8-der": key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()),
        "traditional-der": key.private_bytes(serialization.Encoding.DER,
                                             serialization.PrivateFormat.TraditionalOpenSSL,
                                             serialization.NoEncryption()),
        "pem": plain,
    }
    for i, line in enumerate(plain.splitlines()[1:-1]):
        found[f"pem-line-{i}"] = line
    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        for name, value in (("p", n.p), ("q", n.q), ("d", n.d)):
            found[f"rsa-{name}"] = value.to_bytes((value.bit_length() + 7) // 8, "big")
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        v = key.private_numbers().private_value
        found["ec-scalar"] = v.to_bytes((key.curve.key_size + 7) // 8, "big")
    return found


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    home = tmp_path_factory.mktemp("at-rest-home")
    url = f"sqlite:///{home / 'certpilot.db'}"
    vault = default_vault(Settings(home=home, master_key=None))
    corpus = pki.corpus()
    ids = {}
    for name in CASES:
        c = corpus[name]
        with session_scope(url) as s:
            r = import_certificate(s, cert_pem=c.cert, key_pem=c.key, chain_pem=c.chain, passphrase=c.passphrase,
                                   origin=Origin.UPLOADED, level="DV", brand="DigiCert", owner=None,
                                   now=pki.NOW, vault=vault)
            ids[name] = r.key_id
    return home, url, vault, ids


def raw_database(home: Path) -> bytes:
    """Every byte SQLite holds for the database: main file, WAL and shared memory."""
    return b"".join(p.read_bytes() for p in sorted(home.glob("certpilot.db*")))


def test_csr5_sqlite_file_holds_no_private_key_bytes(imported):
    """CSR-5: the raw SQLite files (db, -wal, -shm) hold no DER, PEM line or private number of any key."""
    home, url, _vault, _ids = imported
    raw = raw_database(home)
    assert b"BEGIN CERTIFICATE" in raw  # the search does see stored data (the leaf PEM is stored)
    corpus = pki.corpus()
    for name in CASES:
        c = corpus[name]
        leaked = [label for label, needle in needles(c.key, c.passphrase).items() if needle in raw]
        assert leaked == [], f"{name}: {leaked}"
    assert b"PRIVATE KEY" not in raw


def test_csr5_sqlite_file_after_checkpoint_holds_no_key(imported):
    """CSR-5: also once the WAL is checkpointed into the main file."""
    home, url, _vault, _ids = imported
    with closing(sqlite3.connect(home / "certpilot.db")) as conn:
        busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0
    raw = (home / "certpilot.db").read_bytes()
    for name in CASES:
        c = pki.corpus()[name]
        assert [k for k, v in needles(c.key, c.passphrase).items() if v in raw] == []


def test_csr5_stored_key_opens_with_home_master_key(imported):
    """CSR-5: the sealed key opens back to the imported key with the 0600 master key file of the home."""
    home, url, vault, ids = imported
    assert stat.S_IMODE((home / KEY_FILE).stat().st_mode) == 0o600
    again = default_vault(Settings(home=home, master_key=None))  # a new process would read the file
    corpus = pki.corpus()
    for name in CASES:
        with session_scope(url, readonly=True) as s:
            repo = Repository(s)
            sealed = repo.get_sealed_key(ids[name])
            _alg, public_fp = repo.key_info(ids[name])
        opened = again.open(sealed, key_aad(public_fp))
        original = serialization.load_pem_private_key(corpus[name].key, corpus[name].passphrase,
                                                      unsafe_skip_rsa_key_validation=True)
        assert serialization.load_pem_private_key(opened, None, unsafe_skip_rsa_key_validation=True
                                                  ).private_numbers() == original.private_numbers()
        assert b"ENCRYPTED" not in opened  # stored decrypted inside the envelope: deployable without a passphrase
