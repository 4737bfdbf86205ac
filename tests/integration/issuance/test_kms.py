"""AWS KMS master key provider against moto_server (CSR-5)."""

from __future__ import annotations

import pytest

from certpilot.core.models import KeyAlgorithm
from certpilot.crypto.keys import generate_key, open_key, private_key_pem, public_fingerprint, store_key
from certpilot.crypto.kms import KmsMasterKey
from certpilot.crypto.vault import KeyVault, LocalMasterKey, MasterKeyProvider, VaultError
from certpilot.store.repository import Repository

pytestmark = pytest.mark.servers


@pytest.fixture
def kms(moto_server):
    client = moto_server.client("kms")
    key_id = client.create_key(Description="certpilot test")["KeyMetadata"]["KeyId"]
    return client, key_id


def test_csr5_kms_envelope_seals_and_opens(kms, sessions):
    """CSR-5: keys sealed under a KMS-wrapped data key open again, and only with the same context."""
    client, key_id = kms
    provider = KmsMasterKey(client, key_id, context={"app": "certpilot", "env": "test"})
    assert isinstance(provider, MasterKeyProvider)
    vault = KeyVault(provider)
    key = generate_key(KeyAlgorithm.EC_P256)
    with sessions() as s:
        key_id_, fp = store_key(key, vault=vault, repo=Repository(s))
    with sessions() as s:
        repo = Repository(s)
        sealed = repo.get_sealed_key(key_id_)
        assert sealed.provider == "aws-kms"
        assert private_key_pem(key) not in sealed.ciphertext + sealed.wrapped_dek
        assert public_fingerprint(open_key(key_id_, fp, vault=vault, repo=repo)) == fp
        # Another encryption context cannot unwrap the data key.
        other = KeyVault(KmsMasterKey(client, key_id, context={"app": "certpilot", "env": "prod"}))
        with pytest.raises(VaultError) as info:
            open_key(key_id_, fp, vault=other, repo=repo)
        assert "InvalidCiphertextException" in str(info.value)


def test_csr5_kms_wrap_is_fresh_per_key_and_local_keys_still_open(kms):
    """CSR-5: each seal wraps a fresh data key; a vault migrating to KMS still opens local-sealed keys."""
    client, key_id = kms
    local = LocalMasterKey(b"\x01" * 32)
    vault = KeyVault(KmsMasterKey(client, key_id), local)
    a, b = vault.seal(b"k1", b"aad"), vault.seal(b"k1", b"aad")
    assert a.wrapped_dek != b.wrapped_dek and a.ciphertext != b.ciphertext
    old = KeyVault(local).seal(b"old key", b"aad")
    assert vault.open(old, b"aad") == b"old key"
    assert vault.open(a, b"aad") == b"k1"
    dek, wrapped = KmsMasterKey(client, key_id).new_data_key()
    assert len(dek) == 32 and KmsMasterKey(client, key_id).unwrap(wrapped) == dek


def test_kms_unknown_key_is_a_vault_error_without_secrets(moto_server):
    """A KMS refusal is a VaultError naming the key and the AWS code, never the data key."""
    provider = KmsMasterKey(moto_server.client("kms"), "alias/does-not-exist")
    dek = b"\x07" * 32
    with pytest.raises(VaultError) as info:
        provider.wrap(dek)
    assert "alias/does-not-exist" in str(info.value) and "NotFoundException" in str(info.value)
    assert repr(dek) not in str(info.value)
