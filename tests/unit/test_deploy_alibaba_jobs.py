"""The CAS deployment-job target over a small in-memory CAS (orchestration only; the emulator
tests in tests/integration/deploy/test_alibaba_jobs.py prove it against the real SDK): re-entrant
across crashes (one upload, one job), a failed job rolled back (DEP-7), a deadline is transient;
the config check (DEP-2 targets), the factory, the operator's config and no key in any message."""

from __future__ import annotations

import pytest
from alibabacloud_cas20200407 import models

from certpilot.adapters.deploy.alibaba_jobs import (
    DeploymentJobTarget,
    certificate_name,
    client_token,
    job_name,
)
from certpilot.adapters.deploy.base import DeployError, DeployMaterial, DeployTarget, TransientDeployError
from certpilot.adapters.deploy.factory import default_target_factory
from certpilot.core.deployment import MANAGED_KINDS, TargetKind, TargetRecord, config_problems
from certpilot.core.errors import MissingBlockError, PermanentError, TransientError
from certpilot.operations.targets import config_of
from tests.servers.certs import make_ca, make_leaf

OLD_CERT = 11


class Killed(BaseException):
    """The process dies here (not an Exception: nothing on the way catches it)."""


class FakeCas:
    """CAS as `AlibabaApi.call` shows it: SDK response bodies in, certpilot's errors out.

    Jobs go editing → (scheduling) → `outcome` on the next DescribeDeploymentJob: "success" moves
    every resource, "error" moves the first only and fails, "processing" never ends.
    """

    def __init__(self, resources: dict[int, int | None], *, outcome: str = "success", workers: bool = True):
        self.resources = dict(resources)
        self.outcome = outcome
        self.workers = workers
        self.certs: dict[int, dict] = {}
        self.jobs: dict[int, dict] = {}
        self.calls: list[str] = []
        self.crash_on: str | None = None
        self.refuse: dict[str, Exception] = {}
        self._next = 100

    def call(self, what: str, method: str, request=None):
        self.calls.append(method)
        if method == self.crash_on:
            raise Killed(method)
        if method in self.refuse:
            raise self.refuse[method]
        return getattr(self, method)(request)

    def _id(self) -> int:
        self._next += 1
        return self._next

    def upload_user_certificate(self, r: models.UploadUserCertificateRequest):
        assert r.key and "PRIVATE KEY" in r.key and r.cert.count("BEGIN CERTIFICATE") == 2
        done = next((i for i, c in self.certs.items() if c["token"] == r.client_token), None)
        if done is None:
            if any(c["name"] == r.name for c in self.certs.values()):
                raise PermanentError(f"uploading: Alibaba Cloud CAS refused (NameRepeat): {r.name} exists")
            done = self._id()
            self.certs[done] = {"token": r.client_token, "name": r.name}
        return models.UploadUserCertificateResponseBody().from_map({"CertId": done})

    def list_cloud_resources(self, r: models.ListCloudResourcesRequest):
        data = [{"Id": i, "CertId": c, "Domain": "shop.example.test"} for i, c in self.resources.items()]
        return models.ListCloudResourcesResponseBody().from_map({"Data": data, "Total": len(data)})

    def list_contact(self, r):
        return models.ListContactResponseBody().from_map({"ContactList": [{"ContactId": 7}]})

    def create_deployment_job(self, r: models.CreateDeploymentJobRequest):
        jid = self._id()
        self.jobs[jid] = {"Id": jid, "Name": r.name, "Status": "editing", "Rollback": 0, "type": r.job_type,
                          "cert": int(r.cert_ids), "resources": [int(x) for x in r.resource_ids.split(",")],
                          "contacts": r.contact_ids, "workers": {}}
        return models.CreateDeploymentJobResponseBody().from_map({"JobId": jid})

    def list_deployment_job(self, r: models.ListDeploymentJobRequest):
        data = [_job_map(j) for j in self.jobs.values() if j["type"] == r.job_type
                and (r.cert_id is None or j["cert"] == r.cert_id)]
        return models.ListDeploymentJobResponseBody().from_map({"Data": data, "Total": len(data)})

    def update_deployment_job_status(self, r: models.UpdateDeploymentJobStatusRequest):
        job = self.jobs[r.job_id]
        assert job["Status"] == "editing", "started twice"
        job["Status"] = r.status
        return models.UpdateDeploymentJobStatusResponseBody()

    def describe_deployment_job(self, r: models.DescribeDeploymentJobRequest):
        job = self.jobs[r.job_id]
        if job["Status"] in ("scheduling", "processing"):
            job["Status"] = "processing"
            if self.outcome != "processing":
                moved = job["resources"] if self.outcome == "success" else job["resources"][:1]
                for rid in job["resources"]:
                    job["workers"][rid] = {"prev": self.resources[rid],
                                           "Status": "success" if rid in moved else "error"}
                    if rid in moved:
                        self.resources[rid] = job["cert"]
                job["Status"] = self.outcome
        return models.DescribeDeploymentJobResponseBody().from_map(_job_map(job))

    def list_worker_resource(self, r: models.ListWorkerResourceRequest):
        if not self.workers:
            err = PermanentError("listing: Alibaba Cloud CAS refused (InvalidAction.NotFound): no such api")
            err.service_code = "InvalidAction.NotFound"  # as `AlibabaApi.call` raises it
            raise err
        job = self.jobs[r.job_id]
        data = [{"Id": r.job_id * 1000 + rid, "ResourceId": rid, "JobId": r.job_id, "Status": w["Status"]}
                for rid, w in job["workers"].items()]
        return models.ListWorkerResourceResponseBody().from_map({"Data": data, "Total": len(data)})

    def create_rollback_task(self, r: models.CreateRollbackTaskRequest):
        job = self.jobs[r.job_id]
        assert job["Status"] in ("success", "error"), "rollback of a running job"
        for rid, w in job["workers"].items():
            if r.worker_id in (None, r.job_id * 1000 + rid) and w["Status"] == "success":
                self.resources[rid], w["Status"] = w["prev"], "rollback_success"
        job["Rollback"] = 1
        return models.CreateRollbackTaskResponseBody()


