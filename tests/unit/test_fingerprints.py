"""The one certificate fingerprint and the one public-key fingerprint (VER-1, CSR-5): every
path to them (parsed certificate, DER from a handshake, key, CSR) gives the same string."""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from certpilot.core.models import KeyAlgorithm
from certpilot.crypto.csr import build_csr, csr_public_fingerprint
from certpilot.crypto.keys import generate_key, public_fingerprint
from certpilot.crypto.pem import fingerprint, public_key_fingerprint
from tests.servers.certs import make_ca, make_leaf


def test_ver1_certificate_fingerprint_from_the_certificate_or_its_der():
    """VER-1: the inventory's fingerprint of a certificate equals the probe's of the DER served."""
    leaf = make_leaf(make_ca("fp root"), ["fp.example.test"])
    der = leaf.cert.public_bytes(serialization.Encoding.DER)
    expected = leaf.cert.fingerprint(hashes.SHA256()).hex()
    assert fingerprint(leaf.cert) == fingerprint(der) == fingerprint(bytearray(der)) == expected
    assert expected == hashlib.sha256(der).hexdigest() and len(expected) == 64 and expected == expected.lower()
    assert fingerprint(x509.load_pem_x509_certificate(leaf.cert_pem)) == expected


def test_csr5_public_fingerprint_is_one_definition_for_key_csr_and_certificate():
    """CSR-5: the key's public fingerprint (the vault's AAD) is the same from the private key, its
    public half and a CSR built with it."""
    key = generate_key(KeyAlgorithm.EC_P256)
    csr_pem = build_csr(key, ["k.example.test"])
    fp = public_key_fingerprint(key.public_key())
    assert public_fingerprint(key) == public_fingerprint(key.public_key()) == csr_public_fingerprint(csr_pem) == fp
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert fp == hashlib.sha256(spki).hexdigest()
