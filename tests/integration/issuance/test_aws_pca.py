"""AWS Private CA (`acm-pca`) as an issuer, on moto_server (issue 13): a certificate named for it
is issued by it; its renewal (a free issuer: no quota) inherits the issuer and is issued by it
too; revocation goes to AWS.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from certpilot import runtime as rt
from certpilot.adapters.issuers.aws_pca import AwsPrivateCa
from certpilot.core.issuers import ChoiceSource
from certpilot.core.models import Status
from certpilot.core.outcomes import SubmitKind
from certpilot.operations import issuers, orders, pipeline
from certpilot.store.repository import Repository
from tests.integration.issuance.conftest import add_certificate

pytestmark = [pytest.mark.servers]

ROOT_TEMPLATE = "arn:aws:acm-pca:::template/RootCACertificate/V1"


@pytest.fixture(scope="module")
def aws_ca(moto_server) -> tuple[object, str]:
    """An ACTIVE root CA in moto: created, its CSR signed by itself, the certificate imported."""
    client = moto_server.client("acm-pca")
    arn = client.create_certificate_authority(
        CertificateAuthorityConfiguration={"KeyAlgorithm": "RSA_2048", "SigningAlgorithm": "SHA256WITHRSA",
                                           "Subject": {"CommonName": "issue13 AWS PCA"}},
        CertificateAuthorityType="ROOT")["CertificateAuthorityArn"]
    csr = client.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
    root_arn = client.issue_certificate(CertificateAuthorityArn=arn, Csr=csr.encode(), SigningAlgorithm="SHA256WITHRSA",
                                        TemplateArn=ROOT_TEMPLATE, Validity={"Value": 3650, "Type": "DAYS"})["CertificateArn"]
    root = client.get_certificate(CertificateAuthorityArn=arn, CertificateArn=root_arn)["Certificate"]
    client.import_certificate_authority_certificate(CertificateAuthorityArn=arn, Certificate=root.encode())
    return client, arn


def _cn(pem: str, issuer: bool = True) -> str:
    cert = x509.load_pem_x509_certificate(pem.encode())
    return (cert.issuer if issuer else cert.subject).get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def test_aws_private_ca_issues_and_renews(aws_ca, sessions, vault, db_url, unique_label):
    client, arn = aws_ca
    pca = AwsPrivateCa(client, arn, validity_days=90)
    ref = "aws-pca/test"
    svc = rt.local_services(database_url=db_url, vault=vault, issuers={ref: pca, "private-ca": object()},
                            default_issuer="private-ca")
    cid = add_certificate(sessions, [f"{unique_label}.internal.example.test"], brand="DigiCert")
    issuers.set_issuer(svc, cid, issuer=ref)

    pipeline.prepare(svc, cid)
    assert pipeline.submit(svc, cid).kind is SubmitKind.ISSUED
    with svc.session(readonly=True) as s:
        first = Repository(s).get_certificate(cid)
        assert _cn(first.leaf_pem) == "issue13 AWS PCA" and first.state == Status.ISSUED.value
        first_serial, not_after = first.serial, first.not_after

    # Near its expiry the renewal is ordered (no quota: the issuer is free) and applied for at AWS.
    later = rt.local_services(database_url=db_url, vault=vault, issuers={ref: pca, "private-ca": object()},
                              default_issuer="private-ca", clock=lambda: not_after - timedelta(days=20))
    renewal = orders.renew(later, cid, years=1)
    assert not renewal.awaiting_payment and renewal.ledger == []
    child = renewal.certificate_ids[0]
    settings = issuers.issuer_settings(later, child)
    assert (settings.issuer, settings.source) == (ref, ChoiceSource.INHERITED)
    pipeline.prepare(later, child)
    assert pipeline.submit(later, child).kind is SubmitKind.ISSUED
    with later.session(readonly=True) as s:
        renewed = Repository(s).get_certificate(child)
        assert _cn(renewed.leaf_pem) == "issue13 AWS PCA" and renewed.serial != first_serial
        assert renewed.parent_id == cid

    revoked = issuers.revoke(later, cid, reason="superseded")
    assert revoked.issuer == ref
    with later.session(readonly=True) as s:
        assert Repository(s).certificate_model(cid).state is Status.REVOKED


def test_aws_private_ca_refuses_names_outside_its_suffixes(aws_ca, sessions, vault, db_url, unique_label):
    """A name outside the CA's allowed suffixes is refused before AWS is asked (nothing placed)."""
    from certpilot.core.errors import RefusedError

    client, arn = aws_ca
    svc = rt.local_services(database_url=db_url, vault=vault,
                            issuers={"aws-pca/corp": AwsPrivateCa(client, arn, allowed_suffixes=["corp"])},
                            default_issuer="aws-pca/corp")
    cid = add_certificate(sessions, [f"{unique_label}.example.test"])
    pipeline.prepare(svc, cid)
    with pytest.raises(RefusedError, match="outside the names"):
        pipeline.submit(svc, cid)
    with svc.session(readonly=True) as s:
        from certpilot.operations.applications import application_state

        state = application_state(s, cid)
        assert state["order_ref"] is None
