"""Alibaba Cloud CAS deployment jobs: the new certificate uploaded to CAS, then deployed by CAS
itself to the cloud resources (SLB/ALB/NLB listeners, CDN/DCDN domains, WAF, OSS…) that served
the old one (DEP-1, DEP-2).

The steps map onto the CAS API (2020-04-07) like this:
    stage     `UploadUserCertificate` (idempotent by a ClientToken made of the target id and the
              certificate's fingerprint) → the new CertId; `ListCloudResources` records which
              CertId each resource serves now (rollback, diagnosis).
    validate  every configured resource id exists in `ListCloudResources`.
    commit    a deployment job named after the target and the fingerprint — looked up first
              (`ListDeploymentJob`) so a rerun never creates a second one — is created
              (`CreateDeploymentJob`), started (`UpdateDeploymentJobStatus` → scheduling) and
              followed (`DescribeDeploymentJob`) until it succeeds, fails or the timeout passes.
    reload    nothing: the job applied the certificate.
    rollback  `CreateRollbackTask` for each worker (one per resource, `ListWorkerResource`) that
              applied the certificate — or once for the job where the service lists no workers —
              then `ListCloudResources` until each resource is back on its previous CertId (DEP-7).
    finalize  nothing to drop (see `finalize`).

Crash-safe across reruns of one task: the uploaded CertId, the resources' previous CertIds, the
job id and how many jobs were rolled back live in `checkpoint`, which the deployment use case
stores after each step; the upload's ClientToken and the job's deterministic name find the same
upload and job again when a run died before its checkpoint was stored.

The API client (`AlibabaApi`) is passed in; nothing here reads settings or blocks. No message,
log line or `repr` holds key material: the key is read from the vault (`material.open_key()`)
only into the upload request, which is dropped at once.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from certpilot.adapters.deploy.base import DeployError, DeployMaterial, TransientDeployError
from certpilot.core.errors import TransientError

log = logging.getLogger(__name__)

DONE = "success"
"""A job (or worker) that applied the certificate to its resources."""
FAILED = frozenset({"error", "failed", "fail"})
"""Job states that mean it failed (the real service says "error")."""
NOT_STARTED = frozenset({"editing"})
"""A created job that waits for `UpdateDeploymentJobStatus` to start it."""
PAGE = 50
"""Rows asked per page of a listing."""
MAX_PAGES = 200
"""A listing stops after this many pages (10,000 rows): a guard against a service that never ends."""
_NAME_SAFE = re.compile(r"[^a-z0-9-]+")


def _slug(text: str, limit: int) -> str:
    """`text` in the letters, digits and dashes CAS names accept, at most `limit` characters."""
    s = _NAME_SAFE.sub("-", text.lower().replace("*.", "wildcard-")).strip("-")
    return re.sub(r"-{2,}", "-", s)[:limit].strip("-") or "x"


def certificate_name(common_name: str, fingerprint: str) -> str:
    """The CAS name of an uploaded certificate: ``certpilot-<cn>-<fingerprint[:12]>`` (≤ 63 chars).

    Args:
        common_name: the certificate's common name (a wildcard becomes ``wildcard-``).
        fingerprint: its SHA-256 fingerprint (hex).
    """
    return f"certpilot-{_slug(common_name, 63 - len('certpilot--') - 12)}-{fingerprint[:12].lower()}"


def client_token(target_id: str, fingerprint: str) -> str:
    """The upload's ClientToken: the same for every run of one target and certificate, so a rerun
    after a crash gets the CertId of the first upload instead of a second copy."""
    return "certpilot-" + hashlib.sha256(f"{target_id}\n{fingerprint.lower()}".encode()).hexdigest()[:32]


def job_name(target_id: str, fingerprint: str, round_: int = 0) -> str:
    """The deployment job's name: deterministic from the target and the certificate (and the number
    of earlier jobs of theirs that were rolled back), so a rerun finds the job it created."""
    base = f"certpilot-{_slug(target_id, 40)}-{fingerprint[:12].lower()}"
    return base if not round_ else f"{base}-r{round_}"


def resource_ids_of(values: Iterable[Any]) -> tuple[int, ...]:
    """The configured CAS cloud resource ids as ints (given as ints or digit strings).

    Raises:
        ValueError: a value is neither (the config check names the field before this is reached).
    """
    out: list[int] = []
    for v in values:
        if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, str) and v.strip().isdigit())):
            raise ValueError(f"resource id {v!r} is not a CAS cloud resource id (a number)")
        out.append(int(v))
    return tuple(out)


class DeploymentJobTarget:
    """Deploys through a CAS deployment job to a fixed set of cloud resources.

    Args:
        target_id: the deployment target's id.
        api: the CAS API (`AlibabaConnection.cas()`): `api.call(what, "snake_method", request)`
            returns the response body and raises `TransientError` / `PermanentError`.
        resource_ids: the CAS cloud resource ids (`ListCloudResources` Id) to deploy to.
        name: what operators call the target (for messages).
        contact_ids: CAS contact ids the job notifies (CreateDeploymentJob requires one); None:
            the account's first contact (`ListContact`).
        timeout: seconds a job (or its rollback) may take before the step gives up.
        poll: seconds between two looks at a running job.
        sleep, clock: injected for tests (`time.sleep`, `time.monotonic`).
    Raises:
        DeployError: no resource id given, or one is not a number.
    """

    kind = "alibaba-deployment-job"

    def __init__(self, target_id: str, api, resource_ids: Iterable[Any], *, name: str = "",
                 contact_ids: Iterable[Any] | None = None, timeout: float = 300.0, poll: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 _uploads_only: bool = False):
        try:
            ids = resource_ids_of(resource_ids)
        except ValueError as exc:
            raise DeployError(f"CAS deployment job target {target_id}: {exc}; fix resource_ids", step="stage") from None
        if not ids and not _uploads_only:
            raise DeployError(f"CAS deployment job target {target_id}: no cloud resource to deploy to; give "
                              "resource_ids (`ListCloudResources` ids)", step="stage")
        self.target_id = target_id
        self.api = api
        self.resource_ids = ids
        self.name = name
        self.contact_ids = tuple(str(c) for c in contact_ids) if contact_ids else None
        self.timeout = float(timeout)
        self.poll = float(poll)
        self._sleep = sleep
        self._clock = clock
        self._material: DeployMaterial | None = None
        self.checkpoint: dict = {}
        """Kept by the deployment task across a crash: cert_id, previous ({resource: CertId}),
        round (jobs of this certificate rolled back so far), job_id."""

    # ------------------------------------------------------------------ describe

    def describe(self) -> str:
        """E.g. "CAS deployment job to 2 resource(s) (ids 101, 102)"."""
        ids = ", ".join(str(i) for i in self.resource_ids)
        named = f" {self.name}" if self.name else ""
        return f"CAS deployment job{named} to {len(self.resource_ids)} resource(s) (ids {ids})"

    def __repr__(self) -> str:
        return f"DeploymentJobTarget({self.target_id!r}, resources={list(self.resource_ids)!r})"

    # ------------------------------------------------------------------ steps

    def stage(self, material: DeployMaterial) -> None:
        """Upload the certificate and key to CAS (once per target and certificate) and record which
        CertId each resource serves now.

        Raises:
            DeployError: CAS refused the upload (its message says why: a mismatched key, a bad
                chain), or we do not hold the key (CSR-2).
            TransientDeployError: throttling, a 5xx answer, the network.
        """
        found = self._resources("stage")
        if "previous" not in self.checkpoint:
            # A rerun after a crash keeps the first run's: the resources may already hold the new one.
            self.checkpoint["previous"] = {str(i): found[i].cert_id for i in self.resource_ids if i in found}
        if self.checkpoint.get("fingerprint") not in (None, material.fingerprint):
            # A checkpoint of another certificate is not ours to resume (the task is per certificate).
            for k in ("cert_id", "job_id", "round"):
                self.checkpoint.pop(k, None)
        self.checkpoint["fingerprint"] = material.fingerprint
        if self.checkpoint.get("cert_id") is None:
            self.checkpoint["cert_id"] = self._upload(material)
        self._material = material

    def validate(self) -> None:
        """Every configured resource exists in CAS (`ListCloudResources`), else nothing is deployed.

        Raises:
            DeployError: some ids are unknown (named, with what to do).
        """
        self._require("validate")
        found = self._resources("validate")
        missing = [i for i in self.resource_ids if i not in found]
        if missing:
            raise DeployError(
                f"{self.describe()}: CAS knows no cloud resource with id {', '.join(map(str, missing))}; nothing "
                "was deployed — sync the cloud resources in the CAS console (Deployment → cloud resources) or fix "
                "the target's resource ids (`ListCloudResources` shows them)", step="validate")

    def commit(self) -> None:
        """Create (or find again) this certificate's deployment job, start it, and wait for it.

        Raises:
            DeployError: the job failed (its id and status named) or CAS refused it.
            TransientDeployError: the job still runs at the deadline (its id named), or a
                transient API failure.
        """
        m = self._require("commit")
        cert_id = self.checkpoint["cert_id"]
        job = self._job(m, cert_id)
        status = _status(job)
        if status in NOT_STARTED:
            self._call("commit", f"starting deployment job {job.id}", "update_deployment_job_status",
                       _models().UpdateDeploymentJobStatusRequest(job_id=job.id, status="scheduling"))
        status = self._follow_job(job.id, step="commit")
        if status in FAILED:
            raise DeployError(f"{self.describe()}: CAS deployment job {job.id} ended {status}; the workers that "
                              "failed say why in the CAS console (Deployment → jobs) — fix that, then run the "
                              "deployment again", step="commit")

    def reload(self) -> None:
        """Nothing to do: the job applied the certificate to each resource."""

    def rollback(self) -> None:
        """Put each resource the job changed back on its previous certificate (DEP-7).

        Nothing started (no job recorded or found, or a job never started) → nothing to undo. A
        job still running is waited for first (bounded by `timeout`): a rollback would race it.
        Each worker (one per resource) that applied the new certificate gets one rollback task
        (`CreateRollbackTask`), never two across reruns; where the service lists no workers
        (`ListWorkerResource` unknown to it) one job-wide rollback task is created. Done when every
        resource serves the CertId it had before the first run (`ListCloudResources`).

        Raises:
            DeployError: CAS refused a rollback task (its message named).
            TransientDeployError: the job still runs, or some resources are not back on their
                previous CertId, at the deadline (named, with the CertId each should have).
        """
        job_id = self.checkpoint.get("job_id")
        if job_id is None and self._material is not None and self.checkpoint.get("cert_id") is not None:
            # A run that died between creating the job and recording its id: find it by its name.
            found = self._find_job(job_name(self.target_id, self._material.fingerprint, self._round()),
                                   self.checkpoint["cert_id"], step="rollback")
            job_id = found.id if found is not None else None
        if job_id is None:
            return
        job = self._describe(job_id, "rollback")
        status = _status(job)
        if status in NOT_STARTED:
            return  # created, never started: no resource was touched
        if not _rolled_back(job):
            if status != DONE and status not in FAILED:
                self._follow_job(job_id, step="rollback")
            self._start_rollback(job_id)
        self._follow_rollback(job_id)
        # The job is used up: a later run of this task (a retry after a fix) deploys with a new job.
        self.checkpoint["round"] = self._round() + 1
        self.checkpoint.pop("job_id", None)

    def _start_rollback(self, job_id: int) -> None:
        """Create the rollback task(s) of a finished job: one per worker that applied the certificate."""
        try:
            workers = self._workers(job_id)
        except DeployError as exc:
            if getattr(exc, "service_code", "") != "InvalidAction.NotFound":
                raise
            workers = None  # a service without worker listing rolls the whole job back at once
        if workers is None:
            self._call("rollback", f"rolling back deployment job {job_id}", "create_rollback_task",
                       _models().CreateRollbackTaskRequest(job_id=job_id))
            return
        for w in workers:
            # Only a worker that applied the new certificate is rolled back; one already rolling back
            # (an earlier, dead run created its task) is only followed.
            if str(w.status or "").lower() == DONE:
                self._call("rollback", f"rolling back resource {w.resource_id} of job {job_id}",
                           "create_rollback_task", _models().CreateRollbackTaskRequest(job_id=job_id, worker_id=w.id))

    def _follow_rollback(self, job_id: int) -> None:
        """Poll the resources until each is back on the CertId it had before (recorded by `stage`).

        Raises:
            TransientDeployError: some are not back when `timeout` seconds have passed (named,
                with the CertId each should have; the rollback may still finish in CAS).
        """
        previous = {int(r): c for r, c in (self.checkpoint.get("previous") or {}).items() if c is not None}
        deadline = self._clock() + self.timeout
        while True:
            found = self._resources("rollback")
            waiting = sorted(r for r, c in previous.items() if r in found and _int(found[r].cert_id) != _int(c))
            if not waiting:
                return
            left = deadline - self._clock()
            if left <= 0:
                raise TransientDeployError(
                    f"{self.describe()}: after the rollback of CAS deployment job {job_id}, resource(s) "
                    f"{', '.join(map(str, waiting))} are not back on their previous certificate after "
                    f"{self.timeout:g}s (should be {self._previous_of(waiting)}); see the job in the CAS console "
                    "(Deployment → jobs) and put them back there if it failed", step="rollback")
            self._sleep(min(self.poll, left))

    def finalize(self) -> None:
        """Nothing to drop. The previous certificate stays uploaded in CAS on purpose: it is the
        operator's (other resources or accounts may still use it, and CAS lists it with its
        expiry), and deleting a user certificate that a resource still references is refused."""

    def check(self) -> list[tuple[str, str]]:
        """The resources exist and these credentials may list them (nothing is uploaded)."""
        try:
            found = self._resources("check")
        except (DeployError, TransientDeployError) as exc:
            return [("connection", str(exc))]
        missing = [i for i in self.resource_ids if i not in found]
        if missing:
            return [("resource_ids", f"CAS knows no cloud resource with id {', '.join(map(str, missing))}: sync the "
                                     "cloud resources in the CAS console or fix the ids (`ListCloudResources`)")]
        return []

    # ------------------------------------------------------------------ helpers

    def _round(self) -> int:
        return int(self.checkpoint.get("round", 0))

    def _call(self, step: str, what: str, method: str, request: Any = None) -> Any:
        """`api.call` with its errors as the deployment's (`step` named)."""
        try:
            return self.api.call(f"{self.describe()}: {what}", method, request)
        except TransientError as exc:
            raise TransientDeployError(str(exc), step=step) from None
        except DeployError:
            raise
        except Exception as exc:  # noqa: BLE001 - PermanentError and anything else: not retried
            err = DeployError(str(exc), step=step)
            err.service_code = getattr(exc, "service_code", "")  # what `_start_rollback` branches on
            raise err from None

    def _upload(self, m: DeployMaterial) -> int:
        """Upload leaf + chain with the key; the CertId (the same one on a rerun: ClientToken)."""
        req = _models().UploadUserCertificateRequest(
            name=certificate_name(m.common_name, m.fingerprint), cert=m.fullchain_pem.decode(),
            key=m.open_key().decode(), client_token=client_token(self.target_id, m.fingerprint))
        try:
            got = self._call("stage", f"uploading {m.common_name} ({m.fingerprint[:16]}…)", "upload_user_certificate",
                             req)
        except (DeployError, TransientDeployError) as exc:
            if "PRIVATE KEY" in str(exc):  # a service echoing the request back: never the key (CSR-5)
                raise type(exc)(f"{self.describe()}: CAS refused the upload of {m.common_name}; check the "
                                "certificate and its key", step="stage") from None
            raise
        finally:
            req.key = None
        if got.cert_id is None:
            raise DeployError(f"{self.describe()}: CAS accepted the upload of {m.common_name} but returned no "
                              "CertId; retry the deployment", step="stage")
        log.info("%s: uploaded %s as CAS certificate %s", self.target_id, m.fingerprint[:16], got.cert_id)
        return int(got.cert_id)

    def _resources(self, step: str) -> dict[int, Any]:
        """The configured resources CAS lists, by id (`ListCloudResources`, paged until all are seen)."""
        wanted, found = set(self.resource_ids), {}
        for page in range(1, MAX_PAGES + 1):
            got = self._call(step, "listing the cloud resources", "list_cloud_resources",
                             _models().ListCloudResourcesRequest(current_page=page, show_size=PAGE))
            rows = got.data or []
            found.update({int(r.id): r for r in rows if r.id is not None and int(r.id) in wanted})
            if wanted <= found.keys() or len(rows) < PAGE or (got.total is not None and page * PAGE >= got.total):
                break
        return found

    def _job(self, m: DeployMaterial, cert_id: int) -> Any:
        """This round's job: recorded, found by name, or created (then recorded at once)."""
        while True:
            name = job_name(self.target_id, m.fingerprint, self._round())
            job_id = self.checkpoint.get("job_id")
            job = self._describe(job_id, "commit") if job_id is not None else self._find_job(name, cert_id,
                                                                                            step="commit")
            if job is not None and _rolled_back(job):
                # A job of an earlier run that was rolled back (its record lost in a crash): used up.
                self.checkpoint["round"] = self._round() + 1
                self.checkpoint.pop("job_id", None)
                continue
            break
        if job is None:
            contacts = self.contact_ids or self._default_contact()
            created = self._call("commit", f"creating deployment job {name}", "create_deployment_job",
                                 _models().CreateDeploymentJobRequest(
                                     name=name, job_type="user", cert_ids=str(cert_id),
                                     resource_ids=",".join(str(i) for i in self.resource_ids),
                                     contact_ids=",".join(contacts) or None))
            if created.job_id is None:
                raise DeployError(f"{self.describe()}: CAS created deployment job {name} but returned no id; run "
                                  "the deployment again (it finds the job by name)", step="commit")
            self.checkpoint["job_id"] = int(created.job_id)
            return self._describe(int(created.job_id), "commit")
        self.checkpoint["job_id"] = int(job.id)
        return job

    def _find_job(self, name: str, cert_id: int, *, step: str) -> Any | None:
        """The undeleted "user" job named `name` of certificate `cert_id` (`ListDeploymentJob`), if any."""
        for page in range(1, MAX_PAGES + 1):
            got = self._call(step, f"looking for deployment job {name}", "list_deployment_job",
                             _models().ListDeploymentJobRequest(job_type="user", cert_id=cert_id, current_page=page,
                                                                show_size=PAGE))
            rows = got.data or []
            for row in rows:
                if row.name == name and str(row.del_ or 0) != "1":
                    return row
            if len(rows) < PAGE or (got.total is not None and page * PAGE >= got.total):
                return None
        return None

    def _describe(self, job_id: int, step: str) -> Any:
        return self._call(step, f"reading deployment job {job_id}", "describe_deployment_job",
                          _models().DescribeDeploymentJobRequest(job_id=int(job_id)))

    def _describe_job(self, job_id: int, step: str) -> str:
        return _status(self._describe(job_id, step))

    def _follow_job(self, job_id: int, *, step: str) -> str:
        """Poll the job until it succeeds or fails; its final status.

        Raises:
            TransientDeployError: still running when `timeout` seconds have passed (id named).
        """
        deadline = self._clock() + self.timeout
        while True:
            status = self._describe_job(job_id, step)
            if status == DONE or status in FAILED:
                return status
            left = deadline - self._clock()
            if left <= 0:
                raise TransientDeployError(
                    f"{self.describe()}: CAS deployment job {job_id} is still {status or 'running'} after "
                    f"{self.timeout:g}s; it goes on in CAS — look at it in the CAS console (Deployment → jobs), "
                    "then run the deployment again (it follows the same job)", step=step)
            self._sleep(min(self.poll, left))

    def _workers(self, job_id: int) -> list[Any]:
        """The job's workers (one per resource), `ListWorkerResource` paged."""
        out: list[Any] = []
        for page in range(1, MAX_PAGES + 1):
            got = self._call("rollback", f"listing the workers of deployment job {job_id}", "list_worker_resource",
                             _models().ListWorkerResourceRequest(job_id=job_id, current_page=page, show_size=PAGE))
            rows = got.data or []
            out.extend(rows)
            if len(rows) < PAGE or (got.total is not None and page * PAGE >= got.total):
                break
        return out

    def _previous_of(self, resources: list[int]) -> str:
        previous = self.checkpoint.get("previous") or {}
        return ", ".join(f"CertId {previous.get(str(r), '?')} for resource {r}" for r in resources)

    def _default_contact(self) -> tuple[str, ...]:
        """The account's first CAS contact (`ListContact`), which the job notifies; none when the
        account has none or the service lists none: then the service says whether it needs one."""
        try:
            got = self._call("commit", "listing the CAS contacts", "list_contact",
                             _models().ListContactRequest(current_page=1, show_size=PAGE))
        except DeployError as exc:
            log.debug("%s: no CAS contact listed (%s); creating the job without one", self.target_id, exc)
            return ()
        return tuple(str(c.contact_id) for c in (got.contact_list or [])[:1] if c.contact_id is not None)

    def _require(self, step: str) -> DeployMaterial:
        if self._material is None:
            raise DeployError(f"{self.describe()}: nothing staged", step=step)
        return self._material


