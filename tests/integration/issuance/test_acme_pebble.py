"""Real issuance from Pebble through the ACME adapter and the stage-2 use cases.

DNS-01 through BIND (RFC 2136) and through challtestsrv, HTTP-01 through the webroot responder,
a wildcard with its base name, refusals before any order (DV-4, DV-7 CAA), crash and resume of
the same order, 50 % nonce rejection, and the key existing only encrypted (CSR-5).
"""

from __future__ import annotations

import logging
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import func, select

from certpilot.adapters.http01.webroot import ChallengeHttpServer, WebrootResponder
from certpilot.adapters.issuers.acme import AcmeIssuer
from certpilot.adapters.issuers.base import OrderStatus
from certpilot.core.errors import Reason, RefusedError
from certpilot.core.models import CsrMode, KeyAlgorithm, Status, ValidationMethod
from certpilot.crypto.keys import generate_key, open_key
from certpilot.operations import applications
from certpilot.store.ports import SqlAcmeAccountStore
from certpilot.store.repository import Repository
from certpilot.store.tables_issuance import AcmeAccountRow, CaApplicationRow
from tests.integration.issuance.conftest import (
    NOW,
    ChallTestSrvDns,
    add_certificate,
    bind_issuer,
    db_file,
)
from tests.servers.acme import start_pebble
from tests.servers.base import stop

pytestmark = pytest.mark.servers


def issue(sessions, vault, issuer, names, **kw) -> str:
    """Create key + CSR and submit; returns the certificate id (asserts it was issued)."""
    cid = add_certificate(sessions, names, **kw)
    with sessions() as s:
        applications.create_key_and_csr(s, cid, CsrMode.SYSTEM, vault=vault, now=NOW)
    result = applications.submit(sessions, cid, issuer, now=NOW)
    assert result.status is OrderStatus.VALID, result.detail
    return cid


def verify_with_pebble_roots(pebble, tmp_path, cert_row) -> None:
    """`openssl verify -CAfile root -untrusted intermediate leaf` against this run's Pebble roots."""
    root, inter = pebble.roots()
    (tmp_path / "root.pem").write_text(root)
    (tmp_path / "inter.pem").write_text(cert_row.chain_pem)
    (tmp_path / "leaf.pem").write_text(cert_row.leaf_pem)
    assert x509.load_pem_x509_certificate(inter.encode()).subject == \
        x509.load_pem_x509_certificate(cert_row.chain_pem.encode()).subject
    out = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "root.pem"), "-untrusted",
                          str(tmp_path / "inter.pem"), str(tmp_path / "leaf.pem")],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith(": OK")


def leaf_names(pem: str) -> set[str]:
    san = x509.load_pem_x509_certificate(pem.encode()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName))


def test_csr1_csr4_csr5_dns01_bind_issues_verified_certificate(pebble, acme_bind, sessions, vault, db_url,
                                                              unique_label, tmp_path, caplog):
    """CSR-1, CSR-4, CSR-5: DNS-01 via BIND; the leaf verifies against Pebble's root, holds exactly the
    ordered names, and the key exists only encrypted (not in the DB file, not in the logs)."""
    caplog.set_level(logging.DEBUG)
    names = [f"{unique_label}.example.test", f"www.{unique_label}.example.test"]
    cid = issue(sessions, vault, acme_bind, names, alg=KeyAlgorithm.EC_P384)
    with sessions() as s:
        repo = Repository(s)
        row = repo.get_certificate(cid)
        assert Status(row.state) is Status.ISSUED
        assert leaf_names(row.leaf_pem) == set(names)
        leaf = x509.load_pem_x509_certificate(row.leaf_pem.encode())
        assert row.fingerprint_sha256 == leaf.fingerprint(hashes.SHA256()).hex()
        assert row.serial == format(leaf.serial_number, "x")
        assert row.not_after == leaf.not_valid_after_utc and row.not_before == leaf.not_valid_before_utc
        assert row.key_held is True and row.publicly_trusted is False
        alg, fp = repo.key_info(row.key_id)
        assert alg == KeyAlgorithm.EC_P384.value            # CSR-1: the original's algorithm
        key = open_key(row.key_id, fp, vault=vault, repo=repo)
        assert key.public_key() == leaf.public_key()
        verify_with_pebble_roots(pebble, tmp_path, row)
        assert [a.to_state for a in repo.audit(cid) if a.to_state][-2:] == ["under_review", "issued"]
    # CSR-5: neither the DB file nor the captured logs hold the key, in any encoding.
    secrets_ = [key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
                key.private_numbers().private_value.to_bytes(48, "big")]
    pem_body = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode().splitlines()[1]
    raw = b"".join(p.read_bytes() for p in db_file(db_url).parent.glob("issuance.db*"))
    for secret in secrets_:
        assert secret not in raw
    assert pem_body.encode() not in raw
    logs = caplog.text
    assert pem_body not in logs and "PRIVATE KEY" not in logs


