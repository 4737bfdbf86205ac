"""DEP-6 chain judgement on served certificates (no network: `Prober.judge` over DER lists)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from certpilot.adapters.probe.tls import Prober, TrustBundle
from certpilot.core.verification import ChainStatus, Endpoint, ProbeOutcome
from tests.servers.certs import TestCA, make_ca, make_key, make_leaf

NOW = datetime(2026, 6, 1, tzinfo=UTC)
EP = Endpoint("127.0.0.1", 443, "www.chain.test")


def der(pem_or_cert) -> bytes:
    cert = pem_or_cert if isinstance(pem_or_cert, x509.Certificate) else x509.load_pem_x509_certificate(pem_or_cert)
    return cert.public_bytes(Encoding.DER)


def forged_twin(ca: TestCA) -> x509.Certificate:
    """A certificate with `ca`'s subject and issuer but another key (a forged intermediate)."""
    key = make_key("EC-P256")
    return (x509.CertificateBuilder().subject_name(ca.cert.subject).issuer_name(ca.cert.issuer)
            .public_key(key.public_key()).serial_number(1).not_valid_before(ca.cert.not_valid_before_utc)
            .not_valid_after(ca.cert.not_valid_after_utc)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))


@pytest.fixture(scope="module")
def pki():
    root = make_ca("chain root")
    inter = make_ca("chain intermediate", issuer=root)
    rsa_root = make_ca("chain rsa root", key_alg="RSA-2048")
    rsa_inter = make_ca("chain rsa intermediate", issuer=rsa_root, key_alg="RSA-2048")
    return root, inter, rsa_root, rsa_inter


def leaf_for(ca: TestCA):
    return make_leaf(ca, ["www.chain.test"], NOW - timedelta(days=1), NOW + timedelta(days=30))


@pytest.mark.parametrize("served, trusted, expected", [
    ("leaf+inter", "root", ChainStatus.COMPLETE),
    ("leaf", "root", ChainStatus.INCOMPLETE),                 # the classic missing intermediate
    ("leaf", "root+inter", ChainStatus.COMPLETE),             # intermediate known to the client
    ("leaf+inter+root", "root", ChainStatus.COMPLETE),        # a served root is harmless
    ("leaf+forged", "root", ChainStatus.UNTRUSTED),           # right name, wrong key: signature fails
    ("leaf+inter", "other", ChainStatus.INCOMPLETE),          # root not in the bundle, not served
    ("leaf+inter+root", "other", ChainStatus.UNTRUSTED),      # ends at a self-signed root not trusted
    ("rsa leaf+inter", "rsa root", ChainStatus.COMPLETE),     # RSA signatures (generic path)
    ("rsa leaf", "rsa root", ChainStatus.INCOMPLETE),
])
def test_dep6_chain_status(pki, served, trusted, expected):
    """DEP-6: a served chain is complete only when each link's signature verifies up to the bundle."""
    root, inter, rsa_root, rsa_inter = pki
    ca = rsa_inter if served.startswith("rsa") else inter
    leaf = leaf_for(ca)
    parts = {"leaf": der(leaf.cert_pem), "inter": der(ca.cert), "forged": der(forged_twin(inter)),
             "root": der(rsa_root.cert if served.startswith("rsa") else root.cert)}
    ders = [parts[p] for p in served.removeprefix("rsa ").split("+")]
    bundles = {"root": [root.cert], "root+inter": [root.cert, inter.cert], "other": [make_ca("other").cert],
               "rsa root": [rsa_root.cert]}
    prober = Prober(TrustBundle(bundles[trusted]))
    result = prober.judge(EP, ders, now=NOW)
    assert result.chain is expected
    assert result.fingerprint == leaf.fingerprint
    assert result.outcome is (ProbeOutcome.OK if expected is ChainStatus.COMPLETE else
                              ProbeOutcome.INCOMPLETE_CHAIN if expected is ChainStatus.INCOMPLETE else
                              ProbeOutcome.UNTRUSTED)


def test_dep6_signature_checks_are_cached_per_pair(pki):
    """The same (child, issuer) pair is verified once: the second judgement is a cache hit, same answer."""
    root, inter, _, _ = pki
    leaf = leaf_for(inter)
    prober = Prober(TrustBundle([root.cert]))
    first = prober.judge(EP, [der(leaf.cert_pem), der(inter.cert)], now=NOW)
    cached = dict(prober.trust._verified)
    again = prober.judge(EP, [der(leaf.cert_pem), der(inter.cert)], now=NOW)
    assert first.chain is again.chain is ChainStatus.COMPLETE
    assert prober.trust._verified == cached and len(cached) == 2


def test_unparseable_served_certificate_is_an_outcome():
    """A server sending garbage as a certificate is recorded as a handshake failure, not raised."""
    result = Prober(TrustBundle([])).judge(EP, [b"not a certificate"], now=NOW)
    assert result.outcome is ProbeOutcome.HANDSHAKE_FAILED and "unparseable" in result.error