def _int(value: Any) -> int | None:
    return int(value) if value is not None and str(value).strip().lstrip("-").isdigit() else None


def _rolled_back(job: Any) -> bool:
    """A job whose rollback was started (its Rollback flag, or a rollback status)."""
    return str(getattr(job, "rollback", 0) or 0) == "1" or _status(job).startswith("rollback")


def _status(job: Any) -> str:
    return str(getattr(job, "status", "") or "").lower()


def _models():
    """The SDK's request models (imported when first needed: the SDK is an optional extra)."""
    from alibabacloud_cas20200407 import models

    return models



class CasUploadTarget(DeploymentJobTarget):
    """A certificate the operator keeps in CAS without cloud resources (an uploaded one): its
    successor is uploaded back (`UploadUserCertificate`, idempotent by ClientToken), nothing else.

    Nothing serves it through certpilot (its target is marked not verifiable): the upload is the
    deployment. Rollback has nothing to undo (the previous certificate is still in CAS, unchanged).
    """

    def __init__(self, target_id: str, api, *, name: str = "") -> None:
        """Args:
            target_id: the deployment target's id.
            api: the CAS API (`AlibabaConnection.cas()`).
            name: what operators call the target.
        """
        super().__init__(target_id, api, (), name=name, _uploads_only=True)

    def describe(self) -> str:
        """E.g. "CAS upload (kept in Alibaba Cloud CAS)"."""
        return f"CAS upload{' ' + self.name if self.name else ''} (kept in Alibaba Cloud CAS)"

    def __repr__(self) -> str:
        return f"CasUploadTarget({self.target_id!r})"

    def stage(self, material: DeployMaterial) -> None:
        """Upload the certificate with its key (once per target and certificate).

        Raises:
            DeployError / TransientDeployError: CAS's answer; DeployError when the key is not held.
        """
        if self.checkpoint.get("fingerprint") != material.fingerprint:
            self.checkpoint.pop("cert_id", None)
        self.checkpoint["fingerprint"] = material.fingerprint
        if self.checkpoint.get("cert_id") is None:
            self.checkpoint["cert_id"] = self._upload(material)
        self._material = material

    def validate(self) -> None:
        """Nothing to check beyond the upload CAS accepted."""

    def commit(self) -> None:
        """The upload is the deployment."""

    def rollback(self) -> None:
        """Nothing to undo: the previous certificate is still in CAS, unchanged."""

    def check(self) -> list[tuple[str, str]]:
        """Nothing to check before the first upload (the credentials are checked by it)."""
        return []