def test_dv4_wildcard_and_base_name_via_dns01(pebble, acme_bind, sessions, vault, unique_label, bind_server):
    """A wildcard and its base name via DNS-01 (two TXT values at one name); records removed afterwards."""
    base = f"{unique_label}.example.test"
    cid = issue(sessions, vault, acme_bind, [f"*.{base}", base])
    with sessions() as s:
        assert leaf_names(Repository(s).get_certificate(cid).leaf_pem) == {f"*.{base}", base}
    assert bind_server.txt(f"_acme-challenge.{base}") == set()


def test_dns01_via_challtestsrv(pebble_challtestsrv, challtestsrv, sessions, vault, unique_label):
    """DNS-01 through pebble-challtestsrv's DNS (a second Pebble resolving through it)."""
    from certpilot.adapters.dns.checks import wait_until_visible

    srv = [("127.0.0.1", challtestsrv.dns_port)]
    issuer = AcmeIssuer(pebble_challtestsrv.directory_url, accounts=SqlAcmeAccountStore(sessions), vault=vault,
                        ca_bundle=str(pebble_challtestsrv.ca_bundle), dns_providers=[ChallTestSrvDns(challtestsrv)],
                        wait_visible=lambda f, v: wait_until_visible(f, v, srv, 10), publicly_trusted=False,
                        validation_timeout=30)
    names = [f"{unique_label}.example.test"]
    cid = issue(sessions, vault, issuer, names)
    with sessions() as s:
        assert leaf_names(Repository(s).get_certificate(cid).leaf_pem) == set(names)


def test_http01_via_webroot_responder(pebble, acme_bind, sessions, vault, unique_label, tmp_path):
    """HTTP-01: the webroot responder on Pebble's httpPort serves the key authorization."""
    responder = WebrootResponder(tmp_path / "www")
    acme_bind.http01 = responder
    with ChallengeHttpServer(tmp_path / "www", port=pebble.http_port):
        names = [f"{unique_label}.example.test"]
        cid = issue(sessions, vault, acme_bind, names, method=ValidationMethod.HTTP_FILE)
    with sessions() as s:
        assert leaf_names(Repository(s).get_certificate(cid).leaf_pem) == set(names)
    assert list((tmp_path / "www" / ".well-known" / "acme-challenge").iterdir()) == []


def test_dv4_wildcard_with_file_validation_refused_before_any_order(acme_bind, sessions, vault, unique_label):
    """DV-4: a wildcard with file validation is refused, and no order is placed."""
    cid = add_certificate(sessions, [f"*.{unique_label}.example.test"], method=ValidationMethod.HTTP_FILE)
    with sessions() as s:
        applications.create_key_and_csr(s, cid, vault=vault, now=NOW)
    with pytest.raises(RefusedError) as info:
        applications.submit(sessions, cid, acme_bind, now=NOW)
    assert info.value.refusal.reason is Reason.WILDCARD_FILE_VALIDATION
    with sessions() as s:
        assert applications.application_state(s, cid)["order_ref"] is None
        assert Status(Repository(s).get_certificate(cid).state) is Status.PENDING_APPLICATION
        assert s.scalars(select(AcmeAccountRow)).all() == []  # nothing was sent to Pebble


