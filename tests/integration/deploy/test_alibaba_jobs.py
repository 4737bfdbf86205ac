"""CAS deployment jobs against the Alibaba Cloud emulator, through the official SDK and certpilot's
`AlibabaApi`: a renewal's managed task deploys the new certificate to the cloud resources the old
one was on and a TLS probe of each resource's domain sees it (DEP-1, DEP-2, VER-1); a failing job
is rolled back and the resources serve the old certificate again (DEP-7); a crash between the
job's creation and its start leaves one job (DEP-2 re-entrancy)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certpilot.adapters.deploy.alibaba_jobs import DeploymentJobTarget
from certpilot.adapters.deploy.base import DeployMaterial
from certpilot.adapters.deploy.factory import default_target_factory
from certpilot.adapters.probe.tls import TrustBundle, probe_sync
from certpilot.adapters.probe.verifier import ProbeVerifier
from certpilot.core.deployment import DeploymentState, TargetKind
from certpilot.core.verification import Endpoint
from certpilot.operations.deployments import add_target, deploy, plan_deployments
from certpilot.store.db import session_scope
from tests.integration.deploy.conftest import NOW, add_cert, key_opener, sessions
from tests.servers.certs import Leaf, make_ca, make_leaf

pytestmark = pytest.mark.servers
T = datetime.now(UTC).replace(microsecond=0)  # the emulator's TLS listener and the probe use the real time
SLB_NAME = "shop.example.test"
CDN_NAME = "cdn.shop.example.test"


class Killed(BaseException):
    """The process dies here (not an Exception: nothing on the way catches it)."""


@pytest.fixture(scope="module")
def ca():
    return make_ca("renewal intermediate", issuer=make_ca("renewal root"))


@pytest.fixture
def estate(alibaba, ca, deploy_db, vault):
    """The old certificate bought in CAS (key held) on an SLB listener and a CDN domain, imported
    into certpilot with an alibaba-deployment-job target over both; its renewal planned (DEP-2)."""
    seed = alibaba.seed_certificate([SLB_NAME, CDN_NAME], source="buy", not_before=(T - timedelta(days=300)).isoformat(),
                                    not_after=(T + timedelta(days=20)).isoformat(),
                                    resources=[{"domain": SLB_NAME, "cloud_product": "SLB"},
                                               {"domain": CDN_NAME, "cloud_product": "CDN"}])
    old = Leaf(cert_pem=seed["cert_pem"].encode(), key_pem=seed["key_pem"].encode(),
               chain_pems=[alibaba.intermediate_pem.encode()], not_before=T - timedelta(days=300),
               not_after=T + timedelta(days=20), names=[SLB_NAME, CDN_NAME])
    new = make_leaf(ca, [SLB_NAME, CDN_NAME], not_before=T - timedelta(hours=1), not_after=T + timedelta(days=395))
    endpoints = [("127.0.0.1", alibaba.tls_port, n) for n in (SLB_NAME, CDN_NAME)]
    with session_scope(deploy_db) as s:
        old_id = add_cert(s, vault, old)
        target = add_target(s, old_id, TargetKind.ALIBABA_JOB, name="shop on Alibaba Cloud", now=NOW,
                            config={"resource_ids": seed["resource_ids"], "cert_id": seed["cert_id"], "timeout": 20},
                            endpoints=endpoints)
        new_id = add_cert(s, vault, new, parent_id=old_id)
        (task,) = plan_deployments(s, new_id, now=NOW)
    trust = TrustBundle.from_pem(ca.root_pem + alibaba.root_pem.encode())
    return {"seed": seed, "old": old, "new": new, "target": target, "task": task, "trust": trust,
            "resources": seed["resource_ids"]}


def served(alibaba, name: str, trust) -> str | None:
    """The fingerprint the emulator's TLS listener serves for `name` (the resource of that domain)."""
    return probe_sync(Endpoint("127.0.0.1", alibaba.tls_port, name), trust=trust, timeout=5).fingerprint


def run(alibaba, deploy_db, vault, estate):
    factory = default_target_factory(alibaba=lambda cfg: alibaba.connection().cas())
    return deploy(sessions(deploy_db), estate["task"].id, factory, key_opener(deploy_db, vault),
                  ProbeVerifier(estate["trust"], deadline=5.0))


