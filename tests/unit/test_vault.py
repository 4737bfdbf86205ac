"""The key vault: AES-GCM envelope, master key from env or a 0600 file (CSR-5)."""

from __future__ import annotations

import base64
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certpilot.crypto.vault import (
    ENV_VAR,
    KEY_FILE,
    KeyVault,
    LocalMasterKey,
    SealedKey,
    VaultError,
    default_vault,
    key_aad,
)
from certpilot.settings import Settings

MASTER_A = bytes(range(32))
MASTER_B = bytes(range(1, 33))
AAD = key_aad("ab" * 32)


@pytest.fixture(scope="module")
def key_pem() -> bytes:
    k = ec.generate_private_key(ec.SECP256R1())
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())


def _body(pem: bytes) -> bytes:
    """The base64 body of a PEM, without BEGIN/END lines and newlines."""
    return b"".join(line for line in pem.splitlines() if not line.startswith(b"-----"))


def test_csr5_seal_open_round_trip(key_pem):
    """CSR-5: a sealed key opens back to the same PEM with the same aad."""
    vault = KeyVault(LocalMasterKey(MASTER_A))
    sealed = vault.seal(key_pem, AAD)
    assert sealed.provider == "local"
    assert len(sealed.nonce) == 12
    assert vault.open(sealed, AAD) == key_pem


def test_csr5_ciphertext_holds_no_plaintext(key_pem):
    """CSR-5: no part of the key (PEM, base64 body, DER) appears in any stored field."""
    vault = KeyVault(LocalMasterKey(MASTER_A))
    sealed = vault.seal(key_pem, AAD)
    der = serialization.load_pem_private_key(key_pem, None).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    stored = sealed.ciphertext + sealed.nonce + sealed.wrapped_dek + sealed.provider.encode()
    body = _body(key_pem)
    for needle in (key_pem, body[:32], body[-32:], der[:32], der[-32:], MASTER_A):
        assert needle not in stored


def test_csr5_fresh_dek_and_nonce_per_seal(key_pem):
    """CSR-5: two seals of one key share neither nonce, wrapped DEK nor ciphertext."""
    vault = KeyVault(LocalMasterKey(MASTER_A))
    a, b = vault.seal(key_pem, AAD), vault.seal(key_pem, AAD)
    assert a.nonce != b.nonce
    assert a.wrapped_dek != b.wrapped_dek
    assert a.ciphertext != b.ciphertext


def test_csr5_sealed_key_repr_shows_sizes_only(key_pem):
    sealed = KeyVault(LocalMasterKey(MASTER_A)).seal(key_pem, AAD)
    text = repr(sealed) + str(sealed)
    assert text.startswith("SealedKey(provider='local', ciphertext=")
    assert "bytes" in text
    assert sealed.ciphertext[:8].hex() not in text and repr(sealed.ciphertext[:8]) not in text


def test_csr5_other_master_key_cannot_open(key_pem):
    """CSR-5: another master key fails with a clear error naming both key ids, no key bytes."""
    sealed = KeyVault(LocalMasterKey(MASTER_A)).seal(key_pem, AAD)
    other = LocalMasterKey(MASTER_B, source="test key B")
    with pytest.raises(VaultError) as exc:
        KeyVault(other).open(sealed, AAD)
    msg = str(exc.value)
    assert LocalMasterKey(MASTER_A).key_id in msg and other.key_id in msg
    assert "restore the master key" in msg
    for secret in (MASTER_A.hex(), MASTER_B.hex(), base64.b64encode(MASTER_A).decode(), key_pem.decode()):
        assert secret not in msg
    assert exc.value.__cause__ is None and exc.value.__suppress_context__


def test_csr5_wrong_aad_cannot_open(key_pem):
    """A sealed blob moved to another key row (another public fingerprint) does not open."""
    vault = KeyVault(LocalMasterKey(MASTER_A))
    sealed = vault.seal(key_pem, AAD)
    with pytest.raises(VaultError, match="belongs to another key or was altered"):
        vault.open(sealed, key_aad("cd" * 32))


def test_csr5_tampered_ciphertext_refused(key_pem):
    vault = KeyVault(LocalMasterKey(MASTER_A))
    s = vault.seal(key_pem, AAD)
    bad = SealedKey(bytes([s.ciphertext[0] ^ 1]) + s.ciphertext[1:], s.nonce, s.wrapped_dek, s.provider)
    with pytest.raises(VaultError, match="altered"):
        vault.open(bad, AAD)


def test_unknown_provider_named(key_pem):
    """The provider name stored with a key picks who opens it; an unconfigured one is named."""
    s = KeyVault(LocalMasterKey(MASTER_A)).seal(key_pem, AAD)
    kms = SealedKey(s.ciphertext, s.nonce, s.wrapped_dek, "aws-kms")
    with pytest.raises(VaultError, match="provider 'aws-kms', which is not configured"):
        KeyVault(LocalMasterKey(MASTER_A)).open(kms, AAD)


