"""Served chains that a strict verifier must refuse, one per reason, for nginx and judge tests.

`bad_chains(name, now)` returns, for one SNI name, a `BadChain` per fault: what nginx serves
(`served_pem`: leaf first), its key, and the fault the prober must name. Every chain is trusted
only through `BadChains.root` (the good test root), so the good one (`good`) verifies and each bad
one differs from it by exactly its fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certpilot.core.verification import TrustFault
from tests.servers.certs import Leaf, TestCA, cert_pem, key_pem, make_ca, make_key, make_leaf


@dataclass
class BadChain:
    """One served chain: leaf (+ whatever is served after it), the key, the expected fault."""

    fault: TrustFault
    served_pem: bytes
    key_pem: bytes
    leaf_pem: bytes

    def __repr__(self) -> str:  # never print key material
        return f"BadChain({self.fault.value})"


@dataclass
class BadChains:
    """The good chain and every bad one for one name, all under the `root` test CA."""

    root: TestCA
    inter: TestCA
    good: Leaf
    bad: dict[TrustFault, BadChain]


def _leaf(issuer_name: x509.Name, signer, subject_cn: str, names: list[str] | None, now: datetime, *,
          ca: bool = False, key=None, eku=ExtendedKeyUsageOID.SERVER_AUTH) -> tuple[x509.Certificate, object]:
    key = key or make_key("EC-P256")
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
               .issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=60))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                              critical=False))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                                        critical=False)
    return builder.sign(signer, hashes.SHA256()), key


def bad_chains(name: str, now: datetime) -> BadChains:
    """Every bad chain for `name` at `now` (see the module doc)."""
    root = make_ca("badchain root")
    inter = make_ca("badchain intermediate", issuer=root)
    good = make_leaf(inter, [name], now - timedelta(days=1), now + timedelta(days=60))
    inter_pem = inter.cert_pem
    bad: dict[TrustFault, BadChain] = {}

    def add(fault: TrustFault, leaf: x509.Certificate, key, *after: bytes) -> None:
        bad[fault] = BadChain(fault, cert_pem(leaf) + b"".join(after), key_pem(key), cert_pem(leaf))

    # A leaf signed by another leaf (CA:FALSE) that the good intermediate issued.
    not_ca = make_leaf(inter, [f"notaca.{name}"], now - timedelta(days=1), now + timedelta(days=60))
    not_ca_key = _load_key(not_ca.key_pem)
    leaf, key = _leaf(not_ca.cert.subject, not_ca_key, name, [name], now)
    add(TrustFault.ISSUER_NOT_CA, leaf, key, not_ca.cert_pem, inter_pem)
    # An intermediate that expired yesterday (the leaf itself is in date).
    old_inter = make_ca("badchain expired intermediate", issuer=root, not_before=now - timedelta(days=400),
                        not_after=now - timedelta(days=1))
    leaf, key = _leaf(old_inter.cert.subject, old_inter.key, name, [name], now)
    add(TrustFault.EXPIRED_INTERMEDIATE, leaf, key, old_inter.cert_pem)
    # CN only, no subjectAltName.
    leaf, key = _leaf(inter.cert.subject, inter.key, name, None, now)
    add(TrustFault.NO_SAN, leaf, key, inter_pem)
    # Another name.
    leaf, key = _leaf(inter.cert.subject, inter.key, f"other.{name}", [f"other.{name}"], now)
    add(TrustFault.WRONG_NAME, leaf, key, inter_pem)
    # The leaf alone: the intermediate is missing.
    leaf, key = _leaf(inter.cert.subject, inter.key, name, [name], now)
    add(TrustFault.INCOMPLETE, leaf, key)
    # Self-signed.
    key = make_key("EC-P256")
    leaf, key = _leaf(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), key, name, [name], now, key=key)
    add(TrustFault.SELF_SIGNED, leaf, key)
    # A complete chain up to a root nobody trusts (served, as misconfigured servers do).
    rogue_root = make_ca("badchain rogue root")
    rogue = make_ca("badchain rogue intermediate", issuer=rogue_root)
    leaf, key = _leaf(rogue.cert.subject, rogue.key, name, [name], now)
    add(TrustFault.UNTRUSTED_ROOT, leaf, key, rogue.cert_pem, rogue_root.cert_pem)
    # For TLS clients only (extendedKeyUsage clientAuth).
    leaf, key = _leaf(inter.cert.subject, inter.key, name, [name], now, eku=ExtendedKeyUsageOID.CLIENT_AUTH)
    add(TrustFault.NOT_SERVER_AUTH, leaf, key, inter_pem)
    return BadChains(root=root, inter=inter, good=good, bad=bad)


def _load_key(pem: bytes):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return load_pem_private_key(pem, password=None)