def test_dep2_ver1_deployment_job_puts_the_new_certificate_on_every_resource(alibaba, estate, deploy_db, vault):
    """DEP-2 (and DEP-1, VER-1): the managed task uploads the new certificate to CAS, runs one
    deployment job over the old certificate's resources, and the TLS listener then serves the new
    leaf for each resource's domain — proven by certpilot's probe, trusting the CA's root."""
    old, new, trust = estate["old"], estate["new"], estate["trust"]
    assert served(alibaba, SLB_NAME, trust) == old.fingerprint == estate["seed"]["fingerprint_sha256"]

    done = run(alibaba, deploy_db, vault, estate)

    assert done.state is DeploymentState.SUCCEEDED, done.details
    assert "2 endpoint(s) serve" in done.details
    for name in (SLB_NAME, CDN_NAME):
        assert served(alibaba, name, trust) == new.fingerprint
    (upload,) = alibaba.calls("UploadUserCertificate")
    assert "PRIVATE KEY" not in str(upload)  # the emulator masks keys in its log; nothing else echoes one
    new_cert_id = upload["response"]["CertId"]
    assert {alibaba.resource_cert_id(r) for r in estate["resources"]} == {new_cert_id}
    (create,) = alibaba.calls("CreateDeploymentJob")
    assert create["params"]["JobType"] == "user" and create["params"]["CertIds"] == str(new_cert_id)
    assert create["params"]["ResourceIds"] == ",".join(map(str, estate["resources"]))
    assert "PRIVATE KEY" not in done.details


def test_dep7_failing_job_is_rolled_back_and_the_old_certificate_is_served_again(alibaba, estate, deploy_db,
                                                                                  vault):
    """DEP-7: the job fails on the CDN domain after switching the SLB listener; the task rolls the
    job back (CreateRollbackTask) and ends ROLLED_BACK; every resource is on its old CertId and the
    listener serves the old certificate again."""
    slb, cdn = estate["resources"]
    alibaba.fail_deployment(resource_id=cdn, message="CDN domain is locked")

    done = run(alibaba, deploy_db, vault, estate)

    assert done.state is DeploymentState.ROLLED_BACK, done.details
    (create,) = alibaba.calls("CreateDeploymentJob")
    job_id = create["response"]["JobId"]
    assert f"job {job_id} ended error" in done.details
    job = alibaba.job(job_id)
    assert job["rollback"] == 1 and job["previous"] == {str(slb): estate["seed"]["cert_id"]}
    # The real API's path: the job's workers listed, the one that deployed (the SLB's) rolled back
    # by its WorkerId; the job was created with the account's contact (ListContact).
    (rollback,) = alibaba.calls("CreateRollbackTask")
    (slb_worker,) = [w for w in alibaba.calls("ListWorkerResource")[0]["response"]["Data"] if w["ResourceId"] == slb]
    assert rollback["params"]["WorkerId"] == str(slb_worker["Id"])
    assert alibaba.calls("CreateDeploymentJob")[0]["params"]["ContactIds"] == "7001"
    assert {alibaba.resource_cert_id(r) for r in (slb, cdn)} == {estate["seed"]["cert_id"]}
    for name in (SLB_NAME, CDN_NAME):
        assert served(alibaba, name, estate["trust"]) == estate["old"].fingerprint


def test_dep2_rerun_after_crash_between_create_and_start_makes_no_second_job_or_upload(alibaba, estate, ca):
    """DEP-2 re-entrancy on the real API: run 1 uploads, creates the job and dies before starting
    it, its checkpoint lost; run 2 uploads with the same ClientToken (same CertId), finds the job
    by name, starts it, and the resources move — one certificate and one job in CAS."""
    new = estate["new"]
    material = DeployMaterial.from_pems("c-new", new.fullchain_pem, key=lambda: new.key_pem)

    class Dying:
        def __init__(self, api):
            self.api = api

        def call(self, what, method, request=None):
            if method == "update_deployment_job_status":
                raise Killed()
            return self.api.call(what, method, request)

    api = alibaba.connection().cas()
    first = DeploymentJobTarget("t-crash", Dying(api), estate["resources"], poll=0.1, timeout=10)
    first.stage(material)
    first.validate()
    with pytest.raises(Killed):
        first.commit()
    second = DeploymentJobTarget("t-crash", api, estate["resources"], poll=0.1, timeout=10)
    second.stage(material)
    second.validate()
    second.commit()
    second.reload()
    assert len(alibaba.calls("CreateDeploymentJob")) == 1
    assert len({c["response"]["CertId"] for c in alibaba.calls("UploadUserCertificate")}) == 1
    assert second.checkpoint["cert_id"] == first.checkpoint["cert_id"]
    assert {alibaba.resource_cert_id(r) for r in estate["resources"]} == {second.checkpoint["cert_id"]}
    assert served(alibaba, CDN_NAME, estate["trust"]) == new.fingerprint