def _job_map(j: dict) -> dict:
    return {"Id": j["Id"], "Name": j["Name"], "Status": j["Status"], "Rollback": j["Rollback"], "Del": 0,
            "JobType": j["type"]}


class Clock:
    """A fake monotonic clock that `sleep` advances (no test waits for real)."""

    def __init__(self):
        self.t = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


@pytest.fixture(scope="module")
def material() -> DeployMaterial:
    ca = make_ca("cas intermediate", issuer=make_ca("cas root"))
    leaf = make_leaf(ca, ["*.shop.example.test", "shop.example.test"])
    return DeployMaterial.from_pems("cert-1", leaf.fullchain_pem, key=lambda: leaf.key_pem)


def target(api, clock: Clock | None = None, *, checkpoint: dict | None = None, **kw) -> DeploymentJobTarget:
    clock = clock or Clock()
    t = DeploymentJobTarget("t-ali", api, kw.pop("resource_ids", [201, "202"]), timeout=kw.pop("timeout", 30),
                            poll=2, sleep=clock.sleep, clock=clock, **kw)
    t.checkpoint = dict(checkpoint or {})
    return t


def run_through(t: DeploymentJobTarget, material: DeployMaterial) -> None:
    t.stage(material)
    t.validate()
    t.commit()
    t.reload()


def test_dep2_job_deploys_every_resource_and_describes_itself(material):
    """DEP-2: one upload, one "user" job over the resources, started and followed to success."""
    api = FakeCas({201: OLD_CERT, 202: OLD_CERT})
    t = target(api)
    assert isinstance(t, DeployTarget)
    run_through(t, material)
    new = t.checkpoint["cert_id"]
    assert api.resources == {201: new, 202: new}
    assert t.checkpoint["previous"] == {"201": OLD_CERT, "202": OLD_CERT}
    (job,) = api.jobs.values()
    assert job["Name"] == job_name("t-ali", material.fingerprint) and job["type"] == "user"
    assert job["resources"] == [201, 202] and job["contacts"] == "7"
    assert api.calls.count("update_deployment_job_status") == 1
    assert t.describe() == "CAS deployment job to 2 resource(s) (ids 201, 202)"
    t.finalize()  # nothing to drop: the old certificate stays in CAS
    assert api.resources == {201: new, 202: new}