def test_dv7_caa_forbidding_the_ca_refused_before_any_order(acme_bind, sessions, vault, unique_label):
    """DV-7: a CAA record naming another CA refuses the application before any order is placed."""
    cid = add_certificate(sessions, [f"{unique_label}.caa-forbid.example.test"])
    with sessions() as s:
        applications.create_key_and_csr(s, cid, vault=vault, now=NOW)
    with pytest.raises(RefusedError) as info:
        applications.submit(sessions, cid, acme_bind, now=NOW)
    assert info.value.refusal.reason is Reason.CAA_FORBIDS
    assert info.value.refusal.message == (
        f"CAA at caa-forbid.example.test allows only otherca.example to issue (issue) for "
        f"{unique_label}.caa-forbid.example.test; add `0 issue \"pebble.test\"` at caa-forbid.example.test "
        "or remove the CAA records that exclude pebble.test.")
    with sessions() as s:
        state = applications.application_state(s, cid)
        assert state["order_ref"] is None and state["attempts"] == 0
        # Not even an account was registered: nothing at all was sent to Pebble.
        assert s.scalars(select(AcmeAccountRow)).all() == []


def test_crash_after_order_recorded_resumes_the_same_order(pebble, bind_server, bind_dns, sessions, vault,
                                                           unique_label):
    """Re-entrancy: a crash after the order URL is committed, before any challenge is answered;
    the rerun resumes that same ACME order (one order URL, the same one) and issues."""

    class Crash(Exception):
        pass

    class CrashingIssuer(AcmeIssuer):
        crashes = 1

        def advance(self, ref, application):
            if self.crashes:
                self.crashes -= 1
                raise Crash("simulated crash before answering challenges")
            return super().advance(ref, application)

    issuer = bind_issuer(pebble, bind_server, bind_dns, sessions, vault)
    issuer.__class__ = CrashingIssuer
    cid = add_certificate(sessions, [f"{unique_label}.example.test"])
    with sessions() as s:
        applications.create_key_and_csr(s, cid, vault=vault, now=NOW)
    with pytest.raises(Crash):
        applications.submit(sessions, cid, issuer, now=NOW)
    with sessions() as s:
        first = applications.application_state(s, cid)
        assert first["order_ref"].startswith(pebble.directory_url.rsplit("/", 1)[0])
        assert Status(Repository(s).get_certificate(cid).state) is Status.UNDER_REVIEW
    # A new process: a fresh issuer object, same database.
    rerun = bind_issuer(pebble, bind_server, bind_dns, sessions, vault)
    result = applications.submit(sessions, cid, rerun, now=NOW)
    assert result.status is OrderStatus.VALID and result.resumed
    assert result.order_ref == first["order_ref"]
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(CaApplicationRow)) == 1
        assert applications.application_state(s, cid)["attempts"] == 1
        assert Status(Repository(s).get_certificate(cid).state) is Status.ISSUED


def test_nonce_rejection_at_50_percent_still_issues(tmp_path_factory, bind_server, bind_dns, sessions, vault,
                                                    unique_label):
    """badNonce: a Pebble rejecting half the nonces still issues (bounded retries)."""
    try:
        noisy = start_pebble(tmp_path_factory.mktemp("pebble-nonce"), bind_server.port, nonce_reject=50)
    except (FileNotFoundError, RuntimeError) as exc:
        from tests.servers.base import missing

        missing(f"pebble ({exc})")
    try:
        issuer = bind_issuer(noisy, bind_server, bind_dns, sessions, vault)
        for i in range(3):
            issue(sessions, vault, issuer, [f"n{i}.{unique_label}.example.test"])
    finally:
        stop(noisy.proc)


def test_account_registered_once_and_key_sealed(acme_bind, pebble, sessions, vault, unique_label):
    """CSR-5: the ACME account key is sealed in the vault; one account row per directory, reused."""
    issue(sessions, vault, acme_bind, [f"a.{unique_label}.example.test"])
    with sessions() as s:
        rows = s.scalars(select(AcmeAccountRow)).all()
        assert len(rows) == 1 and rows[0].directory_url == pebble.directory_url
        assert rows[0].account_url == acme_bind.account_url()
        assert Repository(s).key_info(rows[0].key_id)[0] == KeyAlgorithm.EC_P256.value