def test_dep2_target_check_names_unknown_resources(alibaba, estate):
    """What `target add` runs on this host: the configured resources exist in CAS (nothing uploaded)."""
    api = alibaba.connection().cas()
    assert DeploymentJobTarget("t", api, estate["resources"]).check() == []
    problems = DeploymentJobTarget("t", api, [*estate["resources"], 987654]).check()
    assert [f for f, _ in problems] == ["resource_ids"] and "987654" in problems[0][1]
    assert not alibaba.calls("UploadUserCertificate")


def test_dep2_target_add_checks_the_resources_in_cas_before_storing(alibaba, estate, deploy_db, vault):
    """DEP-2: `target add` (operations.targets.add, what the CLI and the UI form call) builds the
    adapter with the services' Alibaba Cloud connection and refuses unknown resource ids, naming
    the field; known ones are stored."""
    from certpilot.core.errors import BadInputError
    from certpilot.operations import targets as ops
    from certpilot.runtime import local_services

    svc = local_services(database_url=deploy_db, vault=vault, issuers={},
                         target_factory=default_target_factory(alibaba=lambda cfg: alibaba.connection().cas()))
    cert_id = estate["target"].certificate_id
    endpoint = [("127.0.0.1", alibaba.tls_port, SLB_NAME)]
    with pytest.raises(BadInputError) as exc:
        ops.add(svc, cert_id, "alibaba-deployment-job", endpoints=endpoint,
                config=ops.config_of("alibaba-deployment-job", resource_ids=[str(estate["resources"][0]), "424242"]))
    assert "resource_ids: " in str(exc.value) and "424242" in str(exc.value)
    view = ops.add(svc, cert_id, "alibaba-deployment-job", endpoints=endpoint, name="slb only",
                   config=ops.config_of("alibaba-deployment-job", resource_ids=[str(estate["resources"][0])]))
    assert view.record.kind is TargetKind.ALIBABA_JOB and view.record.config == {"resource_ids": [estate["resources"][0]]}
    assert not alibaba.calls("UploadUserCertificate")


def test_dep1_uploaded_certificate_kept_in_cas_gets_its_successor_uploaded_back_once(alibaba, ca):
    """An uploaded certificate the operator keeps in CAS with no cloud resource (`upload_only`):
    its successor is uploaded back to CAS with its key, and a rerun after a crash uploads nothing
    twice (ClientToken); there is nothing to roll back."""
    from certpilot.adapters.deploy.alibaba_jobs import CasUploadTarget

    api = alibaba.connection().cas()
    new = make_leaf(ca, ["upload.example.test"], not_before=T - timedelta(hours=1), not_after=T + timedelta(days=90))
    material = DeployMaterial.from_pems("crt-upload", new.cert_pem, chain=b"".join(new.chain_pems),
                                        key=lambda: new.key_pem)
    first = CasUploadTarget("tgt-upload", api, name="kept in CAS")
    for step in (first.validate, first.commit, first.reload, first.finalize):
        step()  # nothing of these touches CAS
    first.stage(material)
    again = CasUploadTarget("tgt-upload", api)  # a new process after a crash, its checkpoint lost
    again.stage(material)
    assert again.checkpoint["cert_id"] == first.checkpoint["cert_id"]
    uploads = alibaba.calls("UploadUserCertificate")
    assert len(uploads) == 2 and {c["params"]["ClientToken"] for c in uploads} == {uploads[0]["params"]["ClientToken"]}
    listed = [c for c in alibaba.calls("UploadUserCertificate") if c["status"] == 200]
    assert {c["response"]["CertId"] for c in listed} == {first.checkpoint["cert_id"]}
    first.rollback()  # nothing to undo
    assert len(alibaba.calls("CreateRollbackTask")) == 0
