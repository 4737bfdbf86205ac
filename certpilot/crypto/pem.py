"""PEM parsing with refusals an operator can act on (UP-3).

Splits PEM text into typed blocks, loads certificates and private keys, and tells what was
found when it is not what was expected (DER, a CSR, a key where a certificate belongs,
truncated or corrupted blocks). Every failure is a `BadInputError` with an import `Reason` and
a sentence saying what to do instead. Private-key bytes never appear in a message.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from certpilot.core.errors import BadInputError, Reason
from certpilot.core.limits import MAX_INPUT_BYTES, MAX_PEM_BLOCKS, MAX_PEM_LABEL, check_size
from certpilot.core.models import KeyAlgorithm
from certpilot.crypto.kdf import check_encrypted_key_cost

# One marker line part: BEGIN or END and a bounded label. Scanning for markers (and pairing them
# in one pass) is linear in the input; a lazy BEGIN...END regex with a back-reference is
# quadratic on many BEGIN lines without END (issue 15: 8,000 of them took 26 s).
_MARKER = re.compile(rb"-----(BEGIN|END) ([A-Z0-9 ]{1,%d})-----" % MAX_PEM_LABEL)

KEY_LABELS = frozenset({"PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "DSA PRIVATE KEY",
                        "ENCRYPTED PRIVATE KEY", "OPENSSH PRIVATE KEY"})

_WHAT = {
    "CERTIFICATE": "a certificate",
    "TRUSTED CERTIFICATE": "an OpenSSL 'TRUSTED CERTIFICATE' (convert with `openssl x509 -in f -out cert.pem`)",
    "CERTIFICATE REQUEST": "a certificate signing request (CSR)",
    "NEW CERTIFICATE REQUEST": "a certificate signing request (CSR)",
    "PUBLIC KEY": "a public key",
    "RSA PUBLIC KEY": "a public key",
    "X509 CRL": "a certificate revocation list (CRL)",
    "PKCS7": "a PKCS#7 bundle (extract with `openssl pkcs7 -print_certs -in f -out cert.pem`)",
    "CMS": "a CMS/PKCS#7 bundle (extract with `openssl pkcs7 -print_certs -in f -out cert.pem`)",
}

RSA_SIZES = {2048: KeyAlgorithm.RSA2048, 3072: KeyAlgorithm.RSA3072, 4096: KeyAlgorithm.RSA4096}
EC_CURVES = {"secp256r1": KeyAlgorithm.EC_P256, "secp384r1": KeyAlgorithm.EC_P384}


@dataclass(frozen=True)
class PemBlock:
    """One `-----BEGIN label----- ... -----END label-----` block, exactly as given."""

    label: str
    data: bytes

    def __repr__(self) -> str:  # a block may be a private key: never show its contents
        return f"PemBlock(label={self.label!r}, {len(self.data)} bytes)"


def describe(label: str) -> str:
    """A human name for a PEM label (`'CERTIFICATE REQUEST'` → 'a certificate signing request (CSR)')."""
    if label in KEY_LABELS:
        return "a private key"
    return _WHAT.get(label, f"a PEM block of type '{label}'")


def as_bytes(data: bytes | str | None) -> bytes:
    """Normalize file contents given as text or bytes to bytes (None → b"")."""
    if data is None:
        return b""
    return data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)


def split_pem(data: bytes | str, *, what: str, der_hint: str,
              p12_hint: str = "openssl pkcs12 -in f.pfx -nokeys -out cert.pem",
              limit: int = MAX_INPUT_BYTES) -> list[PemBlock]:
    """Split PEM text into blocks, refusing what is not PEM at all.

    Args:
        data: the file's contents.
        what: the input's role for messages, e.g. "--cert" or "the key".
        der_hint: the openssl command that converts DER input of this kind to PEM.
        p12_hint: the openssl command that extracts this kind of input from a PKCS#12 file.
        limit: the largest input accepted, in bytes.

    Linear in the input's size; text outside the blocks (openssl's "Bag Attributes", comments)
    is ignored. A UTF-8 BOM is text outside the blocks; UTF-16/32 input is refused by name.

    Raises:
        BadInputError(BAD_PEM): empty input, binary (DER) input, UTF-16/32 text, no PEM block,
            or a block that starts and never ends (truncated file).
        BadInputError(INPUT_TOO_LARGE): more than `limit` bytes or `MAX_PEM_BLOCKS` blocks.
    """
    check_size(data, what=what, limit=limit)
    raw = as_bytes(data)
    if not raw.strip():
        raise BadInputError(f"{what} is empty: give the PEM file's contents.", Reason.BAD_PEM)
    if raw[:1] == b"\x30" and b"-----BEGIN" not in raw:
        # ASN.1 SEQUENCE tag: DER (a certificate, a key or a PKCS#12 bundle), not PEM text.
        raise BadInputError(
            f"{what} looks like DER (binary), not PEM; convert it with `{der_hint}` "
            f"(a PKCS#12 .pfx/.p12 file: `{p12_hint}`).",
            Reason.BAD_PEM,
        )
    _refuse_foreign_encoding(raw, what)
    blocks = _pair_markers(raw, what)
    if not blocks:
        raise BadInputError(
            f"{what} holds no PEM block (no '-----BEGIN ...-----' line): it is not a PEM file.",
            Reason.BAD_PEM,
        )
    return blocks


def _pair_markers(raw: bytes, what: str) -> list[PemBlock]:
    """Pair BEGIN/END markers in one pass; stop at the block limit (linear time, bounded work)."""
    blocks: list[PemBlock] = []
    open_label: bytes | None = None
    open_at = 0
    for m in _MARKER.finditer(raw):
        kind, label = m.group(1), m.group(2)
        if kind == b"BEGIN":
            if open_label is not None:
                _truncated(what, open_label)
            open_label, open_at = label, m.start()
            continue
        if open_label is None or label != open_label:
            _truncated(what, label if open_label is None else open_label)
        blocks.append(PemBlock(label.decode("ascii"), raw[open_at:m.end()]))
        open_label = None
        if len(blocks) > MAX_PEM_BLOCKS:
            raise BadInputError(f"{what} holds more than {MAX_PEM_BLOCKS} PEM blocks, the most certpilot "
                                "accepts in one input; give only the certificate, its key and its intermediates.",
                                Reason.INPUT_TOO_LARGE)
    if open_label is not None:
        _truncated(what, open_label)
    return blocks


def _truncated(what: str, label: bytes) -> None:
    raise BadInputError(
        f"{what} is truncated or damaged: a '-----BEGIN {label.decode('ascii')}-----' line has no matching "
        "END line (or the reverse); copy the whole file again.",
        Reason.BAD_PEM,
    )


def _refuse_foreign_encoding(raw: bytes, what: str) -> None:
    """PEM is ASCII: a UTF-16/UTF-32 file (Windows editors save PEM so) is refused by name."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or b"-\x00-\x00-\x00-\x00-\x00" in raw[:4096] \
            or b"\x00-\x00-\x00-\x00-\x00-" in raw[:4096]:
        raise BadInputError(
            f"{what} is UTF-16 or UTF-32 text, not PEM (ASCII); save it as UTF-8/ASCII "
            "(e.g. `iconv -f UTF-16 -t ASCII in.pem > out.pem`).",
            Reason.BAD_PEM,
        )