def test_csr2_manual_csr_with_other_algorithm_refused(sessions, vault, unique_label, acme_bind):
    """CSR-2: a supplied CSR whose key algorithm differs from the original's cannot be submitted."""
    from certpilot.crypto.csr import build_csr

    original = add_certificate(sessions, [f"{unique_label}.example.test"], alg=KeyAlgorithm.EC_P256,
                               state=Status.UPLOADED)
    cid = add_certificate(sessions, [f"{unique_label}.example.test"], parent_id=original)
    csr = build_csr(generate_key(KeyAlgorithm.RSA2048), [f"{unique_label}.example.test"])
    with pytest.raises(RefusedError) as info, sessions() as s:
        applications.create_key_and_csr(s, cid, CsrMode.MANUAL, csr_pem=csr, vault=vault, now=NOW)
    assert info.value.refusal.reason is Reason.CSR_ALGORITHM
    assert "RSA-2048" in info.value.refusal.message and "EC-P256" in info.value.refusal.message
    with sessions() as s:
        assert applications.application_state(s, cid) is None


def test_csr2_manual_csr_issued_and_marked_key_not_held(sessions, vault, unique_label, acme_bind):
    """CSR-2: a matching supplied CSR is issued; the certificate is marked key_held=False."""
    from certpilot.crypto.csr import build_csr

    names = [f"{unique_label}.example.test"]
    original = add_certificate(sessions, names, alg=KeyAlgorithm.EC_P256, state=Status.UPLOADED)
    cid = add_certificate(sessions, names, parent_id=original)
    user_key = generate_key(KeyAlgorithm.EC_P256)
    with sessions() as s:
        made = applications.create_key_and_csr(s, cid, CsrMode.MANUAL, csr_pem=build_csr(user_key, names),
                                               vault=vault, now=NOW)
    assert made.key_id is None and made.key_held is False
    assert [w.code for w in made.warnings] == ["key-not-held"]
    assert made.warnings[0].message.startswith("key not held: cannot deploy to managed targets")
    result = applications.submit(sessions, cid, acme_bind, now=NOW)
    assert result.status is OrderStatus.VALID
    with sessions() as s:
        row = Repository(s).get_certificate(cid)
        assert row.key_held is False and row.key_id is None
        assert x509.load_pem_x509_certificate(row.leaf_pem.encode()).public_key() == user_key.public_key()


def test_csr3_reuse_of_original_key_flagged(sessions, vault, unique_label, acme_bind):
    """CSR-3: reusing the original key is allowed and flagged key-not-rotated."""
    names = [f"{unique_label}.example.test"]
    first = issue(sessions, vault, acme_bind, names)
    cid = add_certificate(sessions, names, parent_id=first)
    with sessions() as s:
        made = applications.create_key_and_csr(s, cid, CsrMode.REUSE, vault=vault, now=NOW)
        assert made.key_id == Repository(s).get_certificate(first).key_id
    assert [w.code for w in made.warnings] == ["key-not-rotated"]
    result = applications.submit(sessions, cid, acme_bind, now=NOW)
    assert result.status is OrderStatus.VALID
    assert [w.code for w in result.warnings] == ["key-not-rotated"]
    with sessions() as s:
        repo = Repository(s)
        a = x509.load_pem_x509_certificate(repo.get_certificate(first).leaf_pem.encode())
        b = x509.load_pem_x509_certificate(repo.get_certificate(cid).leaf_pem.encode())
        assert a.public_key() == b.public_key()


def test_ca2_failed_validation_marks_rejected_with_ca_detail(pebble, bind_server, sessions, vault, unique_label):
    """CA-2: the CA's refusal (no TXT record where it looked) → REJECTED with the CA's detail audited."""

    class NoopDns:
        """Writes nothing: Pebble finds no record and refuses the authorization."""

        name = "noop"

        def zone_for(self, fqdn):
            return "example.test"

        def present(self, fqdn, value):
            pass

        def cleanup(self, fqdn, value):
            pass

    issuer = AcmeIssuer(pebble.directory_url, accounts=SqlAcmeAccountStore(sessions), vault=vault, ca_bundle=str(pebble.ca_bundle),
                        dns_providers=[NoopDns()], publicly_trusted=False, validation_timeout=30)
    cid = add_certificate(sessions, [f"{unique_label}.example.test"])
    with sessions() as s:
        applications.create_key_and_csr(s, cid, vault=vault, now=NOW)
    result = applications.submit(sessions, cid, issuer, now=NOW)
    assert result.status is OrderStatus.INVALID
    # The CA's own words (Pebble 2.4): problem type and detail.
    assert result.detail == "unauthorized: No TXT records found for DNS challenge"
    with sessions() as s:
        repo = Repository(s)
        assert Status(repo.get_certificate(cid).state) is Status.REJECTED
        last = repo.audit(cid)[-1]
        assert last.to_state == "rejected" and result.detail in last.why