def test_second_provider_opens_old_keys(key_pem):
    """A vault sealing with a new provider still opens keys sealed by an old one it is given."""

    class Renamed(LocalMasterKey):
        name = "other"

    old = KeyVault(LocalMasterKey(MASTER_A)).seal(key_pem, AAD)
    vault = KeyVault(Renamed(MASTER_B), LocalMasterKey(MASTER_A))
    assert vault.open(old, AAD) == key_pem
    assert vault.seal(key_pem, AAD).provider == "other"


def test_csr5_key_file_created_0600(tmp_path, key_pem):
    """CSR-5: the master key file is created on first use, mode 0600, and reused after."""
    home = tmp_path / "home"
    first = LocalMasterKey.from_env_or_file(home, env={})
    path = home / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(path.read_bytes().strip())) == 32
    second = LocalMasterKey.from_env_or_file(home, env={})
    assert first.key_id == second.key_id
    sealed = KeyVault(first).seal(key_pem, AAD)
    assert KeyVault(second).open(sealed, AAD) == key_pem
    assert [p.name for p in home.iterdir()] == [KEY_FILE]  # no temporary file left behind


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o620])
def test_csr5_group_or_world_readable_key_file_refused(tmp_path, mode):
    """CSR-5: a key file others can read is refused, telling the user to chmod 600."""
    LocalMasterKey.from_env_or_file(tmp_path, env={})
    path = tmp_path / KEY_FILE
    os.chmod(path, mode)
    secret = path.read_bytes().strip().decode()
    with pytest.raises(VaultError) as exc:
        LocalMasterKey.from_env_or_file(tmp_path, env={})
    assert str(exc.value) == (f"the master key file {path} is accessible by group or others (mode {mode:04o}); "
                              f"run `chmod 600 {path}` and try again.")
    assert secret not in str(exc.value)


def test_csr5_env_master_key_wins_over_file(tmp_path, key_pem):
    """CERTPILOT_MASTER_KEY is used when set; no file is created."""
    env = {ENV_VAR: base64.b64encode(MASTER_A).decode()}
    mk = LocalMasterKey.from_env_or_file(tmp_path, env=env)
    assert mk.key_id == LocalMasterKey(MASTER_A).key_id
    assert not (tmp_path / KEY_FILE).exists()
    sealed = KeyVault(mk).seal(key_pem, AAD)
    assert KeyVault(LocalMasterKey(MASTER_A)).open(sealed, AAD) == key_pem


@pytest.mark.parametrize("value, fragment", [
    ("not base64 at all!", "is not valid base64"),
    (base64.b64encode(b"short").decode(), "decodes to 5 bytes, not 32"),
    (base64.b64encode(bytes(48)).decode(), "decodes to 48 bytes, not 32"),
])
def test_bad_env_master_key_is_a_clear_error(tmp_path, value, fragment):
    with pytest.raises(VaultError) as exc:
        LocalMasterKey.from_env_or_file(tmp_path, env={ENV_VAR: value})
    assert fragment in str(exc.value)
    assert ENV_VAR in str(exc.value) and "generate one with" in str(exc.value)
    assert value not in str(exc.value)


def test_default_vault_from_settings(tmp_path, key_pem):
    """default_vault reads the master key from settings, else the home's key file."""
    env_vault = default_vault(Settings(home=tmp_path, master_key=base64.b64encode(MASTER_A).decode()))
    sealed = env_vault.seal(key_pem, AAD)
    assert KeyVault(LocalMasterKey(MASTER_A)).open(sealed, AAD) == key_pem
    file_vault = default_vault(Settings(home=tmp_path / "h", master_key=None))
    assert stat.S_IMODE((tmp_path / "h" / KEY_FILE).stat().st_mode) == 0o600
    assert file_vault.open(file_vault.seal(key_pem, AAD), AAD) == key_pem


def test_master_key_repr_hides_key():
    mk = LocalMasterKey(MASTER_A, source="unit")
    assert repr(mk) == f"LocalMasterKey(key_id={mk.key_id!r}, source='unit')"
    assert MASTER_A.hex() not in repr(mk)


def test_a_master_key_kept_in_the_vault_block_still_opens_old_keys_and_says_to_move_it():
    """A block-held master key (written by certpilot before `setup`) still opens the keys sealed
    under it, and every use warns that the API's auth string exposes it, saying where to move it;
    the warning never carries the key."""
    import logging

    from blocks import KeyVaultBlock

    secret = base64.b64encode(MASTER_A).decode()
    sealed = KeyVault(LocalMasterKey(MASTER_A)).seal(b"old private key bytes", b"aad")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # the certpilot loggers may not propagate to pytest's root handler
    logger = logging.getLogger("certpilot.vault")
    logger.addHandler(handler)
    try:
        vault = KeyVaultBlock(master_key=secret).vault()
    finally:
        logger.removeHandler(handler)
    assert vault.open(sealed, b"aad") == b"old private key bytes"
    [record] = records
    text = record.getMessage()
    assert record.levelno == logging.WARNING
    assert "CERTPILOT_MASTER_KEY" in text and "kms_key_id" in text and secret not in text
