"""The `revoke` flow (issue 13): a certificate the private CA issued is revoked through it (the
CRL lists it); with `replace`, a certificate whose renewal is refused (not due yet) is not
revoked: the flow fails before anything changes at the CA."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from cryptography import x509

from certpilot import runtime as rt
from certpilot.adapters.issuers.private_ca import PrivateCa
from certpilot.core.errors import RefusedError
from certpilot.core.models import Status
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.operations import pipeline
from certpilot.store.db import ensure_schema, reset_engines, session_scope
from certpilot.store.ports import SqlPrivateCaStore
from certpilot.store.repository import Repository
from tests.integration.issuance.conftest import add_certificate

pytestmark = [pytest.mark.flows]


@pytest.fixture
def world(tmp_path, prefect_harness):
    url = f"sqlite:///{tmp_path / 'revoke.db'}"
    ensure_schema(url)
    sessions = lambda: session_scope(url)  # noqa: E731
    vault = KeyVault(LocalMasterKey(os.urandom(32)))
    ca = PrivateCa(SqlPrivateCaStore(sessions), vault, clock=lambda: datetime.now(UTC), paid=False)
    svc = rt.local_services(database_url=url, vault=vault, issuers={"private-ca": ca}, default_issuer="private-ca")
    cid = add_certificate(sessions, ["revoke-flow.example.test"])
    pipeline.prepare(svc, cid)
    assert pipeline.submit(svc, cid).kind.value == "issued"
    with rt.use(svc):
        yield svc, ca, cid
    reset_engines()


def test_revoke_flow_through_the_private_ca(world):
    from flows.revoke import revoke

    svc, ca, cid = world
    out = revoke(cid, reason="keyCompromise")

    assert (out.certificate_id, out.issuer, out.reason, out.already) == (cid, "private-ca", "keyCompromise", False)
    with svc.session(readonly=True) as s:
        assert Repository(s).certificate_model(cid).state is Status.REVOKED
    crl = x509.load_pem_x509_crl(ca.crl_pem())
    assert crl.get_revoked_certificate_by_serial_number(int(out.serial, 16)) is not None


def test_revoke_with_replace_revokes_nothing_when_the_renewal_is_refused(world):
    from flows.revoke import revoke

    svc, ca, cid = world
    with pytest.raises(RefusedError):  # 90 days left: the renewal is not open yet (EL-1)
        revoke(cid, reason="superseded", replace=True)
    with svc.session(readonly=True) as s:
        assert Repository(s).certificate_model(cid).state is Status.ISSUED
    assert list(x509.load_pem_x509_crl(ca.crl_pem())) == []


def test_issuer_flow_names_the_issuer_from_the_ui(world):
    from flows.revoke import issuer

    svc, ca, cid = world
    assert issuer(cid).source.value == "default"  # shown
    named = issuer(cid, issuer="private-ca", fallbacks=[])
    assert (named.issuer, named.source.value, named.fallbacks, named.paid) == ("private-ca", "set", (), False)
    with pytest.raises(RefusedError, match="acme/nowhere"):
        issuer(cid, fallbacks=["acme/nowhere"])