def load_certificates(data: bytes | str, *, what: str) -> list[x509.Certificate]:
    """Load every certificate of a PEM input, refusing any other kind of block.

    Args:
        data: PEM text holding one or more certificates.
        what: the input's role for messages ("--cert", "--chain").

    Raises:
        BadInputError(BAD_PEM): not PEM, a block that is not a certificate (naming what it is),
            or a certificate block that does not decode (truncated or corrupted).
    """
    blocks = split_pem(data, what=what, der_hint="openssl x509 -inform der -in cert.der -out cert.pem")
    certs: list[x509.Certificate] = []
    for n, block in enumerate(blocks, 1):
        if block.label != "CERTIFICATE":
            raise BadInputError(
                f"{what} holds {describe(block.label)} where a certificate was expected "
                f"(block {n}, '-----BEGIN {block.label}-----'); give the certificate "
                "('-----BEGIN CERTIFICATE-----') instead.",
                Reason.BAD_PEM,
            )
        try:
            certs.append(x509.load_pem_x509_certificate(block.data))
        except ValueError:
            raise BadInputError(
                f"{what}: certificate block {n} does not decode (truncated or corrupted base64/DER); "
                "copy the certificate file again.",
                Reason.BAD_PEM,
            ) from None
    return certs


def load_private_key(data: bytes | str, *, passphrase: bytes | str | None, what: str = "the key"
                     ) -> tuple[PrivateKeyTypes, bool]:
    """Load the one private key of a PEM input.

    Args:
        data: PEM text holding exactly one private key (PKCS#8, PKCS#1 or SEC1; maybe encrypted).
        passphrase: the passphrase of an encrypted key, or None.
        what: the input's role for messages.

    Returns:
        The key and whether the passphrase was needed.

    Raises:
        BadInputError(BAD_PEM): not PEM, not a key, several keys, undecodable.
        BadInputError(ENCRYPTED_KEY): encrypted and no passphrase, or the passphrase is wrong.
    """
    blocks = split_pem(data, what=what, der_hint="openssl pkey -inform der -in key.der -out key.pem",
                       p12_hint="openssl pkcs12 -in f.pfx -nocerts -nodes -out key.pem")
    keys = [b for b in blocks if b.label in KEY_LABELS]
    others = [b for b in blocks if b.label not in KEY_LABELS]
    if others:
        raise BadInputError(
            f"{what} holds {describe(others[0].label)} where a private key was expected; "
            "give the private key ('-----BEGIN PRIVATE KEY-----') instead.",
            Reason.BAD_PEM,
        )
    if len(keys) != 1:
        raise BadInputError(f"{what} holds {len(keys)} private keys; give exactly one.", Reason.BAD_PEM)
    block = keys[0]
    if block.label == "OPENSSH PRIVATE KEY":
        raise BadInputError(
            f"{what} is an OpenSSH key, not a TLS key; give the certificate's PEM private key.",
            Reason.BAD_PEM,
        )
    pw = as_bytes(passphrase) if passphrase else None
    encrypted = block.label == "ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in block.data
    if block.label == "ENCRYPTED PRIVATE KEY":
        # Before asking for or trying the passphrase: a hostile KDF cost is refused unread.
        check_encrypted_key_cost(block.data, what=what)
    if encrypted and pw is None:
        raise BadInputError(
            f"{what} is encrypted and no passphrase was given: pass its passphrase "
            "(`--key-passphrase-env VAR`, VAR holding it) or decrypt it first (`openssl pkey -in key.pem -out plain.pem`).",
            Reason.ENCRYPTED_KEY,
        )
    try:
        key = serialization.load_pem_private_key(block.data, password=pw if encrypted else None)
    except ValueError:
        # Never chain the library's exception: nothing of the key may reach a message or log.
        if encrypted:
            raise BadInputError(
                f"{what} could not be decrypted with the passphrase given: check the passphrase.",
                Reason.ENCRYPTED_KEY,
            ) from None
        raise BadInputError(
            f"{what} does not decode as a private key (truncated or corrupted); copy the key file again.",
            Reason.BAD_PEM,
        ) from None
    except (TypeError, UnsupportedAlgorithm):
        raise BadInputError(
            f"{what} could not be loaded (unsupported or damaged private key).", Reason.BAD_PEM
        ) from None
    return key, encrypted


