"""The DV pipeline end to end against Pebble: CAA, DNS-01 through BIND (RFC 2136), DNS-01 through
challtestsrv, HTTP-01 through the built-in responder. Proves the server fixtures the issuance
part builds on."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certpilot.adapters.dns.base import challenge_name
from certpilot.adapters.dns.checks import caa_refusal, resolver_for, wait_until_visible
from certpilot.adapters.dns.rfc2136 import Rfc2136Provider
from certpilot.adapters.http01 import ChallengeHttpServer, http01_responder

pytestmark = pytest.mark.servers
_real_sleep = time.sleep


@pytest.fixture
def fast_acme_polls(monkeypatch):
    import acme.client

    # The acme library sleeps 1 s between polls; Pebble answers in milliseconds.
    monkeypatch.setattr(acme.client.time, "sleep", lambda s: _real_sleep(min(s, 0.05)))


def acme_client(pebble):
    import josepy as jose
    from acme import client, messages

    key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(key, alg=jose.ES256, user_agent="certpilot-tests", verify_ssl=str(pebble.ca_bundle))
    c = client.ClientV2(client.ClientV2.get_directory(pebble.directory_url, net), net)
    c.new_account(messages.NewRegistration.from_data(email="ops@example.test", terms_of_service_agreed=True))
    return c, key


def csr_for(names: list[str]) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def issue(pebble, names, answer) -> x509.Certificate:
    """Order `names`; `answer(authz, account_key) -> challenge` prepares and picks one challenge."""
    c, key = acme_client(pebble)
    order = c.new_order(csr_for(names))
    for authz in order.authorizations:
        assert authz.body.status.name == "pending"  # PEBBLE_AUTHZREUSE=0: every authz is validated
        c.answer_challenge(*answer(authz, key))
    order = c.poll_and_finalize(order, deadline=datetime.now() + timedelta(seconds=30))
    return x509.load_pem_x509_certificates(order.fullchain_pem.encode())[0]


def _dns01(authz):
    from acme import challenges

    return next(ch for ch in authz.body.challenges if isinstance(ch.chall, challenges.DNS01))


def issue_through(ca, names, provider, nameservers):
    """Issue `names` at `ca` answering DNS-01 through `provider` (each value visible at
    `nameservers` before it is answered); every value placed is removed afterwards.

    Returns:
        (the certificate, the (fqdn, value) pairs placed).
    """
    placed: list[tuple[str, str]] = []

    def answer(authz, key):
        ch = _dns01(authz)
        response, validation = ch.response_and_validation(key)
        fqdn = challenge_name(authz.body.identifier.value)
        provider.present(fqdn, validation)
        placed.append((fqdn, validation))
        wait_until_visible(fqdn, validation, nameservers, timeout=5)
        return ch, response

    try:
        return issue(ca, names, answer), placed
    finally:
        for fqdn, value in placed:
            provider.cleanup(fqdn, value)


def test_dv7_dns01_through_bind_wildcard_and_base(pebble, bind_server, unique_label, fast_acme_polls):
    """DV-2, DV-7: CAA checked first, two TXT values on one name, visible at BIND before answering."""
    names = [f"{unique_label}.example.test", f"*.{unique_label}.example.test"]
    assert caa_refusal(names, pebble.ca_identifiers, resolver_for(bind_server.nameservers)) is None
    provider = Rfc2136Provider(bind_server.host, bind_server.port, zones=["example.test"],
                               keyname=bind_server.tsig_name, secret=bind_server.tsig_secret)
    cert, placed = issue_through(pebble, names, provider, bind_server.nameservers)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sorted(sans) == sorted(names)
    assert len({f for f, _ in placed}) == 1 and len(placed) == 2  # one name, two values
    assert bind_server.txt(placed[0][0]) == set()


def test_dns01_through_challtestsrv(pebble_challtestsrv, challtestsrv, unique_label, fast_acme_polls):
    names = [f"{unique_label}.example.test"]

    def answer(authz, key):
        ch = _dns01(authz)
        response, validation = ch.response_and_validation(key)
        challtestsrv.set_txt(challenge_name(authz.body.identifier.value), validation)
        return ch, response

    try:
        assert issue(pebble_challtestsrv, names, answer) is not None
    finally:
        challtestsrv.clear_txt(challenge_name(names[0]))


def test_http01_through_builtin_responder(pebble, unique_label, tmp_path, fast_acme_polls):
    """DV-3 file validation: Pebble fetches the file from the built-in responder on its httpPort."""
    from acme import challenges

    names = [f"{unique_label}.example.test", f"www.{unique_label}.example.test"]
    responder = http01_responder(names, tmp_path)

    def answer(authz, key):
        ch = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
        response, validation = ch.response_and_validation(key)
        responder.present(ch.chall.encode("token"), validation)
        return ch, response

    with ChallengeHttpServer(tmp_path, "127.0.0.1", pebble.http_port):
        cert = issue(pebble, names, answer)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == names[0]
    root, intermediate = pebble.roots()
    assert root.startswith("-----BEGIN CERTIFICATE-----") and intermediate.startswith("-----BEGIN CERTIFICATE-----")