def test_dep2_upload_twice_after_a_crash_gives_one_cert_id(material):
    """DEP-2 re-entrancy: a run that died before its checkpoint was stored uploads again with the
    same ClientToken and gets the same CertId: one certificate in CAS."""
    api = FakeCas({201: OLD_CERT, 202: OLD_CERT})
    first, second = target(api), target(api)
    first.stage(material)
    second.stage(material)  # a fresh adapter: the checkpoint of the first run was lost
    assert first.checkpoint["cert_id"] == second.checkpoint["cert_id"]
    assert len(api.certs) == 1 and api.calls.count("upload_user_certificate") == 2
    (entry,) = api.certs.values()
    assert entry["token"] == client_token("t-ali", material.fingerprint)
    assert entry["name"] == certificate_name(material.common_name, material.fingerprint)
    assert entry["name"].startswith("certpilot-wildcard-shop-example-test-") and len(entry["name"]) <= 63
    # A rerun with the checkpoint uploads nothing.
    third = target(api, checkpoint=first.checkpoint)
    third.stage(material)
    assert api.calls.count("upload_user_certificate") == 2


@pytest.mark.parametrize("keep_checkpoint", [True, False])
def test_dep2_rerun_after_crash_between_create_and_start_finds_the_job(material, keep_checkpoint):
    """DEP-2 re-entrancy: run 1 creates the job and dies before starting it; run 2 (with or without
    run 1's checkpoint) finds that job — by id, or by its deterministic name — starts it, and
    never creates a second one."""
    api = FakeCas({201: OLD_CERT, 202: OLD_CERT})
    first = target(api)
    first.stage(material)
    first.validate()
    api.crash_on = "update_deployment_job_status"
    with pytest.raises(Killed):
        first.commit()
    api.crash_on = None
    second = target(api, checkpoint=first.checkpoint if keep_checkpoint else None)
    run_through(second, material)
    assert api.calls.count("create_deployment_job") == 1 and len(api.jobs) == 1
    assert api.calls.count("update_deployment_job_status") == 2  # the crashed call, then the start
    assert set(api.resources.values()) == {second.checkpoint["cert_id"]}


def test_dep2_rerun_after_the_job_succeeded_starts_nothing(material):
    """A rerun after a crash that followed a finished job neither creates nor starts a job."""
    api = FakeCas({201: OLD_CERT})
    run_through(target(api, resource_ids=[201]), material)
    again = target(api, resource_ids=[201])
    run_through(again, material)
    assert api.calls.count("create_deployment_job") == 1
    assert api.calls.count("update_deployment_job_status") == 1


@pytest.mark.parametrize("workers", [True, False])
def test_dep7_failed_job_is_rolled_back(material, workers):
    """DEP-7: a job that ends "error" fails commit naming the job and its status; rollback creates
    the rollback task(s) (per worker that applied the certificate, or one for the job where the
    service lists no workers) and waits until every resource is on its previous CertId."""
    api = FakeCas({201: OLD_CERT, 202: 12}, outcome="error", workers=workers)
    t = target(api)
    t.stage(material)
    t.validate()
    with pytest.raises(DeployError) as exc:
        t.commit()
    job_id = next(iter(api.jobs))
    assert exc.value.step == "commit" and f"job {job_id} ended error" in str(exc.value)
    assert api.resources[201] == t.checkpoint["cert_id"]  # partly applied
    t.rollback()
    assert api.resources == {201: OLD_CERT, 202: 12}
    assert api.calls.count("create_rollback_task") == 1
    assert "job_id" not in t.checkpoint and t.checkpoint["round"] == 1
    # A later run of the task (after a fix) deploys with a new job, not the rolled-back one.
    api.outcome = "success"
    run_through(t, material)
    assert len(api.jobs) == 2 and set(api.resources.values()) == {t.checkpoint["cert_id"]}
    assert sorted(j["Name"] for j in api.jobs.values())[-1].endswith("-r1")


