"""Keys and CSRs: generation per algorithm, CSR checks (CSR-1, CSR-2, CSR-4, CSR-5)."""

from __future__ import annotations

import stat
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from certpilot.core.errors import Reason
from certpilot.core.models import KeyAlgorithm
from certpilot.crypto.csr import build_csr, canonical_name, check_csr, csr_names, load_csr
from certpilot.crypto.keys import (
    generate_key,
    key_algorithm_of,
    load_private_key,
    private_key_pem,
    public_fingerprint,
    write_key_file,
)


@cache
def key(alg: KeyAlgorithm):
    """One key per algorithm for the module (RSA-4096 generation takes a while)."""
    return generate_key(alg)


@pytest.mark.parametrize("alg, kind, size", [
    (KeyAlgorithm.RSA2048, "rsa", 2048),
    (KeyAlgorithm.RSA3072, "rsa", 3072),
    (KeyAlgorithm.RSA4096, "rsa", 4096),
    (KeyAlgorithm.EC_P256, "ec", 256),
    (KeyAlgorithm.EC_P384, "ec", 384),
])
def test_csr1_generate_key_of_each_algorithm(alg, kind, size):
    """CSR-1: a system-generated key has exactly the requested algorithm."""
    k = key(alg)
    assert k.key_size == size
    assert key_algorithm_of(k) is alg
    assert key_algorithm_of(k.public_key()) is alg
    assert type(k).__module__.split(".")[-1] == kind


@pytest.mark.parametrize("alg", list(KeyAlgorithm))
def test_csr4_system_csr_passes_its_own_check(alg):
    """CSR-4: a CSR built by the system is checked too, and passes."""
    csr = build_csr(key(alg), ["www.example.test", "example.test"])
    assert check_csr(csr, ["example.test", "www.example.test"], alg) is None
    parsed = load_csr(csr)
    assert parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "www.example.test"
    assert csr_names(parsed) == ["www.example.test", "example.test"]


@pytest.mark.parametrize("order_names, csr_names_, expected", [
    (["a.example.test"], ["A.Example.Test."], None),                         # case, trailing dot
    (["*.example.test", "example.test"], ["example.test", "*.example.test"], None),  # order-free
    (["bücher.example.test"], ["xn--bcher-kva.example.test"], None),          # IDNA
    (["a.example.test", "b.example.test"], ["a.example.test"], Reason.CSR_NAMES),
    (["a.example.test"], ["a.example.test", "evil.test"], Reason.CSR_NAMES),
])
def test_csr4_names_must_equal_the_orders(order_names, csr_names_, expected):
    """CSR-4: the CSR's names equal the order's, normalized; otherwise CSR_NAMES."""
    csr = build_csr(key(KeyAlgorithm.EC_P256), csr_names_)
    refusal = check_csr(csr, order_names, KeyAlgorithm.EC_P256)
    assert (refusal.reason if refusal else None) is expected
    if refusal:
        assert "build the CSR for exactly" in refusal.message


def test_csr4_names_refusal_says_which_names():
    """CSR-4: the refusal names the missing and the extra names."""
    csr = build_csr(key(KeyAlgorithm.EC_P256), ["a.example.test", "evil.test"])
    refusal = check_csr(csr, ["a.example.test", "b.example.test"], KeyAlgorithm.EC_P256)
    assert refusal.message == ("the CSR's names differ from the order's (missing b.example.test; "
                               "not in the order: evil.test); build the CSR for exactly "
                               "a.example.test, b.example.test.")


@pytest.mark.parametrize("csr_alg, original_alg", [
    (KeyAlgorithm.RSA2048, KeyAlgorithm.EC_P256),
    (KeyAlgorithm.EC_P384, KeyAlgorithm.EC_P256),
    (KeyAlgorithm.RSA3072, KeyAlgorithm.RSA2048),
])
def test_csr2_key_algorithm_must_equal_the_originals(csr_alg, original_alg):
    """CSR-2: a supplied CSR with another key algorithm than the original's cannot be submitted."""
    csr = build_csr(key(csr_alg), ["a.example.test"])
    refusal = check_csr(csr, ["a.example.test"], original_alg)
    assert refusal.reason is Reason.CSR_ALGORITHM
    assert refusal.rule == "CSR-2"
    assert refusal.message.startswith(f"the CSR's key is {csr_alg.value} but the original certificate's "
                                      f"is {original_alg.value}")


def test_csr4_bad_signature_is_refused():
    """CSR-4: a CSR whose signature does not verify is CSR_INVALID."""
    # An RSA PKCS#1 v1.5 signature is the last 256 bytes of the DER: flip one of them.
    der = bytearray(x509.load_pem_x509_csr(build_csr(key(KeyAlgorithm.RSA2048), ["a.example.test"]))
                    .public_bytes(serialization.Encoding.DER))
    der[-10] ^= 0xFF
    refusal = check_csr(bytes(der), ["a.example.test"], KeyAlgorithm.RSA2048)
    assert refusal.reason is Reason.CSR_INVALID
    assert refusal.message.startswith("the CSR's signature does not verify")


def test_csr4_garbage_is_refused():
    """CSR-4: input that is not a CSR is CSR_INVALID with a sentence saying what to supply."""
    refusal = check_csr(b"not a csr", ["a.example.test"], None)
    assert refusal.reason is Reason.CSR_INVALID
    assert "supply a PEM 'CERTIFICATE REQUEST'" in refusal.message


def test_csr4_cn_only_csr_names():
    """CSR-4: a CSR without SAN is judged by its CN."""
    k = key(KeyAlgorithm.EC_P256)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a.example.test")]))
           .sign(k, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    assert check_csr(csr, ["a.example.test"], KeyAlgorithm.EC_P256) is None


@pytest.mark.parametrize("raw, canon", [
    ("WWW.Example.TEST.", "www.example.test"),
    ("*.Example.test", "*.example.test"),
    ("münchen.test", "xn--mnchen-3ya.test"),
    ("192.0.2.1", "192.0.2.1"),
])
def test_canonical_name(raw, canon):
    assert canonical_name(raw) == canon


def test_csr5_key_file_is_0600(tmp_path):
    """CSR-5: key files are written 0600, also when replacing a looser existing file."""
    target = tmp_path / "k.pem"
    target.write_bytes(b"old")
    target.chmod(0o644)
    pem = private_key_pem(key(KeyAlgorithm.EC_P256))
    write_key_file(target, pem)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert public_fingerprint(load_private_key(target.read_bytes())) == public_fingerprint(key(KeyAlgorithm.EC_P256))
    assert [p.name for p in tmp_path.iterdir()] == ["k.pem"]


def test_csr5_load_error_never_quotes_the_input():
    """CSR-5: a key that fails to load is not echoed in the error."""
    from certpilot.core.errors import BadInputError

    secret = b"-----BEGIN PRIVATE KEY-----\nSECRETSECRETSECRET\n-----END PRIVATE KEY-----\n"
    with pytest.raises(BadInputError) as info:
        load_private_key(secret)
    assert "SECRET" not in str(info.value)
    assert info.value.reason is Reason.BAD_PEM
