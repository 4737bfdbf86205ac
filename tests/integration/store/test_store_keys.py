"""The keys table holds sealed blobs only (CSR-5): no plaintext column, no plaintext bytes."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from helpers_store import NOW, cert
from sqlalchemy import inspect, select, text

from certpilot.core.errors import NotFoundError
from certpilot.core.models import KeyAlgorithm
from certpilot.crypto.vault import KeyVault, LocalMasterKey, SealedKey
from certpilot.store.db import get_engine, session_scope
from certpilot.store.repository import Repository
from certpilot.store.tables import KeyRow


def _key_material():
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    digest = hashes.Hash(hashes.SHA256())
    digest.update(key.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo))
    return pem, der, scalar, digest.finalize().hex()


def test_csr5_keys_table_never_holds_plaintext(store_url):
    """CSR-5: only ciphertext, nonce and wrapped DEK are stored; the raw row holds no key bytes."""
    pem, der, scalar, public_fp = _key_material()
    vault = KeyVault(LocalMasterKey(os.urandom(32)))
    sealed = vault.seal(pem, aad=public_fp.encode())
    with session_scope(store_url) as s:
        repo = Repository(s)
        key_id = repo.put_key(sealed, KeyAlgorithm.EC_P256, public_fp, now=NOW)
        repo.add_certificate(cert("c-1"), key_id=key_id, now=NOW)

    columns = {c["name"] for c in inspect(get_engine(store_url)).get_columns("keys")}
    assert columns == {"id", "algorithm", "public_fingerprint", "ciphertext", "nonce", "wrapped_dek",
                       "provider", "created_at"}
    with session_scope(store_url, readonly=True) as s:
        raw = s.execute(select(KeyRow.__table__)).one()
        dump = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in raw)
        for secret in (pem, der, scalar, b"PRIVATE KEY"):
            assert secret not in dump
        # Not in any other table either (e.g. a PEM column of certificates).
        for table in ("certificates", "audit_log"):
            rows = s.execute(text(f"SELECT * FROM {table}")).all()
            blob = repr(rows).encode()
            assert b"PRIVATE KEY" not in blob and scalar.hex().encode() not in blob

        repo = Repository(s)
        back = repo.get_sealed_key(key_id)
        assert back == sealed and isinstance(back, SealedKey)
        assert repo.key_info(key_id) == ("EC-P256", public_fp)
        assert repo.get_certificate("c-1").key_id == key_id
        assert vault.open(back, aad=public_fp.encode()) == pem
        with pytest.raises(NotFoundError):
            repo.get_sealed_key("missing")