def test_dep7_verification_failure_after_success_rolls_back_and_a_rerun_rolls_back_once(material):
    """DEP-7: after a successful job whose verification failed, rollback restores the resources;
    a rerun of the rollback (a crash after it) creates no second rollback task."""
    api = FakeCas({201: OLD_CERT, 202: OLD_CERT})
    t = target(api)
    run_through(t, material)
    saved = dict(t.checkpoint)
    t.rollback()
    assert api.resources == {201: OLD_CERT, 202: OLD_CERT}
    tasks = api.calls.count("create_rollback_task")
    again = target(api, checkpoint=saved)  # the checkpoint from before the rollback was recorded
    again.stage(material)
    again.rollback()
    assert api.calls.count("create_rollback_task") == tasks
    assert api.resources == {201: OLD_CERT, 202: OLD_CERT}


def test_dep7_nothing_started_nothing_undone(material):
    """DEP-7: a rollback before any job (validate failed) calls no rollback and changes nothing."""
    api = FakeCas({201: OLD_CERT})
    t = target(api, resource_ids=[201, 999])
    t.stage(material)
    with pytest.raises(DeployError) as exc:
        t.validate()
    assert exc.value.step == "validate" and "no cloud resource with id 999;" in str(exc.value)
    t.rollback()
    assert "create_rollback_task" not in api.calls and "create_deployment_job" not in api.calls
    assert api.resources == {201: OLD_CERT}


def test_deadline_is_transient_and_names_the_job(material):
    """A job still running at the deadline: TransientDeployError naming the job id (it goes on in
    CAS; a rerun follows the same job). The poll sleeps the fake clock, never the test."""
    api = FakeCas({201: OLD_CERT}, outcome="processing")
    clock = Clock()
    t = target(api, clock, resource_ids=[201], timeout=9)
    t.stage(material)
    t.validate()
    with pytest.raises(TransientDeployError) as exc:
        t.commit()
    job_id = next(iter(api.jobs))
    assert exc.value.step == "commit" and f"job {job_id} is still processing after 9s" in str(exc.value)
    assert clock.t == pytest.approx(9) and max(clock.slept) <= 2
    # Its rollback waits for the job too (a rollback would race it), bounded the same way.
    with pytest.raises(TransientDeployError) as exc:
        t.rollback()
    assert exc.value.step == "rollback" and "create_rollback_task" not in api.calls


def test_api_errors_keep_their_kind_and_no_key_reaches_a_message(material):
    """Throttling is transient, a refusal permanent (step named); an upload refusal that echoed
    the key is replaced; repr and describe hold no key (CSR-5)."""
    api = FakeCas({201: OLD_CERT})
    api.refuse["list_cloud_resources"] = TransientError("listing: Alibaba Cloud CAS answered Throttling.User")
    t = target(api, resource_ids=[201])
    with pytest.raises(TransientDeployError) as exc:
        t.stage(material)
    assert exc.value.step == "stage"
    del api.refuse["list_cloud_resources"]
    key = material.open_key().decode()
    api.refuse["upload_user_certificate"] = PermanentError(f"uploading: CAS refused (CertKeyNotMatch): {key}")
    with pytest.raises(DeployError) as exc:
        t.stage(material)
    assert "PRIVATE KEY" not in str(exc.value) and exc.value.step == "stage"
    assert "PRIVATE KEY" not in repr(t) + t.describe() + repr(t.checkpoint)


