"""The embedded private CA: issuing, policy refusals, simulated review, revocation and CRL (EL-4, DV-5, CA-2)."""

from __future__ import annotations

import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial

import pytest
from cryptography import x509
from sqlalchemy import func, select

from certpilot.adapters.issuers.base import Application, Issuer, OrderStatus
from certpilot.adapters.issuers.private_ca import PrivateCa, PrivateCaPolicy, name_allowed
from certpilot.core.errors import PermanentError, Reason, RefusedError
from certpilot.core.models import Contact, CsrMode, KeyAlgorithm, Level, Origin, Status
from certpilot.crypto.csr import build_csr
from certpilot.crypto.keys import generate_key
from certpilot.operations import applications
from certpilot.store.db import session_scope
from certpilot.store.ports import SqlPrivateCaStore
from certpilot.store.repository import Repository
from certpilot.store.tables import KeyRow
from certpilot.store.tables_issuance import PrivateCaRow
from tests.clock import Clock
from tests.integration.issuance.conftest import NOW, add_certificate


@pytest.fixture
def clock():
    return Clock(NOW)


def make_ca(sessions, vault, clock, **policy) -> PrivateCa:
    return PrivateCa(SqlPrivateCaStore(sessions), vault, policy=PrivateCaPolicy(**policy), clock=clock)


def app_for(names, alg=KeyAlgorithm.EC_P256, **kw) -> Application:
    return Application(names=tuple(names), csr_pem=build_csr(generate_key(alg), list(names)), **kw)


def test_el4_private_ca_issues_a_verifiable_chain(sessions, vault, clock, tmp_path):
    """EL-4: the private CA creates its root and intermediate on first use (keys sealed) and issues
    a leaf that `openssl verify` accepts against its root, with exactly the requested names."""
    ca = make_ca(sessions, vault, clock, validity_days=30)
    assert isinstance(ca, Issuer) and ca.publicly_trusted is False and ca.name == "private-ca:default"
    ref = ca.submit(app_for(["app.corp.test", "api.corp.test"]))
    assert ca.poll(ref).status is OrderStatus.VALID
    chain = ca.fetch_chain(ref)
    leaf = x509.load_pem_x509_certificate(chain.leaf_pem.encode())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["app.corp.test", "api.corp.test"]
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(days=30)
    assert leaf.not_valid_before_utc == NOW
    inter, root = ca.chain_pems()
    assert chain.chain_pems == (inter,)
    (tmp_path / "root.pem").write_text(root)
    (tmp_path / "inter.pem").write_text(inter)
    (tmp_path / "leaf.pem").write_text(chain.leaf_pem)
    # -attime: the CA signed at the fixed clock's NOW, not at the wall clock's.
    out = subprocess.run(["openssl", "verify", "-attime", str(int(NOW.timestamp()) + 60), "-CAfile", str(tmp_path / "root.pem"), "-untrusted",
                          str(tmp_path / "inter.pem"), str(tmp_path / "leaf.pem")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(PrivateCaRow)) == 1
        # Root and intermediate keys are sealed rows; no PEM key text anywhere in the CA row.
        assert s.scalar(select(func.count()).select_from(KeyRow)) == 2
        row = s.scalars(select(PrivateCaRow)).one()
        assert "PRIVATE KEY" not in row.root_pem + row.intermediate_pem
    # Second use: the same CA (not a new root).
    ca2 = make_ca(sessions, vault, clock)
    assert ca2.chain_pems() == (inter, root)


@pytest.mark.parametrize("suffixes, name, allowed", [
    (("corp.test",), "corp.test", True),
    (("corp.test",), "a.b.corp.test", True),
    (("corp.test",), "*.corp.test", True),
    (("corp.test",), "evilcorp.test", False),
    (("corp.test",), "corp.test.evil", False),
    ((), "anything.example", True),
])
def test_el4_policy_allowed_suffixes(suffixes, name, allowed):
    """EL-4: the private CA's policy allows names equal to or under its suffixes."""
    assert name_allowed(name, suffixes) is allowed


def test_el4_policy_refusal_names_the_disallowed_name(sessions, vault, clock):
    """EL-4: a name outside the policy is refused before signing, and the refusal names it."""
    ca = make_ca(sessions, vault, clock, allowed_suffixes=("corp.test",))
    with pytest.raises(RefusedError) as info:
        ca.submit(app_for(["ok.corp.test", "bad.example.com"]))
    assert info.value.refusal.reason is Reason.CA_POLICY
    assert info.value.refusal.message.startswith("the private CA's policy does not allow bad.example.com")


def test_el4_revocation_lists_the_serial_in_the_crl(sessions, vault, clock):
    """EL-4: the private CA revokes, and its CRL (signed by the intermediate) lists the serial."""
    ca = make_ca(sessions, vault, clock)
    leaf = x509.load_pem_x509_certificate(ca.fetch_chain(ca.submit(app_for(["r.corp.test"]))).leaf_pem.encode())
    other = x509.load_pem_x509_certificate(ca.fetch_chain(ca.submit(app_for(["k.corp.test"]))).leaf_pem.encode())
    clock.now = NOW + timedelta(hours=1)
    ca.revoke(leaf.serial_number, "keyCompromise")
    ca.revoke(format(leaf.serial_number, "x"))  # idempotent
    crl = x509.load_pem_x509_crl(ca.crl_pem())
    inter = x509.load_pem_x509_certificate(ca.chain_pems()[0].encode())
    assert crl.is_signature_valid(inter.public_key())
    assert [r.serial_number for r in crl] == [leaf.serial_number]
    assert crl.get_revoked_certificate_by_serial_number(other.serial_number) is None
    assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number).revocation_date_utc == clock.now
    assert x509.load_pem_x509_crl(ca.crl_pem()).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    with pytest.raises(Exception, match="issued no certificate with serial abc"):
        ca.revoke("abc")