def test_external_account_binding(tmp_path_factory, bind_server, bind_dns, sessions, vault, unique_label):
    """EAB: a CA that requires External Account Binding registers the account with the kid + HMAC."""
    import base64
    import os

    from certpilot.adapters.issuers.acme import ExternalAccount
    from certpilot.core.errors import PermanentError

    hmac = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    try:
        eab_pebble = start_pebble(tmp_path_factory.mktemp("pebble-eab"), bind_server.port, eab={"kid-1": hmac})
    except (FileNotFoundError, RuntimeError) as exc:
        from tests.servers.base import missing

        missing(f"pebble ({exc})")
    try:
        without = bind_issuer(eab_pebble, bind_server, bind_dns, sessions, vault)
        with pytest.raises(PermanentError, match="requires External Account Binding"):
            without.account_url()
        issuer = bind_issuer(eab_pebble, bind_server, bind_dns, sessions, vault,
                             eab=ExternalAccount("kid-1", hmac))
        assert hmac not in repr(issuer.eab)
        issue(sessions, vault, issuer, [f"eab.{unique_label}.example.test"])
    finally:
        stop(eab_pebble.proc)


def test_dv7_record_not_visible_refused_before_the_ca_is_told(pebble, bind_server, bind_dns, sessions, vault,
                                                              unique_label):
    """DV-7: when the authoritative servers do not serve the record, the CA is not told to validate
    (the authorization stays pending, the order resumable) and the record is removed anyway."""
    from certpilot.adapters.dns.checks import wait_until_visible
    from tests.servers.base import free_udp_tcp_port

    silent = [("127.0.0.1", free_udp_tcp_port())]  # an "authoritative server" that never answers
    issuer = bind_issuer(pebble, bind_server, bind_dns, sessions, vault,
                         wait_visible=lambda f, v: wait_until_visible(f, v, silent, 0.3))
    name = f"{unique_label}.example.test"
    cid = add_certificate(sessions, [name])
    with sessions() as s:
        applications.create_key_and_csr(s, cid, vault=vault, now=NOW)
    with pytest.raises(RefusedError) as info:
        applications.submit(sessions, cid, issuer, now=NOW)
    assert info.value.refusal.reason is Reason.RECORD_NOT_VISIBLE
    with sessions() as s:
        ref = applications.application_state(s, cid)["order_ref"]
    assert issuer.poll(ref).status is OrderStatus.PENDING      # the challenge was never answered
    assert bind_server.txt(f"_acme-challenge.{name}") == set()  # cleaned up whatever the outcome
    # Once the record is visible, the same order completes.
    result = applications.submit(sessions, cid, bind_issuer(pebble, bind_server, bind_dns, sessions, vault), now=NOW)
    assert result.status is OrderStatus.VALID and result.order_ref == ref


def test_csr5_account_key_recorded_before_registration_survives_a_crash(pebble, bind_server, bind_dns, sessions,
                                                                        vault, monkeypatch):
    """CSR-5: the ACME account key is sealed and recorded before the CA hears of it; a crash
    right after the registration loses nothing: the rerun registers the same key and gets the
    same account back."""
    from acme.client import ClientV2

    from certpilot.store.tables_issuance import AcmeAccountRow

    real = ClientV2.new_account
    calls = []

    def dying(self, reg):
        calls.append(real(self, reg).uri)
        raise KeyboardInterrupt  # the process dies before the account URL is recorded

    monkeypatch.setattr(ClientV2, "new_account", dying)
    issuer = bind_issuer(pebble, bind_server, bind_dns, sessions, vault)
    with pytest.raises(KeyboardInterrupt):
        issuer.account_url()
    with sessions() as s:
        (row,) = s.query(AcmeAccountRow).all()
        assert row.account_url == "" and row.key_id  # the key is kept, sealed
        key_id = row.key_id
    monkeypatch.setattr(ClientV2, "new_account", real)
    again = bind_issuer(pebble, bind_server, bind_dns, sessions, vault)
    assert again.account_url() == calls[0]  # the same account, through the same key
    with sessions() as s:
        (row,) = s.query(AcmeAccountRow).all()
        assert (row.account_url, row.key_id) == (calls[0], key_id)