@pytest.mark.parametrize("config, problems", [
    ({"resource_ids": [101, "102"]}, []),
    ({"resource_ids": [101], "cert_id": "11", "connection": "prod-cn", "timeout": 600, "contact_ids": [3]}, []),
    ({}, ["resource_ids"]),
    ({"resource_ids": []}, ["resource_ids"]),
    ({"resource_ids": "101"}, ["resource_ids"]),
    ({"resource_ids": [101, "abc", True, -3]}, ["resource_ids[1]", "resource_ids[2]", "resource_ids[3]"]),
    ({"resource_ids": [101, "101"]}, ["resource_ids"]),
    ({"resource_ids": [101], "cert_id": "old"}, ["cert_id"]),
    ({"resource_ids": [101], "connection": "Prod CN"}, ["connection"]),
    ({"resource_ids": [101], "connection": ""}, ["connection"]),
    ({"resource_ids": [101], "timeout": 0}, ["timeout"]),
    ({"resource_ids": [101], "timeout": "300"}, ["timeout"]),
    ({"resource_ids": [101], "contact_ids": []}, ["contact_ids"]),
])
def test_dep2_alibaba_job_config_problems_name_their_field(config, problems):
    """DEP-2: an alibaba-deployment-job target's definition is checked field by field."""
    got = config_problems("alibaba-deployment-job", config)
    assert [f for f, _why in got] == problems, got
    assert all(why for _f, why in got)


def test_csr2_alibaba_job_is_managed_and_needs_the_key():
    """CSR-2: CAS must get the key to deploy: the kind is managed."""
    assert TargetKind("alibaba-deployment-job") is TargetKind.ALIBABA_JOB in MANAGED_KINDS


def record(config: dict) -> TargetRecord:
    return TargetRecord(id="t-9", certificate_id="c-1", kind=TargetKind.ALIBABA_JOB, name="shop CDN", config=config,
                        endpoints=())


def test_factory_builds_the_target_from_its_connection_and_refuses_without_one():
    """The factory hands the config (its `connection`) to `alibaba`; without `alibaba` it says which
    block is needed."""
    asked: list[dict] = []
    api = FakeCas({})
    build = default_target_factory(alibaba=lambda cfg: asked.append(cfg) or api)
    t = build(record({"resource_ids": ["101", 102], "connection": "prod", "timeout": 60}), lambda _c: b"")
    assert isinstance(t, DeploymentJobTarget) and t.api is api and t.resource_ids == (101, 102)
    assert t.timeout == 60 and asked[0]["connection"] == "prod"
    assert t.describe() == "CAS deployment job shop CDN to 2 resource(s) (ids 101, 102)"
    with pytest.raises(MissingBlockError) as exc:
        default_target_factory()(record({"resource_ids": [101], "connection": "prod"}), lambda _c: b"")
    assert "certpilot-alibaba-cloud" in str(exc.value) and "'prod'" in str(exc.value)
    assert "certpilot setup" in str(exc.value)


def test_operator_config_of_an_alibaba_job():
    """`target add --kind alibaba-deployment-job --resource-id …` stores ids as numbers (as given
    when not digits, for the check to name), the connection and the informational CertId."""
    assert config_of("alibaba-deployment-job", resource_ids=["101", 102], connection="prod", cert_id="11") == {
        "resource_ids": [101, 102], "connection": "prod", "cert_id": 11}
    assert config_of("alibaba-deployment-job", resource_ids=["x1"]) == {"resource_ids": ["x1"]}
    assert config_of("aws-acm", arn="arn", resource_ids=["101"]) == {"certificate_arn": "arn"}


def test_ui_form_offers_the_kind_with_typed_resource_ids():
    """The `target-add` flow's form (its parameter schema) offers the kind, takes the resource ids
    as numbers and the connection as a text parameter that refuses key material."""
    from prefect.utilities.callables import parameter_schema

    from flows.targets import target_add

    props = parameter_schema(target_add.fn).model_dump()["properties"]
    assert "alibaba-deployment-job" in props["kind"]["enum"]
    assert props["resource_ids"]["anyOf"][0] == {"items": {"type": "integer"}, "type": "array"}
    assert "PRIVATE KEY" in str(props["connection"])
    got = target_add.validate_parameters({"certificate_id": "c-1", "kind": "alibaba-deployment-job",
                                          "resource_ids": ["101", 102], "connection": "prod"})
    assert got["resource_ids"] == [101, 102]
