"""Private keys: generation, algorithm detection, fingerprints, sealing into the vault (CSR-1, CSR-5).

A private key object lives only inside one function call: it is generated, serialized, sealed
into the key vault and stored; callers get back a key id and a public fingerprint. Key bytes
never reach a log line, an exception message, a task parameter or a task result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certpilot.core.errors import BadInputError, Reason
from certpilot.core.models import KeyAlgorithm
from certpilot.crypto.pem import public_key_fingerprint
from certpilot.crypto.safefile import atomic_write
from certpilot.crypto.vault import key_aad

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

_RSA_SIZES = {KeyAlgorithm.RSA2048: 2048, KeyAlgorithm.RSA3072: 3072, KeyAlgorithm.RSA4096: 4096}
_CURVES: dict[KeyAlgorithm, type[ec.EllipticCurve]] = {
    KeyAlgorithm.EC_P256: ec.SECP256R1,
    KeyAlgorithm.EC_P384: ec.SECP384R1,
}


def generate_key(alg: KeyAlgorithm) -> PrivateKey:
    """Generate a fresh private key of algorithm `alg` (CSR-1).

    Args:
        alg: one of the supported `KeyAlgorithm` members.
    Raises:
        BadInputError(WEAK_KEY): for an algorithm certpilot does not generate.
    """
    alg = KeyAlgorithm(alg)
    if alg in _RSA_SIZES:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_SIZES[alg])
    if alg in _CURVES:
        return ec.generate_private_key(_CURVES[alg]())
    raise BadInputError(f"key algorithm {alg} is not supported; use one of "
                        f"{', '.join(a.value for a in KeyAlgorithm)}.", Reason.WEAK_KEY)


def key_algorithm_of(public_key: object) -> KeyAlgorithm | None:
    """The `KeyAlgorithm` of a public (or private) key, or None for an unsupported one."""
    if isinstance(public_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        public_key = public_key.public_key()
    if isinstance(public_key, rsa.RSAPublicKey):
        return {2048: KeyAlgorithm.RSA2048, 3072: KeyAlgorithm.RSA3072,
                4096: KeyAlgorithm.RSA4096}.get(public_key.key_size)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return {"secp256r1": KeyAlgorithm.EC_P256,
                "secp384r1": KeyAlgorithm.EC_P384}.get(public_key.curve.name)
    return None


def public_fingerprint(key: PrivateKey | PublicKey) -> str:
    """A key's public identity (`pem.public_key_fingerprint` of its public half): keys the vault's AAD."""
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else key
    return public_key_fingerprint(pub)


def private_key_pem(key: PrivateKey) -> bytes:
    """Serialize a key as unencrypted PKCS#8 PEM, only to seal it or write it 0600 (CSR-5)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_private_key(pem: bytes) -> PrivateKey:
    """Load an unencrypted PEM private key.

    Raises:
        BadInputError(BAD_PEM / WEAK_KEY): not a supported private key; the message never
        quotes the input.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        # The library's message could echo input: keep only its type.
        raise BadInputError(f"the private key could not be loaded ({type(exc).__name__}); "
                            "supply an unencrypted PEM key.", Reason.BAD_PEM) from None
    if key_algorithm_of(key) is None:
        raise BadInputError("the private key's algorithm is not supported; use RSA 2048/3072/4096 "
                            "or ECDSA P-256/P-384.", Reason.WEAK_KEY)
    return key  # type: ignore[return-value]


def write_key_file(path: str | Path, pem: bytes) -> Path:
    """Write key material to `path` with mode 0600 from the first byte on (CSR-5).

    Through `safefile.atomic_write`: an unpredictable O_EXCL|O_NOFOLLOW temp file in the
    target's directory (itself checked: no symlink, this user's or root's, not shared), then an
    atomic rename; an existing file is replaced, never written through.

    Raises:
        UnsafeLocationError: the directory is not safe for a key.
    """
    return atomic_write(path, pem, mode=0o600)


class _Vault(Protocol):
    def seal(self, key_pem: bytes, aad: bytes) -> object: ...
    def open(self, sealed: object, aad: bytes) -> bytes: ...


class _KeyStore(Protocol):
    def put_key(self, sealed: object, algorithm: KeyAlgorithm, public_fingerprint: str) -> str: ...
    def get_sealed_key(self, key_id: str) -> object: ...


def store_key(key: PrivateKey, *, vault: _Vault, repo: _KeyStore, purpose: str = "tls-key") -> tuple[str, str]:
    """Seal `key` into the vault and store it; return `(key_id, public_fingerprint)` (CSR-5).

    Args:
        key: the private key; it is serialized only to be sealed.
        vault: the `KeyVault`.
        repo: the `Repository` (its `put_key`).
        purpose: bound into the sealed blob's associated data (``tls-key``, ``acme-account``, ``ca``).
    """
    alg = key_algorithm_of(key)
    if alg is None:
        raise BadInputError("unsupported key algorithm.", Reason.WEAK_KEY)
    fp = public_fingerprint(key)
    sealed = vault.seal(private_key_pem(key), key_aad(fp, purpose))
    return repo.put_key(sealed, alg, fp), fp


def generate_and_store(alg: KeyAlgorithm, *, vault: _Vault, repo: _KeyStore,
                       purpose: str = "tls-key") -> tuple[str, str]:
    """Generate a key and seal it straight into the vault; return `(key_id, fingerprint)` (CSR-1, CSR-5)."""
    return store_key(generate_key(alg), vault=vault, repo=repo, purpose=purpose)


def open_key(key_id: str, public_fp: str, *, vault: _Vault, repo: _KeyStore,
             purpose: str = "tls-key") -> PrivateKey:
    """Unseal a stored key for immediate use (signing a CSR); never return it across a task.

    Raises:
        VaultError: the blob does not open (other master key, other key row, other purpose).
    """
    return load_private_key(vault.open(repo.get_sealed_key(key_id), key_aad(public_fp, purpose)))