def fingerprint(cert: x509.Certificate | bytes) -> str:
    """The certificate's SHA-256 fingerprint: SHA-256 of its DER, lowercase hex without colons.

    The one definition: the inventory stores it, deployments compare it with what a target
    holds, the TLS probe with what an endpoint serves (VER-1), so all must compute it alike.

    Args:
        cert: a parsed certificate, or its DER bytes (as a TLS handshake hands them over).
    """
    der = bytes(cert) if isinstance(cert, bytes | bytearray | memoryview) else cert.public_bytes(
        serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def public_key_fingerprint(public_key: PublicKeyTypes) -> str:
    """A key pair's public fingerprint: SHA-256 of the SubjectPublicKeyInfo DER, lowercase hex.

    The one definition (not secret): it keys the vault's associated data (`vault.key_aad`) and
    links a CSR, a key and a certificate (`keys.public_fingerprint`, `csr.csr_public_fingerprint`).
    """
    return hashlib.sha256(spki_der(public_key)).hexdigest()


def spki_der(public_key: PublicKeyTypes) -> bytes:
    """The public key's SubjectPublicKeyInfo in DER (what 'same key' compares)."""
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def key_algorithm_of(public_key: PublicKeyTypes) -> KeyAlgorithm:
    """Map a public key to the `KeyAlgorithm` certpilot accepts.

    Accepted: RSA 2048/3072/4096, EC P-256/P-384.

    Raises:
        BadInputError(WEAK_KEY): RSA under 2048 bits, another RSA size, another curve, DSA,
            Ed25519/Ed448 or any other key type (named in the message).
    """
    if isinstance(public_key, rsa.RSAPublicKey):
        size = public_key.key_size
        if size in RSA_SIZES:
            return RSA_SIZES[size]
        if size < 2048:
            raise BadInputError(
                f"the key is RSA-{size}: too small (at least 2048 bits); reissue the certificate "
                "with an RSA-2048+ or EC P-256 key.",
                Reason.WEAK_KEY,
            )
        raise BadInputError(
            f"the key is RSA-{size}: certpilot supports RSA 2048, 3072 and 4096 bits and EC P-256/P-384; "
            "reissue the certificate with one of them.",
            Reason.WEAK_KEY,
        )
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curve = public_key.curve.name
        if curve in EC_CURVES:
            return EC_CURVES[curve]
        raise BadInputError(
            f"the key is EC on curve {curve}: certpilot supports EC P-256/P-384 and RSA 2048/3072/4096; "
            "reissue the certificate with one of them.",
            Reason.WEAK_KEY,
        )
    kind = {dsa.DSAPublicKey: "DSA", ed25519.Ed25519PublicKey: "Ed25519", ed448.Ed448PublicKey: "Ed448"}
    name = next((v for k, v in kind.items() if isinstance(public_key, k)), type(public_key).__name__)
    raise BadInputError(
        f"the key is {name}, which browsers or certpilot do not support for TLS certificates; reissue the "
        "certificate with an RSA-2048+ or EC P-256/P-384 key.",
        Reason.WEAK_KEY,
    )


def to_pem(cert: x509.Certificate) -> str:
    """The certificate as PEM text."""
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def private_key_pem(key: PrivateKeyTypes) -> bytes:
    """The key as unencrypted PKCS#8 PEM (what the vault seals; never logged)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def export_pfx(leaf_pem: bytes, chain_pems: tuple[bytes, ...] | list[bytes], key_pem: bytes | None, *, name: str,
               password: bytes | None = None) -> bytes:
    """A PKCS#12 (PFX) bundle of the leaf, its intermediates and, when given, its key (DEP-4).

    Args:
        leaf_pem: the certificate.
        chain_pems: the intermediates.
        key_pem: the private key PEM, or None for a certificate-only bundle.
        name: the friendly name stored in the bundle.
        password: encrypts the bundle when given (the best algorithm the library offers).
    """
    from cryptography.hazmat.primitives.serialization import pkcs12

    key = serialization.load_pem_private_key(key_pem, password=None) if key_pem else None
    enc = (serialization.BestAvailableEncryption(password) if password
           else serialization.NoEncryption())
    return pkcs12.serialize_key_and_certificates(
        name.encode(), key, x509.load_pem_x509_certificate(leaf_pem),  # type: ignore[arg-type]
        [x509.load_pem_x509_certificate(p) for p in chain_pems] or None, enc)
