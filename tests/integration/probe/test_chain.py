"""DEP-6 chain judgement on served certificates (no network: `Prober.judge` over DER lists)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from certpilot.adapters.probe.tls import Prober, TrustBundle
from certpilot.core.verification import ChainStatus, Endpoint, ProbeOutcome, TrustFault
from tests.servers.badchains import bad_chains
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


def test_ver1_strict_fast_path_same_verdict_and_bounded_by_issuer_validity(pki):
    """VER-1 strict: a second leaf from the same verified issuer is checked against that issuer alone
    (one cached entry), a leaf the fast path refuses gets the full verifier's verdict, and the fast path
    never outlives the intermediate: after its expiry the same chain is EXPIRED_INTERMEDIATE."""
    root, inter, _, _ = pki
    prober = Prober(TrustBundle([root.cert]))
    chain = [der(inter.cert)]
    first = prober.judge(EP, [der(leaf_for(inter).cert_pem), *chain], now=NOW)
    second = prober.judge(EP, [der(leaf_for(inter).cert_pem), *chain], now=NOW)
    assert (first.outcome, first.fault, second.outcome, second.fault) == (
        ProbeOutcome.OK, TrustFault.NONE, ProbeOutcome.OK, TrustFault.NONE)
    assert len(prober.trust._issuers) == 1
    other = make_leaf(inter, ["other.chain.test"], NOW - timedelta(days=1), NOW + timedelta(days=30))
    wrong = prober.judge(EP, [der(other.cert_pem), *chain], now=NOW)
    assert (wrong.outcome, wrong.fault, wrong.name_matches) == (ProbeOutcome.WRONG_NAME, TrustFault.WRONG_NAME, False)
    late = inter.cert.not_valid_after_utc + timedelta(days=1)
    young = make_leaf(inter, ["www.chain.test"], late - timedelta(days=1), late + timedelta(days=30))
    expired = prober.judge(EP, [der(young.cert_pem), *chain], now=late)
    assert (expired.outcome, expired.fault) == (ProbeOutcome.INVALID_CHAIN, TrustFault.EXPIRED_INTERMEDIATE)


@pytest.fixture(scope="module")
def chains():
    return bad_chains("www.chain.test", NOW)


@pytest.mark.parametrize("fault, outcome", [
    (TrustFault.ISSUER_NOT_CA, ProbeOutcome.INVALID_CHAIN),
    (TrustFault.EXPIRED_INTERMEDIATE, ProbeOutcome.INVALID_CHAIN),
    (TrustFault.NO_SAN, ProbeOutcome.WRONG_NAME),
    (TrustFault.WRONG_NAME, ProbeOutcome.WRONG_NAME),
    (TrustFault.INCOMPLETE, ProbeOutcome.INCOMPLETE_CHAIN),
    (TrustFault.SELF_SIGNED, ProbeOutcome.UNTRUSTED),
    (TrustFault.UNTRUSTED_ROOT, ProbeOutcome.UNTRUSTED),
    (TrustFault.NOT_SERVER_AUTH, ProbeOutcome.INVALID_CHAIN),
])
def test_ver1_strict_verifier_refuses_each_bad_chain_with_its_reason(chains, fault, outcome):
    """VER-1 strict (cryptography's server verifier decides, the walk names why): each bad chain is
    refused with its own reason, on a prober that has already verified the good chain (fast path warm)."""
    prober = Prober(TrustBundle([chains.root.cert]))
    good = prober.judge(EP, [der(chains.good.cert_pem), *map(der, chains.good.chain_pems)], now=NOW)
    assert good.verified and good.outcome is ProbeOutcome.OK
    chain = chains.bad[fault]
    ders = [der(c) for c in x509.load_pem_x509_certificates(chain.served_pem)]
    result = prober.judge(EP, ders, now=NOW)
    assert (result.outcome, result.fault, result.verified) == (outcome, fault, False)
    # The walk alone (names and signatures) judged these "complete": the strict verdict is not its.
    if fault in (TrustFault.ISSUER_NOT_CA, TrustFault.EXPIRED_INTERMEDIATE, TrustFault.NO_SAN):
        assert result.chain is ChainStatus.COMPLETE


def test_unparseable_served_certificate_is_an_outcome():
    """A server sending garbage as a certificate is recorded as a handshake failure, not raised."""
    result = Prober(TrustBundle([])).judge(EP, [b"not a certificate"], now=NOW)
    assert result.outcome is ProbeOutcome.HANDSHAKE_FAILED and "unparseable" in result.error
