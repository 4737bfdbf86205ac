"""Issuers per certificate against real CAs (issue 13): two issuers in one inventory (the private
CA for ``*.corp``, Pebble for the rest), a stopped Pebble falling back to the private CA with the
operator told, a free ACME issuer renewing without any quota, revocation through Pebble and the
private CA (+ CRL), and the ACME https requirement.

Each test builds its own `Services` (fresh SQLite file, own vault) over the session's Pebble and
BIND; issuance goes through the same doors the renewal flow calls (`pipeline.prepare`/`submit`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from certpilot import runtime as rt
from certpilot.adapters.issuers.acme import AcmeIssuer
from certpilot.adapters.issuers.private_ca import PrivateCa, PrivateCaPolicy
from certpilot.core.errors import BadInputError, PermanentError, RefusedError
from certpilot.core.issuers import ChoiceSource
from certpilot.core.models import Certificate, CertType, Level, Origin, Status
from certpilot.core.outcomes import SubmitKind
from certpilot.operations import issuers, orders, pipeline
from certpilot.operations.importing import import_certificate
from certpilot.store.ports import SqlAcmeAccountStore, SqlPrivateCaStore
from certpilot.store.repository import Repository, new_id
from tests.integration.issuance.conftest import add_certificate, bind_issuer
from tests.servers.acme import start_pebble
from tests.servers.base import stop
from tests.servers.certs import make_ca, make_leaf

pytestmark = [pytest.mark.servers]


class Collecting:
    """A notification channel that keeps what it is sent."""

    name = "collect"

    def __init__(self) -> None:
        self.events: list = []

    def send(self, event) -> None:
        self.events.append(event)


def _private_ca(sessions, vault, *, suffixes=("corp",)) -> PrivateCa:
    return PrivateCa(SqlPrivateCaStore(sessions), vault, policy=PrivateCaPolicy(allowed_suffixes=suffixes),
                     clock=lambda: datetime.now(UTC), paid=False)


def _services(db_url, vault, issuers_: dict, default: str, *, dns=(), notifier=None) -> rt.Services:
    return rt.local_services(database_url=db_url, vault=vault, issuers=issuers_, default_issuer=default,
                             dns_providers=list(dns), notifiers=[notifier] if notifier else [])


def _issue(svc: rt.Services, cert_id: str):
    """The csr and validation stages (what the renewal flow's `issue` does before the review)."""
    pipeline.prepare(svc, cert_id)
    return pipeline.submit(svc, cert_id)


def _issuer_cn(svc: rt.Services, cert_id: str) -> str:
    with svc.session(readonly=True) as s:
        leaf = Repository(s).get_certificate(cert_id).leaf_pem
    cert = x509.load_pem_x509_certificate(leaf.encode())
    return cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def test_two_issuers_in_one_inventory(pebble, bind_server, bind_dns, sessions, vault, db_url, unique_label):
    """The private CA issues the ``*.corp`` certificate named for it; Pebble (the default) the rest."""
    acme = bind_issuer(pebble, bind_server, bind_dns, sessions, vault)
    svc = _services(db_url, vault, {"acme/pebble": acme, "private-ca": _private_ca(sessions, vault)}, "acme/pebble",
                    dns=[bind_dns])
    corp = add_certificate(sessions, [f"{unique_label}.corp"])
    public = add_certificate(sessions, [f"{unique_label}.example.test"])
    assert issuers.set_issuer(svc, corp, issuer="private-ca").source is ChoiceSource.SET
    assert issuers.issuer_settings(svc, public).source is ChoiceSource.DEFAULT

    assert _issue(svc, corp).kind is SubmitKind.ISSUED
    assert _issue(svc, public).kind is SubmitKind.ISSUED

    assert _issuer_cn(svc, corp) == "certpilot default Intermediate"
    assert "Pebble" in _issuer_cn(svc, public)
    with svc.session(readonly=True) as s:
        from certpilot.operations.applications import application_state

        assert application_state(s, corp)["issuer"] == "private-ca"
        assert application_state(s, public)["issuer"] == "acme/pebble"


def test_unknown_issuer_refused_and_private_ca_origin_never_sent_to_acme(pebble, bind_server, bind_dns, sessions,
                                                                           vault, db_url, unique_label):
    """A name that is not configured is refused (nothing written); a private-CA certificate with
    no private CA configured is refused rather than sent to the public ACME CA."""
    acme = bind_issuer(pebble, bind_server, bind_dns, sessions, vault)
    svc = _services(db_url, vault, {"acme/pebble": acme}, "acme/pebble", dns=[bind_dns])
    cid = add_certificate(sessions, [f"{unique_label}.example.test"])
    with pytest.raises(RefusedError) as refused:
        issuers.set_issuer(svc, cid, issuer="acme/nowhere")
    assert "acme/nowhere" in refused.value.message and "acme/pebble" in refused.value.message
    assert issuers.issuer_settings(svc, cid).source is ChoiceSource.DEFAULT  # nothing written
    pca = new_id()
    with sessions() as s:
        Repository(s).add_certificate(Certificate(id=pca, common_name=f"{unique_label}.corp",
                                                  names=[f"{unique_label}.corp"], cert_type=CertType.SINGLE,
                                                  origin=Origin.PRIVATE_CA, state=Status.PENDING_APPLICATION),
                                      now=datetime.now(UTC))
    with pytest.raises(RefusedError) as refused:
        _issue(svc, pca)
    assert refused.value.refusal.reason.value == "UnknownIssuer"


def test_stopped_pebble_falls_back_and_operator_is_told(tmp_path, bind_server, sessions, vault, db_url,
                                                         unique_label):
    """Pebble stopped: the order goes to the fallback (the private CA); the fallback is audited
    and the operator hears of it (the inbox and the configured channel)."""
    down = start_pebble(tmp_path / "pebble-down", bind_server.port)
    stop(down.proc)  # the CA is down: its directory refuses connections
    acme = AcmeIssuer(down.directory_url, accounts=SqlAcmeAccountStore(sessions), vault=vault,
                      ca_bundle=str(down.ca_bundle), publicly_trusted=False)
    told = Collecting()
    svc = _services(db_url, vault, {"acme/down": acme, "private-ca": _private_ca(sessions, vault, suffixes=())},
                    "acme/down", notifier=told)
    cid = add_certificate(sessions, [f"{unique_label}.example.test"])
    issuers.set_issuer(svc, cid, fallbacks=["private-ca"])

    out = _issue(svc, cid)

    assert out.kind is SubmitKind.ISSUED and out.issuer == "private-ca"
    assert _issuer_cn(svc, cid) == "certpilot default Intermediate"
    assert [e.kind.value for e in told.events] == ["issuer_fallback"]
    assert "acme/down" in told.events[0].body and "private-ca" in told.events[0].body
    with svc.session(readonly=True) as s:
        audit = [a.why for a in Repository(s).audit(cid)]
    assert any("falling back to private-ca" in w for w in audit)
    from certpilot.operations import inbox

    assert any(m.kind == "issuer_fallback" and m.certificate_id == cid for m in inbox.messages(svc))


def _import_official(sessions, vault, names: list[str], *, days_left: int) -> str:
    now = datetime.now(UTC)
    ca = make_ca("issue13 old CA")
    old = make_leaf(ca, names, not_before=now - timedelta(days=90 - days_left), not_after=now + timedelta(days=days_left))
    with sessions() as s:
        res = import_certificate(s, cert_pem=old.cert_pem, key_pem=old.key_pem, chain_pem=b"".join(old.chain_pems),
                                 origin=Origin.OFFICIAL, level=Level.DV, brand="DigiCert", owner="ops@example.test",
                                 now=now, vault=vault)
    return res.certificate.id


def test_free_acme_issuer_renews_without_quota(pebble, bind_server, bind_dns, sessions, vault, db_url, unique_label):
    """A Let's Encrypt-like free issuer (paid=False): the renewal is paid at once with no quota
    bought, no ledger entry, no payment form; its certificate is issued by Pebble. The same
    renewal through a paid issuer waits for payment."""
    name = f"{unique_label}.example.test"
    paid = _services(db_url, vault, {"acme/pebble": bind_issuer(pebble, bind_server, bind_dns, sessions, vault)},
                     "acme/pebble", dns=[bind_dns])
    cid = _import_official(sessions, vault, [name], days_left=20)
    preview = orders.preview(paid, cid, years=1)
    assert preview.shortfall > 0  # the seed's paid model: no quota bought, a charge to approve

    free_acme = bind_issuer(pebble, bind_server, bind_dns, sessions, vault, paid=False)
    svc = _services(db_url, vault, {"acme/pebble": free_acme}, "acme/pebble", dns=[bind_dns])
    result = orders.renew(svc, cid, years=1)

    assert not result.awaiting_payment and result.pending is None and result.order.state.value == "paid"
    assert result.ledger == []
    assert all(line.needed == 0 and line.shortfall == 0 for line in result.order.payment)
    with svc.session(readonly=True) as s:
        assert Repository(s).balances().quota == {}
    child = result.certificate_ids[0]
    assert issuers.issuer_settings(svc, child).issuer == "acme/pebble" and not issuers.issuer_settings(svc, child).paid
    assert _issue(svc, child).kind is SubmitKind.ISSUED
    assert "Pebble" in _issuer_cn(svc, child)


def test_revoke_through_pebble(pebble, bind_server, bind_dns, sessions, vault, db_url, unique_label):
    """`revoke`: Pebble revokes (a second revocation at the CA is answered alreadyRevoked); the
    certificate is REVOKED, the owner told; a second `revoke` changes nothing."""
    acme = bind_issuer(pebble, bind_server, bind_dns, sessions, vault)
    told = Collecting()
    svc = _services(db_url, vault, {"acme/pebble": acme}, "acme/pebble", dns=[bind_dns], notifier=told)
    cid = add_certificate(sessions, [f"{unique_label}.example.test"])
    assert _issue(svc, cid).kind is SubmitKind.ISSUED

    r = issuers.revoke(svc, cid, reason="keyCompromise")

    assert r.issuer == "acme/pebble" and not r.already
    with svc.session(readonly=True) as s:
        repo = Repository(s)
        assert repo.certificate_model(cid).state is Status.REVOKED
        leaf = repo.get_certificate(cid).leaf_pem
    with pytest.raises(PermanentError, match="alreadyRevoked"):
        acme.revoke(leaf, "keyCompromise")  # the CA holds it revoked
    assert [e.kind.value for e in told.events] == ["revoked"]
    assert issuers.revoke(svc, cid, reason="keyCompromise").already
    with pytest.raises(BadInputError, match="keyCompromise"):
        issuers.revoke(svc, cid, reason="because")


def test_revoke_through_private_ca_lists_serial_in_crl(sessions, vault, db_url, unique_label):
    """The private CA revokes and its fresh CRL lists the serial (signed by its intermediate)."""
    pca = _private_ca(sessions, vault)
    svc = _services(db_url, vault, {"private-ca": pca}, "private-ca")
    cid = add_certificate(sessions, [f"{unique_label}.corp"])
    assert _issue(svc, cid).kind is SubmitKind.ISSUED

    r = issuers.revoke(svc, cid, reason="superseded")

    crl = x509.load_pem_x509_crl(r.crl_pem.encode())
    inter = x509.load_pem_x509_certificate(pca.chain_pems()[0].encode())
    assert crl.is_signature_valid(inter.public_key())
    assert crl.get_revoked_certificate_by_serial_number(int(r.serial, 16)) is not None
    with svc.session(readonly=True) as s:
        assert Repository(s).certificate_model(cid).state is Status.REVOKED


def test_acme_directory_must_be_https(sessions, vault):
    """A plain-http directory is refused unless explicitly allowed (test servers only)."""
    with pytest.raises(BadInputError, match="not https"):
        AcmeIssuer("http://127.0.0.1:1/dir", accounts=SqlAcmeAccountStore(sessions), vault=vault)
    assert AcmeIssuer("http://127.0.0.1:1/dir", accounts=SqlAcmeAccountStore(sessions), vault=vault,
                      allow_insecure=True).directory_url.startswith("http://")