def test_dv5_dv6_ov_needs_a_contact(sessions, vault, clock):
    """DV-6: an OV application without a full contact (name, email, phone) is refused CONTACT_REQUIRED."""
    ca = make_ca(sessions, vault, clock)
    cid = add_certificate(sessions, ["ov.corp.test"], level=Level.OV,
                          owner=Contact(name="", email="ops@corp.test", phone=""))
    with sessions() as s:
        applications.create_key_and_csr(s, cid, vault=vault, now=NOW)
    with pytest.raises(RefusedError) as info:
        applications.submit(sessions, cid, ca, now=NOW)
    assert info.value.refusal.reason is Reason.CONTACT_REQUIRED
    assert info.value.refusal.message == ("OV certificates need a contact the CA can verify with; missing name, "
                                          "phone: set the certificate owner's name, email and phone, then submit "
                                          "again.")


@pytest.mark.parametrize("level, contact, refused", [
    (Level.DV, None, False),
    (Level.OV, Contact(name="A", email="a@x.test", phone="+1 555"), False),
    (Level.EV, Contact(name="A", email="a@x.test", phone=""), True),
    (Level.EV, None, True),
])
def test_dv6_contact_refusal_table(level, contact, refused):
    """DV-6: the contact rule as a table."""
    refusal = applications.contact_refusal(level, contact)
    assert (refusal is not None) is refused
    if refusal:
        assert refusal.reason is Reason.CONTACT_REQUIRED and refusal.rule == "DV-6"


def test_dv5_ov_review_waits_under_review_without_a_process(sessions, vault, clock):
    """DV-5 / CA-2: an OV application waits UNDER_REVIEW (no process held) until the CA's review
    passes; the scanner's `refresh` then collects it (ISSUED)."""
    ca = make_ca(sessions, vault, clock, review_delay=timedelta(days=5))
    cid = add_certificate(sessions, ["ov.corp.test"], level=Level.OV,
                          owner=Contact(name="Ada", email="ada@corp.test", phone="+81 3 0000 0000"))
    with sessions() as s:
        applications.create_key_and_csr(s, cid, vault=vault, now=NOW)
    result = applications.submit(sessions, cid, ca, now=NOW)
    assert result.status is OrderStatus.PENDING
    with sessions() as s:
        assert Status(Repository(s).get_certificate(cid).state) is Status.UNDER_REVIEW
    clock.now = NOW + timedelta(days=4)
    assert applications.refresh(sessions, cid, ca, now=clock.now).status is OrderStatus.PENDING
    clock.now = NOW + timedelta(days=5)
    assert applications.refresh(sessions, cid, ca, now=clock.now).status is OrderStatus.VALID
    with sessions() as s:
        row = Repository(s).get_certificate(cid)
        assert Status(row.state) is Status.ISSUED
        assert row.not_before == NOW and row.publicly_trusted is False
    # Re-entrant: refreshing again changes nothing.
    assert applications.refresh(sessions, cid, ca, now=clock.now).status is OrderStatus.VALID


