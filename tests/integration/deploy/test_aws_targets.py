"""AWS targets against moto_server: ACM re-import into the same ARN, ALB listener swap (DEP-1, DEP-7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certpilot.adapters.deploy.aws_acm import AcmTarget
from certpilot.adapters.deploy.aws_elb import ElbListenerTarget
from certpilot.adapters.deploy.base import DeployMaterial, RollbackImpossibleError
from certpilot.adapters.deploy.factory import default_target_factory
from certpilot.core.deployment import DeploymentState, TargetKind, VerifyResult
from certpilot.operations.deployments import add_target, deploy, plan_deployments
from certpilot.store.db import session_scope
from tests.integration.deploy.conftest import NOW, add_cert, key_opener, sessions
from tests.servers.certs import make_ca, make_leaf

pytestmark = pytest.mark.servers
# ACM refuses certificates expired by the wall clock: validity around the real now.
T = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def ca():
    return make_ca("aws intermediate", issuer=make_ca("aws root"))


def material(leaf, cid="c-1") -> DeployMaterial:
    return DeployMaterial.from_pems(cid, leaf.fullchain_pem, key=lambda: leaf.key_pem)


def acm_not_after(acm, arn):
    return acm.describe_certificate(CertificateArn=arn)["Certificate"]["NotAfter"]


def ok_verifier(material, endpoints, target, old_fingerprint):
    return VerifyResult(True, "checked by the test")


def failing_verifier(material, endpoints, target, old_fingerprint):
    return VerifyResult(False, "the endpoint still serves the old certificate (test)")


def test_dep1_acm_reimport_keeps_arn_and_updates_not_after(moto_server, ca, deploy_db, vault):
    """DEP-1: the ACM target re-imports into the same ARN (bindings keep working); NotAfter is the new one."""
    acm = moto_server.client("acm")
    old = make_leaf(ca, ["acm.example.test"], not_before=T - timedelta(days=80), not_after=T + timedelta(days=10))
    new = make_leaf(ca, ["acm.example.test"], not_before=T, not_after=T + timedelta(days=395))
    arn = acm.import_certificate(Certificate=old.cert_pem, PrivateKey=old.key_pem,
                                 CertificateChain=b"".join(old.chain_pems))["CertificateArn"]
    with session_scope(deploy_db) as s:
        old_id = add_cert(s, vault, old)
        add_target(s, old_id, TargetKind.AWS_ACM, now=NOW,
                   config={"certificate_arn": arn, "endpoint_url": moto_server.endpoint_url})
        new_id = add_cert(s, vault, new, parent_id=old_id)
        task = plan_deployments(s, new_id, now=NOW)[0]
    done = deploy(sessions(deploy_db), task.id, default_target_factory(aws=lambda svc, cfg: moto_server.client(svc)),
                  key_opener(deploy_db, vault), ok_verifier)
    assert done.state is DeploymentState.SUCCEEDED, done.details
    assert acm_not_after(acm, arn) == new.not_after
    assert acm.get_certificate(CertificateArn=arn)["Certificate"].encode().strip() == new.cert_pem.strip()
    assert len([c for c in acm.list_certificates()["CertificateSummaryList"] if c["CertificateArn"] == arn]) == 1


def test_dep7_acm_failed_verification_reimports_previous_with_vault_key(moto_server, ca, deploy_db, vault):
    """DEP-7: verification fails → the previous certificate is re-imported into the ARN, its key
    taken from our vault (ACM never returns it)."""
    acm = moto_server.client("acm")
    old = make_leaf(ca, ["acm2.example.test"], not_before=T, not_after=T + timedelta(days=10))
    new = make_leaf(ca, ["acm2.example.test"], not_before=T, not_after=T + timedelta(days=395))
    arn = acm.import_certificate(Certificate=old.cert_pem, PrivateKey=old.key_pem)["CertificateArn"]
    with session_scope(deploy_db) as s:
        old_id = add_cert(s, vault, old)
        add_target(s, old_id, TargetKind.AWS_ACM, now=NOW, config={"certificate_arn": arn})
        new_id = add_cert(s, vault, new, parent_id=old_id)
        task = plan_deployments(s, new_id, now=NOW)[0]
    done = deploy(sessions(deploy_db), task.id, default_target_factory(aws=lambda svc, cfg: moto_server.client(svc)),
                  key_opener(deploy_db, vault), failing_verifier)
    assert done.state is DeploymentState.ROLLED_BACK, done.details
    assert acm_not_after(acm, arn) == old.not_after


def test_dep7_acm_rollback_without_previous_key_says_not_possible(moto_server, ca):
    """DEP-7: without the previous key, rollback is refused with a sentence saying why and what to do."""
    acm = moto_server.client("acm")
    old = make_leaf(ca, ["acm3.example.test"], not_before=T, not_after=T + timedelta(days=10))
    new = make_leaf(ca, ["acm3.example.test"], not_before=T, not_after=T + timedelta(days=300))
    arn = acm.import_certificate(Certificate=old.cert_pem, PrivateKey=old.key_pem)["CertificateArn"]
    target = AcmTarget("t", acm, arn, previous_key=None)
    target.stage(material(new))
    target.validate()
    target.commit()
    with pytest.raises(RollbackImpossibleError) as exc:
        target.rollback()
    assert "ACM never returns the private key" in str(exc.value)
    assert "PRIVATE KEY" not in str(exc.value)


def default_cert(elb, arn):
    return elb.describe_listeners(ListenerArns=[arn])["Listeners"][0]["Certificates"][0]["CertificateArn"]


def listed(elb, arn):
    return {c["CertificateArn"] for c in elb.describe_listener_certificates(ListenerArn=arn)["Certificates"]
            if not c.get("IsDefault")}


def test_dep1_alb_default_certificate_swapped_and_rolled_back(listener, ca):
    """DEP-1/DEP-7: the listener's default certificate becomes the new one; rollback restores the
    old default and deletes the imported certificate."""
    elb, acm, arn = listener["elb"], listener["acm"], listener["arn"]
    new = make_leaf(ca, ["alb.example.test"], not_before=T, not_after=T + timedelta(days=395))
    target = ElbListenerTarget("t", elb, acm, arn, mode="default")
    target.stage(material(new))
    target.validate()
    target.commit()
    new_arn = target.new_certificate_arn
    assert default_cert(elb, arn) == new_arn
    assert acm_not_after(acm, new_arn) == new.not_after
    target.rollback()
    assert default_cert(elb, arn) == listener["old_arn"]
    assert new_arn not in {c["CertificateArn"] for c in acm.list_certificates()["CertificateSummaryList"]}


def test_dep1_alb_sni_certificate_added_old_removed_only_after_verification(listener, ca):
    """DEP-1: in SNI mode the new certificate is added beside the old one; the old one is removed
    only by finalize(), the step after verification."""
    elb, acm, arn = listener["elb"], listener["acm"], listener["arn"]
    sni_old = make_leaf(ca, ["sni.example.test"], not_before=T, not_after=T + timedelta(days=10))
    sni_old_arn = acm.import_certificate(Certificate=sni_old.cert_pem, PrivateKey=sni_old.key_pem)["CertificateArn"]
    elb.add_listener_certificates(ListenerArn=arn, Certificates=[{"CertificateArn": sni_old_arn}])
    new = make_leaf(ca, ["sni.example.test"], not_before=T, not_after=T + timedelta(days=395))
    target = ElbListenerTarget("t", elb, acm, arn, mode="sni", old_certificate_arn=sni_old_arn)
    target.stage(material(new))
    target.validate()
    target.commit()
    target.reload()
    assert listed(elb, arn) >= {sni_old_arn, target.new_certificate_arn}   # both until verified
    assert default_cert(elb, arn) == listener["old_arn"]
    target.finalize()
    assert sni_old_arn not in listed(elb, arn)
    assert target.new_certificate_arn in listed(elb, arn)


class _Killed(BaseException):
    """The process dies here (not an Exception: nothing on the way catches it)."""


def test_dep7_acm_rerun_after_crash_rolls_back_to_the_certificate_before_the_first_run(moto_server, ca, deploy_db,
                                                                                      vault):
    """DEP-7 across a crash: run 1 re-imports the new certificate and dies before verifying; the
    ARN now holds the new one. Run 2 (after the lease) fails verification: it must restore the
    certificate from before run 1, kept in the task's checkpoint — not the dead run's new one."""
    acm = moto_server.client("acm")
    old = make_leaf(ca, ["acm4.example.test"], not_before=T, not_after=T + timedelta(days=10))
    new = make_leaf(ca, ["acm4.example.test"], not_before=T, not_after=T + timedelta(days=395))
    arn = acm.import_certificate(Certificate=old.cert_pem, PrivateKey=old.key_pem)["CertificateArn"]

    def dying_verifier(material, endpoints, target, old_fingerprint):
        raise _Killed()

    factory = default_target_factory(aws=lambda svc, cfg: moto_server.client(svc))
    with session_scope(deploy_db) as s:
        old_id = add_cert(s, vault, old)
        add_target(s, old_id, TargetKind.AWS_ACM, now=NOW, config={"certificate_arn": arn})
        new_id = add_cert(s, vault, new, parent_id=old_id)
        task = plan_deployments(s, new_id, now=NOW)[0]
    opener = key_opener(deploy_db, vault)
    with pytest.raises(_Killed):
        deploy(sessions(deploy_db), task.id, factory, opener, dying_verifier, now=T, clock=lambda: T)
    assert acm_not_after(acm, arn) == new.not_after  # the dead run left the new one in the ARN
    later = T + timedelta(minutes=20)
    done = deploy(sessions(deploy_db), task.id, factory, opener, failing_verifier, now=later, clock=lambda: later)
    assert done.state is DeploymentState.ROLLED_BACK, done.details
    assert acm_not_after(acm, arn) == old.not_after


def test_dep7_alb_rerun_after_crash_restores_the_original_default_and_orphans_nothing(listener, ca, deploy_db,
                                                                                       vault, moto_server):
    """DEP-7 across a crash on a load balancer: run 1 imports the new certificate, makes it the
    listener's default and dies; run 2 reuses that import (no second one) and, when verification
    fails, restores the default from before run 1 and deletes the import."""
    elb, acm, arn = listener["elb"], listener["acm"], listener["arn"]
    new = make_leaf(ca, ["alb.example.test"], not_before=T, not_after=T + timedelta(days=395))

    def dying_verifier(material, endpoints, target, old_fingerprint):
        raise _Killed()

    before = {c["CertificateArn"] for c in acm.list_certificates()["CertificateSummaryList"]}
    factory = default_target_factory(aws=lambda svc, cfg: moto_server.client(svc))
    with session_scope(deploy_db) as s:
        old = make_leaf(ca, ["alb.example.test"], not_before=T, not_after=T + timedelta(days=10))
        old_id = add_cert(s, vault, old)
        add_target(s, old_id, TargetKind.AWS_ELB, now=NOW, config={"listener_arn": arn, "mode": "default"})
        new_id = add_cert(s, vault, new, parent_id=old_id)
        task = plan_deployments(s, new_id, now=NOW)[0]
    opener = key_opener(deploy_db, vault)
    with pytest.raises(_Killed):
        deploy(sessions(deploy_db), task.id, factory, opener, dying_verifier, now=T, clock=lambda: T)
    assert default_cert(elb, arn) != listener["old_arn"]  # the dead run left the new default
    later = T + timedelta(minutes=20)
    done = deploy(sessions(deploy_db), task.id, factory, opener, failing_verifier, now=later, clock=lambda: later)
    assert done.state is DeploymentState.ROLLED_BACK, done.details
    assert default_cert(elb, arn) == listener["old_arn"]
    assert {c["CertificateArn"] for c in acm.list_certificates()["CertificateSummaryList"]} == before
