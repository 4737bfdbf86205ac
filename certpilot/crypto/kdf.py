"""Bounds on the key-derivation cost of an encrypted private key, checked before decrypting it.

An `ENCRYPTED PRIVATE KEY` (PKCS#8 EncryptedPrivateKeyInfo) names its own KDF parameters: a
hostile file can ask for 2^31 PBKDF2 iterations or scrypt with gigabytes of memory, and the
library would spend minutes or exhaust memory before saying the passphrase is wrong. This
module reads those parameters with a minimal, bounded DER reader and refuses costs far above
what any tool writes (openssl's default is 2,048 PBKDF2 iterations or scrypt N=16384, r=8).
"""

from __future__ import annotations

import base64
import binascii

from certpilot.core.errors import BadInputError, Reason

MAX_PBKDF2_ITERATIONS = 1_000_000
"""PBKDF2 iterations (OWASP's 2023 advice for SHA-256 is 600,000)."""
MAX_SCRYPT_BYTES = 128 * 1024 * 1024
"""scrypt's memory, 128·N·r·p bytes (openssl's default asks 16 MiB)."""

_PBES2 = "1.2.840.113549.1.5.13"
_PBKDF2 = "1.2.840.113549.1.5.12"
_SCRYPT = "1.3.6.1.4.1.11591.4.11"
_PKCS12_PBE_PREFIX = "1.2.840.113549.1.12.1."
_PKCS5_PBE1 = {"1.2.840.113549.1.5.3", "1.2.840.113549.1.5.6", "1.2.840.113549.1.5.10", "1.2.840.113549.1.5.11"}


class _Der:
    """Reads DER TLVs from bytes; every length is bounded by what remains (no recursion)."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def read(self, tag: int | None = None) -> tuple[int, bytes]:
        if self.pos + 2 > len(self.data):
            raise ValueError("short")
        t, n = self.data[self.pos], self.data[self.pos + 1]
        self.pos += 2
        if n & 0x80:
            count = n & 0x7F
            if count == 0 or count > 4 or self.pos + count > len(self.data):
                raise ValueError("length")
            n = int.from_bytes(self.data[self.pos:self.pos + count], "big")
            self.pos += count
        if self.pos + n > len(self.data) or (tag is not None and t != tag):
            raise ValueError("tlv")
        value = self.data[self.pos:self.pos + n]
        self.pos += n
        return t, value

    def more(self) -> bool:
        return self.pos < len(self.data)


def _oid(value: bytes) -> str:
    if not value:
        raise ValueError("oid")
    parts = [value[0] // 40, value[0] % 40]
    n = 0
    for b in value[1:]:
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(n)
            n = 0
    return ".".join(map(str, parts))


def _int(value: bytes) -> int:
    if not value or len(value) > 16:
        # Larger than 2^127: no legitimate parameter; say it is too big without decoding it.
        return 1 << 128
    return int.from_bytes(value, "big", signed=False)


def _seq(data: bytes) -> _Der:
    return _Der(_Der(data).read(0x30)[1])


def check_encrypted_key_cost(pem_block: bytes, *, what: str) -> None:
    """Refuse an encrypted PKCS#8 key whose KDF would cost more than the bounds above.

    Args:
        pem_block: the whole `-----BEGIN ENCRYPTED PRIVATE KEY----- … -----END …-----` block.
        what: the input's role for messages.

    Raises:
        BadInputError(INPUT_TOO_LARGE): PBKDF2 iterations, or scrypt memory, above the bounds;
            the message names the parameter (never key material).
        BadInputError(BAD_PEM): the block's DER does not parse.
    """
    try:
        body = b"".join(ln for ln in pem_block.splitlines()[1:-1] if b":" not in ln)
        der = base64.b64decode(body, validate=False)
        outer = _seq(der)
        algorithm = _Der(outer.read(0x30)[1])
        oid = _oid(algorithm.read(0x06)[1])
        params = algorithm.read()[1] if algorithm.more() else b""
        _check_scheme(oid, params, what)
    except (ValueError, IndexError, binascii.Error):
        raise BadInputError(f"{what} does not decode as an encrypted private key (truncated or corrupted); "
                            "copy the key file again.", Reason.BAD_PEM) from None


def _check_scheme(oid: str, params: bytes, what: str) -> None:
    if oid == _PBES2:
        p = _Der(params)
        kdf = _Der(p.read(0x30)[1])
        kdf_oid = _oid(kdf.read(0x06)[1])
        kdf_params = _Der(kdf.read(0x30)[1])
        kdf_params.read(0x04)  # salt
        if kdf_oid == _PBKDF2:
            _refuse_iterations(_int(kdf_params.read(0x02)[1]), what)
        elif kdf_oid == _SCRYPT:
            n, r, par = (_int(kdf_params.read(0x02)[1]) for _ in range(3))
            if 128 * n * r * par > MAX_SCRYPT_BYTES:
                raise BadInputError(
                    f"{what} is encrypted with scrypt parameters (N={min(n, 1 << 64)}, r={min(r, 1 << 64)}, "
                    f"p={min(par, 1 << 64)}) that would need more than {MAX_SCRYPT_BYTES // 2**20} MiB to decrypt; "
                    "re-encrypt it with ordinary parameters (`openssl pkcs8 -topk8 -in key.pem -out new.pem`) "
                    "or give it decrypted.", Reason.INPUT_TOO_LARGE)
        return
    if oid.startswith(_PKCS12_PBE_PREFIX) or oid in _PKCS5_PBE1:
        p = _Der(params)
        p.read(0x04)
        _refuse_iterations(_int(p.read(0x02)[1]), what)


def _refuse_iterations(iterations: int, what: str) -> None:
    if iterations > MAX_PBKDF2_ITERATIONS:
        shown = iterations if iterations < 1 << 64 else "more than 2^64"
        raise BadInputError(
            f"{what} is encrypted with {shown} key-derivation iterations, more than the "
            f"{MAX_PBKDF2_ITERATIONS} certpilot will compute; re-encrypt it with ordinary parameters "
            "(`openssl pkcs8 -topk8 -in key.pem -out new.pem`) or give it decrypted.",
            Reason.INPUT_TOO_LARGE)