def test_ca2_review_rejection_marks_rejected_with_detail(sessions, vault, clock):
    """CA-2: the CA's review rejects → REJECTED, the CA's detail in the audit trail; fetching fails."""
    ca = make_ca(sessions, vault, clock, review_delay=timedelta(hours=1), review_rejects=("denied.corp.test",))
    cid = add_certificate(sessions, ["x.denied.corp.test"])
    with sessions() as s:
        applications.create_key_and_csr(s, cid, vault=vault, now=NOW)
    ref = applications.submit(sessions, cid, ca, now=NOW).order_ref
    clock.now = NOW + timedelta(hours=2)
    result = applications.refresh(sessions, cid, ca, now=clock.now)
    assert result.status is OrderStatus.INVALID
    assert result.detail == "the private CA's review rejected x.denied.corp.test"
    with sessions() as s:
        repo = Repository(s)
        assert Status(repo.get_certificate(cid).state) is Status.REJECTED
        assert repo.audit(cid)[-1].why == "the CA rejected the application: the private CA's review rejected x.denied.corp.test"
    with pytest.raises(PermanentError):
        ca.fetch_chain(ref)


def test_el4_reissue_from_private_ca_keeps_lineage_and_algorithm(sessions, vault, clock):
    """EL-4, CSR-1: a private-CA certificate is reissued from the private CA (a child certificate);
    the new key has the original's algorithm and differs from it."""
    ca = make_ca(sessions, vault, clock)
    original = add_certificate(sessions, ["svc.corp.test"], alg=KeyAlgorithm.RSA2048)
    with sessions() as s:
        first = applications.create_key_and_csr(s, original, vault=vault, now=NOW)
    assert applications.submit(sessions, original, ca, now=NOW).status is OrderStatus.VALID
    child = add_certificate(sessions, ["svc.corp.test"], parent_id=original, alg=KeyAlgorithm.EC_P256)
    with sessions() as s:
        second = applications.create_key_and_csr(s, child, vault=vault, now=NOW)
        again = applications.create_key_and_csr(s, child, vault=vault, now=NOW)  # idempotent
    assert again.key_id == second.key_id and again.public_fingerprint == second.public_fingerprint
    assert second.public_fingerprint != first.public_fingerprint and second.warnings == ()
    assert applications.submit(sessions, child, ca, now=NOW).status is OrderStatus.VALID
    with sessions() as s:
        repo = Repository(s)
        row = repo.get_certificate(child)
        assert row.parent_id == original and row.key_algorithm == KeyAlgorithm.RSA2048.value
        assert [c.id for c in repo.children(original)] == [child]
        assert Status(row.state) is Status.ISSUED
        assert x509.load_pem_x509_certificate(row.leaf_pem.encode()).public_key().key_size == 2048
    assert Origin.PRIVATE_CA  # the inventory's origin for these (set by the caller that syncs them)


def test_csr4_private_ca_refuses_a_csr_with_other_names(sessions, vault, clock):
    """CSR-4: the CSR is checked at the CA too: names must equal the application's."""
    ca = make_ca(sessions, vault, clock)
    bad = Application(names=("a.corp.test",), csr_pem=build_csr(generate_key(KeyAlgorithm.EC_P256), ["b.corp.test"]))
    with pytest.raises(RefusedError) as info:
        ca.submit(bad)
    assert info.value.refusal.reason is Reason.CSR_NAMES
    assert CsrMode.SYSTEM  # system CSRs are checked in create_key_and_csr (see test_keys_csr)


class RacingStore(SqlPrivateCaStore):
    """Holds each creator at a barrier until both have seen no CA: the race is forced, not hoped for."""

    def __init__(self, sessions, barrier: threading.Barrier):
        super().__init__(sessions)
        self.barrier = barrier

    def ensure(self, name, create):
        def held(keys):
            self.barrier.wait(timeout=20)
            return create(keys)

        return super().ensure(name, held)


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_el4_root_and_intermediate_created_once_under_concurrency(store_url, vault, clock):
    """EL-4: two processes using a new private CA at once both find it missing; exactly one root
    and intermediate are kept (the unique name decides), the loser's sealed keys roll back with
    its savepoint, and both serve the winner's chain."""
    sessions = partial(session_scope, store_url)
    barrier = threading.Barrier(2)
    cas = [PrivateCa(RacingStore(sessions, barrier), vault, clock=clock) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        chains = list(pool.map(lambda ca: ca.chain_pems(), cas))
    assert chains[0] == chains[1]
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(PrivateCaRow)) == 1
        assert s.scalar(select(func.count()).select_from(KeyRow)) == 2
    assert make_ca(sessions, vault, clock).chain_pems() == chains[0]
