"""Test certificates made with `cryptography`: a CA (root or intermediate) and leaves, as PEMs.

Generic helpers for every test area (nginx vhosts, probes, imports, Pebble's own TLS):
`make_ca(name)` for a root, `make_ca(name, issuer=root)` for an intermediate, and
`make_leaf(ca, names, not_before, not_after, key_alg)` for a server certificate.
EC P-256 keys by default: they are generated in well under a millisecond, so a thousand
vhosts cost nothing.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_CURVES = {"EC-P256": ec.SECP256R1, "EC-P384": ec.SECP384R1}
_RSA_BITS = {"RSA-2048": 2048, "RSA-3072": 3072, "RSA-4096": 4096}


def make_key(key_alg: str = "EC-P256"):
    """A new private key of `key_alg` (a `KeyAlgorithm` value such as "EC-P256" or "RSA-2048")."""
    alg = str(key_alg)
    if alg in _CURVES:
        return ec.generate_private_key(_CURVES[alg]())
    if alg in _RSA_BITS:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[alg])
    raise ValueError(f"unknown key algorithm {alg!r}")


def key_pem(key) -> bytes:
    """Unencrypted PKCS#8 PEM of a private key (test material only)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    """PEM of a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def fingerprint(pem_or_cert: bytes | x509.Certificate) -> str:
    """SHA-256 fingerprint, lower-case hex without colons (the product's format)."""
    cert = x509.load_pem_x509_certificate(pem_or_cert) if isinstance(pem_or_cert, bytes) else pem_or_cert
    return cert.fingerprint(hashes.SHA256()).hex()


@dataclass
class TestCA:
    """A CA that signs: its certificate, key, and the chain above it (issuer first)."""

    __test__ = False  # not a pytest test class

    name: str
    cert: x509.Certificate
    key: object
    parents: list[x509.Certificate] = field(default_factory=list)

    @property
    def cert_pem(self) -> bytes:
        """This CA's certificate as PEM."""
        return cert_pem(self.cert)

    @property
    def chain_pems(self) -> list[bytes]:
        """This CA's certificate then its parents' (what a server sends above a leaf)."""
        return [cert_pem(self.cert), *(cert_pem(c) for c in self.parents)]

    @property
    def root_pem(self) -> bytes:
        """The self-signed root at the top of this CA's chain (a client's trust anchor)."""
        return cert_pem(self.parents[-1] if self.parents else self.cert)

    def __repr__(self) -> str:  # never print key material
        return f"TestCA({self.name!r})"


@dataclass
class Leaf:
    """A leaf certificate with its key and chain, as PEMs.

    `chain_pems` are the intermediates only (issuer first, the root excluded, as a server sends
    them); `fullchain_pem` is the leaf followed by those intermediates (DEP-6).
    """

    cert_pem: bytes
    key_pem: bytes
    chain_pems: list[bytes]
    not_before: datetime
    not_after: datetime
    names: list[str]

    @property
    def fullchain_pem(self) -> bytes:
        """Leaf + intermediates, the bundle a web server serves."""
        return self.cert_pem + b"".join(self.chain_pems)

    @property
    def fingerprint(self) -> str:
        """SHA-256 fingerprint of the leaf (lower-case hex)."""
        return fingerprint(self.cert_pem)

    @property
    def cert(self) -> x509.Certificate:
        """The parsed leaf."""
        return x509.load_pem_x509_certificate(self.cert_pem)

    def __repr__(self) -> str:  # never print key material
        return f"Leaf({self.names!r}, not_after={self.not_after.isoformat()})"


_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def make_ca(name: str, *, issuer: TestCA | None = None, key_alg: str = "EC-P256",
            not_before: datetime | None = None, not_after: datetime | None = None) -> TestCA:
    """A root CA (no issuer) or an intermediate CA signed by `issuer`.

    Args:
        name: the CA's common name.
        issuer: the parent CA; None makes a self-signed root.
        key_alg: key algorithm of the CA's key.
        not_before, not_after: validity; default 2020-01-01 .. 2040-01-01.
    """
    key = make_key(key_alg)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certpilot tests")])
    signer_key = issuer.key if issuer else key
    issuer_name = issuer.cert.subject if issuer else subject
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(not_after or datetime(2040, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    cert = builder.sign(signer_key, hashes.SHA256())
    parents = [issuer.cert, *issuer.parents] if issuer else []
    return TestCA(name=name, cert=cert, key=key, parents=parents)


def make_leaf(ca: TestCA, names: list[str], not_before: datetime | None = None,
              not_after: datetime | None = None, key_alg: str = "EC-P256", *, key=None) -> Leaf:
    """A server certificate for `names` (DNS names or IP addresses) signed by `ca`.

    Args:
        ca: the signing CA (root or intermediate).
        names: subjectAltName entries; the first is the common name.
        not_before, not_after: validity; default 2026-01-01 and 90 days later.
        key_alg: key algorithm for a new key (ignored when `key` is given).
        key: reuse this private key instead of generating one.
    Returns:
        a `Leaf` whose `chain_pems` are `ca` and its intermediates (the root excluded).
    """
    not_before = not_before or _EPOCH
    not_after = not_after or not_before + timedelta(days=90)
    key = key or make_key(key_alg)
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    # A server sends its intermediates, not the root: drop a self-signed top.
    chain = [ca.cert, *ca.parents]
    chain = [c for c in chain if c.issuer != c.subject]
    return Leaf(cert_pem=cert_pem(cert), key_pem=key_pem(key), chain_pems=[cert_pem(c) for c in chain],
                not_before=not_before, not_after=not_after, names=list(names))
