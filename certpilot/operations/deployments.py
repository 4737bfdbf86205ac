"""Use cases of stage 3 (LC-3): where a certificate is deployed, planning the managed deployment
tasks of a new certificate, running one, listing them (DEP-1, DEP-2, DEP-5..DEP-7, VER-1).

A run is re-entrant over its `deployment_tasks` row: it claims the row (RUNNING, committed
before anything is touched), records progress and details after each step (committed, so the
CLI and the UI see them while it runs), and ends SUCCEEDED, ROLLED_BACK or FAILED. A rerun of a
succeeded task is a no-op; a failed or rolled-back one may run again after a fix.

The private key is opened by the adapter from the vault through `key_opener(certificate_id)`;
it is never an argument or a result of anything here (CSR-5).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certpilot.adapters.deploy.base import DeployMaterial, DeployTarget, RollbackImpossibleError
from certpilot.core.deployment import (
    DeploymentState,
    Progress,
    TargetKind,
    final_state,
    may_deploy,
    may_run,
    targets_to_plan,
)
from certpilot.core.errors import BadInputError, NotFoundError, Reason, RefusedError
from certpilot.core.models import Certificate
from certpilot.core.verification import Endpoint
from certpilot.operations.common import new_id
from certpilot.store.base import utcnow
from certpilot.store.repository import Repository
from certpilot.store.tables import CertificateRow
from certpilot.store.tables_deploy import DeploymentTargetRow, DeploymentTaskRow

log = logging.getLogger(__name__)

KeyOpenerById = Callable[[str], bytes]
"""`key_opener(certificate_id) -> key PEM`, opened from the vault inside an adapter only."""

_SECRET_WORDS = ("secret", "password", "passphrase", "private_key", "privatekey", "token", "credential")


@dataclass(frozen=True)
class TargetRecord:
    """A deployment target as the use cases see it (no secrets in `config`)."""

    id: str
    certificate_id: str
    kind: TargetKind
    name: str
    config: dict[str, Any]
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True)
class TaskRecord:
    """A managed deployment task, listed by certificate resource id with progress and details (DEP-2)."""

    id: str
    certificate_id: str
    target_id: str
    state: DeploymentState
    progress: int
    details: str
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class VerifyResult:
    """What a verifier found: served or not, and a sentence (a VER-2 diagnosis when not)."""

    ok: bool
    message: str


Verifier = Callable[[DeployMaterial, Sequence[Endpoint], DeployTarget, str | None], VerifyResult]
"""`verifier(material, endpoints, target, old_fingerprint) -> VerifyResult` (VER-1; VER-2 message on failure)."""

TargetFactory = Callable[[TargetRecord, KeyOpenerById], DeployTarget]
"""Builds the adapter of a target; gets the key opener for targets that restore an old key (ACM)."""


# ---------------------------------------------------------------------------- rows → records


def _target(row: DeploymentTargetRow) -> TargetRecord:
    return TargetRecord(id=row.id, certificate_id=row.certificate_id, kind=TargetKind(row.kind), name=row.name,
                        config=dict(row.config or {}),
                        endpoints=tuple(Endpoint(host=h, port=int(p), sni=s) for h, p, s in (row.endpoints or [])))


def _task(row: DeploymentTaskRow) -> TaskRecord:
    return TaskRecord(id=row.id, certificate_id=row.certificate_id, target_id=row.target_id,
                      state=DeploymentState(row.state), progress=row.progress, details=row.details or "",
                      attempts=row.attempts, started_at=row.started_at, finished_at=row.finished_at,
                      created_at=row.created_at)


def _check_no_secrets(config: Any, path: str = "config") -> None:
    if isinstance(config, dict):
        for k, v in config.items():
            if any(w in str(k).lower().replace("-", "_") for w in _SECRET_WORDS):
                raise BadInputError(f"{path}.{k} looks like a secret; target configuration is stored in plain "
                                    "text — keep credentials in a Prefect block or the environment")
            _check_no_secrets(v, f"{path}.{k}")
    elif isinstance(config, list | tuple):
        for i, v in enumerate(config):
            _check_no_secrets(v, f"{path}[{i}]")
    elif isinstance(config, str) and "PRIVATE KEY" in config:
        raise BadInputError(f"{path} holds private key material; it is never stored in target configuration (CSR-5)")


# ---------------------------------------------------------------------------- targets


def add_target(session: Session, certificate_id: str, kind: TargetKind | str, *, config: dict[str, Any],
               endpoints: Iterable[Endpoint | tuple[str, int, str | None]] = (), name: str = "",
               target_id: str | None = None, now: datetime | None = None) -> TargetRecord:
    """Record that `certificate_id` is deployed to a target (what DEP-1 replaces later).

    Args:
        session: the store session.
        certificate_id: the certificate the target serves.
        kind: nginx, files, aws-acm or aws-elb.
        config: the adapter's settings (paths, argv, ARNs); no secrets.
        endpoints: where the target is probed after a deployment (host, port, SNI).
        name: what operators call it.
        target_id: a chosen id (default a fresh one).
    Raises:
        NotFoundError: no such certificate. BadInputError: unknown kind or a secret in `config`.
    """
    if session.get(CertificateRow, certificate_id) is None:
        raise NotFoundError(f"no certificate with id {certificate_id}; list them with `certpilot list`")
    try:
        kind = TargetKind(kind)
    except ValueError:
        raise BadInputError(f"unknown target kind {kind!r}; use one of "
                            f"{', '.join(k.value for k in TargetKind)}") from None
    _check_no_secrets(config)
    eps = [[e.host, e.port, e.sni] if isinstance(e, Endpoint) else [e[0], int(e[1]), e[2]] for e in endpoints]
    now = now or utcnow()
    row = DeploymentTargetRow(id=target_id or new_id("tgt"), certificate_id=certificate_id, kind=kind.value,
                              name=name or kind.value, config=config, endpoints=eps, created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    return _target(row)


def targets_of(session: Session, certificate_id: str) -> list[TargetRecord]:
    """DEP-1: the targets a certificate is deployed to (the old certificate's, at renewal)."""
    rows = session.scalars(select(DeploymentTargetRow).where(DeploymentTargetRow.certificate_id == certificate_id)
                           .order_by(DeploymentTargetRow.created_at, DeploymentTargetRow.id))
    return [_target(r) for r in rows]


def get_target(session: Session, target_id: str) -> TargetRecord:
    """One target. Raises `NotFoundError`."""
    row = session.get(DeploymentTargetRow, target_id)
    if row is None:
        raise NotFoundError(f"no deployment target with id {target_id}")
    return _target(row)


# ---------------------------------------------------------------------------- tasks


def plan_deployments(session: Session, new_cert_id: str, *, now: datetime | None = None) -> list[TaskRecord]:
    """DEP-2: one pending task per target of the new certificate's parent; idempotent.

    Running it again (a retry, a second scanner) creates nothing twice: existing tasks are kept
    and the UNIQUE (certificate_id, target_id) constraint settles a race.

    Returns:
        every task of the new certificate, planned now or before.
    Raises:
        NotFoundError: no such certificate.
    """
    repo = Repository(session)
    cert = repo.certificate_model(new_cert_id)
    now = now or utcnow()
    if cert.parent_id is not None:
        existing = {t.target_id for t in list_tasks(session, new_cert_id)}
        # DEP-1: "where the old one served": a target moves to each certificate deployed on it,
        # so a later certificate of a plan finds it on its predecessor (the previous of the
        # plan), or still on the parent when nothing of the plan was deployed yet.
        holders = [c.id for c in repo.certificates_for_order(cert.order_id)
                   if c.plan_index < cert.plan_index] if cert.order_id else []
        holders = [*reversed(holders), cert.parent_id]
        held = [t.id for holder in holders for t in targets_of(session, holder)]
        for target_id in targets_to_plan(held, existing):
            try:
                with session.begin_nested():
                    session.add(DeploymentTaskRow(id=new_id("dep"), certificate_id=new_cert_id, target_id=target_id,
                                                  state=DeploymentState.PENDING.value, progress=int(Progress.PLANNED),
                                                  details="", attempts=0, created_at=now, updated_at=now))
            except IntegrityError:
                log.info("deployment of %s to %s was planned concurrently", new_cert_id, target_id)
    return list_tasks(session, new_cert_id)


def list_tasks(session: Session, certificate_id: str) -> list[TaskRecord]:
    """DEP-2: the deployment tasks of a certificate, with progress and details."""
    rows = session.scalars(select(DeploymentTaskRow).where(DeploymentTaskRow.certificate_id == certificate_id)
                           .order_by(DeploymentTaskRow.created_at, DeploymentTaskRow.id))
    return [_task(r) for r in rows]


def get_task(session: Session, task_id: str) -> TaskRecord:
    """One task. Raises `NotFoundError`."""
    row = session.get(DeploymentTaskRow, task_id)
    if row is None:
        raise NotFoundError(f"no deployment task with id {task_id}")
    return _task(row)


def material_for(session: Session, certificate_id: str, key_opener: KeyOpenerById | None) -> DeployMaterial:
    """The deployable material of a stored certificate: leaf, chain, and a key reference.

    Raises:
        NotFoundError: no such certificate. RefusedError(NOT_DEPLOYABLE): no PEM stored.
    """
    row = Repository(session).get_certificate(certificate_id)
    if not row.leaf_pem:
        raise RefusedError(may_deploy(Repository(session).certificate_model(certificate_id), TargetKind.FILES,
                                      has_pem=False))
    key = partial(key_opener, certificate_id) if (row.key_held and key_opener is not None) else None
    return DeployMaterial.from_pems(certificate_id, row.leaf_pem.encode(), chain=(row.chain_pem or "").encode(),
                                    key=key)


class _Run:
    """Records one run's progress on its task row (each step committed)."""

    def __init__(self, session: Session, row: DeploymentTaskRow, clock: Callable[[], datetime]):
        self.session, self.row, self.clock = session, row, clock
        self.target: Any = None

    def step(self, progress: Progress | int, line: str, *, state: DeploymentState | None = None) -> None:
        now = self.clock()
        self.row.progress = int(progress)
        self.row.details = (self.row.details + ("\n" if self.row.details else "")
                            + f"{now:%Y-%m-%dT%H:%M:%S}Z {line}")
        self.row.updated_at = now
        checkpoint = getattr(self.target, "checkpoint", None)
        if checkpoint:  # committed with each step: a rerun after a crash rolls back to the same state
            self.row.checkpoint = dict(checkpoint)
        if state is not None:
            self.row.state = state.value
            if state in (DeploymentState.SUCCEEDED, DeploymentState.FAILED, DeploymentState.ROLLED_BACK):
                self.row.finished_at = now
        self.session.commit()  # visible to `list_tasks` elsewhere while the run goes on


def deploy(session: Session, task_id: str, target_factory: TargetFactory, key_opener: KeyOpenerById,
           verifier: Verifier, *, notifiers: Sequence[Any] = (), now: datetime | None = None,
           clock: Callable[[], datetime] = utcnow) -> TaskRecord:
    """Run one deployment task: stage → validate → commit → reload → verify → finalize | rollback.

    DEP-5 (reload after the files), DEP-6 (full chain), DEP-7 (any failure restores the previous
    certificate), DEP-3 (a failure hands a notification event to every notifier).

    Args:
        session: the store session (the run commits its progress step by step).
        task_id: the task to run.
        target_factory: builds the target adapter from its record.
        key_opener: opens a certificate's private key from the vault (inside the adapter only).
        verifier: probes the target's endpoints for the new certificate (VER-1).
        notifiers: channels told of a failure (DEP-3).
        now: the time used for the claim decision (default the clock).
        clock: wall clock for the progress lines.
    Returns:
        the task after the run (unchanged when it had already succeeded: a rerun is a no-op).
    Raises:
        NotFoundError: no such task. RefusedError: KEY_NOT_HELD (CSR-2), NOT_DEPLOYABLE, or
        DEPLOYMENT_IN_PROGRESS (another run holds it).
    """
    now = now or clock()
    row = session.get(DeploymentTaskRow, task_id)
    if row is None:
        raise NotFoundError(f"no deployment task with id {task_id}")
    if row.state == DeploymentState.SUCCEEDED.value:
        return _task(row)
    refusal = may_run(row.state, started_at=row.started_at, now=now)
    if refusal is not None:
        raise RefusedError(refusal)
    repo = Repository(session)
    cert = repo.certificate_model(row.certificate_id)
    target_row = session.get(DeploymentTargetRow, row.target_id)
    record = _target(target_row)
    cert_row = repo.get_certificate(row.certificate_id)
    refusal = may_deploy(cert, record.kind, has_pem=bool(cert_row.leaf_pem))
    if refusal is not None:
        raise RefusedError(refusal)

    # Claim: one conditional UPDATE; a concurrent run sees 0 rows and gets the refusal.
    claimed = session.execute(
        update(DeploymentTaskRow)
        .where(DeploymentTaskRow.id == task_id, DeploymentTaskRow.state == row.state,
               DeploymentTaskRow.attempts == row.attempts)
        .values(state=DeploymentState.RUNNING.value, attempts=row.attempts + 1, started_at=now, finished_at=None,
                progress=int(Progress.STARTED), updated_at=now)
        .execution_options(synchronize_session=False)).rowcount
    session.commit()
    if claimed != 1:
        raise RefusedError(may_run(DeploymentState.RUNNING, started_at=now, now=now))
    session.refresh(row)
    run = _Run(session, row, clock)

    try:
        material = material_for(session, cert.id, key_opener)
        target = target_factory(record, key_opener)
        if hasattr(target, "checkpoint"):
            target.checkpoint = dict(row.checkpoint or {})
        run.target = target
        desc = target.describe()
    except Exception as exc:  # noqa: BLE001 - bad target config or stored PEM: nothing was touched
        error = f"setup failed: {exc}; nothing on the target was changed — fix the target's configuration"
        run.step(Progress.STARTED, error)
        run.step(Progress.STARTED, DeploymentState.FAILED.value, state=DeploymentState.FAILED)
        _notify_failure(notifiers, cert, record.name or record.kind.value, None, error)
        return _task(row)
    run.step(Progress.STARTED, f"attempt {row.attempts}: deploying {cert.common_name} "
                               f"({material.fingerprint[:16]}…) to {desc}")
    error: str | None = None
    diagnosis: str | None = None
    step = "stage"
    try:
        target.stage(material)
        run.step(Progress.STAGED, f"staged the new certificate and {len(material.chain_pems)} intermediate(s)")
        step = "validate"
        target.validate()
        run.step(Progress.VALIDATED, "the target's own check passed")
        step = "commit"
        target.commit()
        run.step(Progress.COMMITTED, "committed")
        step = "reload"
        target.reload()
        run.step(Progress.RELOADED, "reloaded")
        step = "verify"
        result = verifier(material, record.endpoints, target, _old_fingerprint(session, record))
        if not result.ok:
            diagnosis = result.message
            error = f"verification failed: {result.message}"
        else:
            run.step(Progress.VERIFIED, f"verified: {result.message}")
    except Exception as exc:  # noqa: BLE001 - every failure is recorded and rolled back (DEP-7)
        error = f"{getattr(exc, 'step', step)} failed: {exc}"

    if error is None:
        try:
            target.finalize()
        except Exception as exc:  # noqa: BLE001 - the new certificate is served; cleanup can wait
            run.step(Progress.VERIFIED, f"finalize failed (the new certificate is served; clean up by hand): {exc}")
        _move_target(session, target_row, cert.id, clock())
        run.step(Progress.DONE, "succeeded", state=DeploymentState.SUCCEEDED)
        return _task(row)

    run.step(row.progress, error)
    rolled_back = False
    try:
        target.rollback()
        rolled_back = True
        run.step(row.progress, "rolled back: the previous certificate is in place again (DEP-7)")
    except RollbackImpossibleError as exc:
        run.step(row.progress, str(exc))
    except Exception as exc:  # noqa: BLE001 - recorded; the task ends FAILED
        run.step(row.progress, f"rollback failed: {exc}; restore the previous certificate by hand")
    state = final_state(verified=False, rolled_back=rolled_back)
    run.step(row.progress, state.value, state=state)
    _notify_failure(notifiers, cert, desc, diagnosis, error)
    return _task(row)


def _old_fingerprint(session: Session, record: TargetRecord) -> str | None:
    row = session.get(CertificateRow, record.certificate_id)
    return row.fingerprint_sha256 if row is not None else None


def _move_target(session: Session, target_row: DeploymentTargetRow, cert_id: str, now: datetime) -> None:
    # DEP-1: the target now serves the new certificate; the next renewal finds it there.
    target_row.certificate_id = cert_id
    target_row.updated_at = now


def _notify_failure(notifiers: Sequence[Any], cert: Certificate, target: str, diagnosis: str | None,
                    error: str) -> None:
    if not notifiers:
        return
    from certpilot.adapters.notify.base import notify_deployment_failed

    notify_deployment_failed(notifiers, cert, target, diagnosis, error=error)


def deploy_all(session: Session, new_cert_id: str, target_factory: TargetFactory, key_opener: KeyOpenerById,
               verifier: Verifier, *, notifiers: Sequence[Any] = ()) -> list[TaskRecord]:
    """Plan and run every deployment of a new certificate (DEP-1, DEP-2); succeeded ones are skipped."""
    out = []
    for task in plan_deployments(session, new_cert_id):
        out.append(deploy(session, task.id, target_factory, key_opener, verifier, notifiers=notifiers))
    return out


# ---------------------------------------------------------------------------- wiring


def vault_key_opener(session: Session, vault) -> KeyOpenerById:
    """A key opener over the store's sealed keys and a `KeyVault` (CSR-5).

    Raises (when called): `RefusedError(KEY_NOT_HELD)` when the certificate has no stored key.
    """
    from certpilot.crypto.vault import key_aad

    def open_key(certificate_id: str) -> bytes:
        repo = Repository(session)
        row = repo.get_certificate(certificate_id)
        if not row.key_id:
            cert = repo.certificate_model(certificate_id)
            raise RefusedError(may_deploy(cert.model_copy(update={"key_held": False}), TargetKind.NGINX)
                               or _key_missing(cert))
        _alg, fp = repo.key_info(row.key_id)
        return vault.open(repo.get_sealed_key(row.key_id), key_aad(fp))

    return open_key


def _key_missing(cert: Certificate):
    from certpilot.core.errors import Refusal

    return Refusal(Reason.KEY_NOT_HELD, f"no private key is stored for {cert.common_name} (id {cert.id}); "
                                        "re-import it with its key", rule="CSR-2")


def default_target_factory(*, aws: Callable[[str, dict[str, Any]], Any] | None = None) -> TargetFactory:
    """Builds adapters from a target's kind and config.

    Config per kind:
        nginx: files [{cert, key}], check_argv, reload_argv, timeout, name, pid_file.
        files: directory, post_command.
        aws-acm: certificate_arn, endpoint_url, region.
        aws-elb: listener_arn, mode (default|sni), old_certificate_arn, endpoint_url, region.
    Args:
        aws: `aws(service, config) -> boto3 client`; default `aws_client` with the config's
            endpoint_url and region (credentials from the environment).
    """
    from certpilot.adapters.deploy.aws_acm import AcmTarget, aws_client
    from certpilot.adapters.deploy.aws_elb import ElbListenerTarget
    from certpilot.adapters.deploy.files import FilesTarget
    from certpilot.adapters.deploy.nginx import PemFilesTarget

    def client(service: str, cfg: dict[str, Any]):
        if aws is not None:
            return aws(service, cfg)
        return aws_client(service, endpoint_url=cfg.get("endpoint_url"), region=cfg.get("region", "us-east-1"))

    def build(record: TargetRecord, key_opener: KeyOpenerById) -> DeployTarget:
        cfg = record.config
        if record.kind is TargetKind.NGINX:
            return PemFilesTarget(record.id, cfg["files"], check_argv=cfg.get("check_argv"),
                                  reload_argv=cfg.get("reload_argv"), timeout=float(cfg.get("timeout", 30)),
                                  name=cfg.get("name", record.name or "nginx"), pid_file=cfg.get("pid_file"))
        if record.kind is TargetKind.FILES:
            return FilesTarget(record.id, cfg["directory"], post_command=cfg.get("post_command"))
        if record.kind is TargetKind.AWS_ACM:
            previous = partial(key_opener, record.certificate_id)
            return AcmTarget(record.id, client("acm", cfg), cfg["certificate_arn"], previous_key=previous)
        if record.kind is TargetKind.AWS_ELB:
            return ElbListenerTarget(record.id, client("elbv2", cfg), client("acm", cfg), cfg["listener_arn"],
                                     mode=cfg.get("mode", "default"), old_certificate_arn=cfg.get("old_certificate_arn"))
        raise BadInputError(f"no adapter for target kind {record.kind.value}")

    return build


@dataclass
class ProbeVerifier:
    """VER-1 by TLS probe, with the VER-2 diagnosis when it fails.

    Polls every endpoint with `certpilot.adapters.probe.verify_served` until each steadily
    serves the new leaf (a graceful reload interleaves old and new answers for ~100 ms) or the
    deadline passes; then diagnoses the first endpoint still wrong, with the target's facts when
    it offers them (`deployed_fingerprint()`, `last_reload()`, `reload_hint`), before any rollback.

    Args:
        trust: the bundle served chains must reach (CA file, SSLContext, TrustBundle; None: system).
        deadline: seconds to wait for every endpoint.
        settle: seconds the new certificate must be served without interruption.
        timeout: seconds per probe.
    """

    trust: Any = None
    deadline: float = 10.0
    settle: float = 0.25
    timeout: float = 3.0

    def __call__(self, material: DeployMaterial, endpoints: Sequence[Endpoint], target: DeployTarget,
                 old_fingerprint: str | None) -> VerifyResult:
        """Probe `endpoints` for `material`'s fingerprint; see the class doc."""
        if not endpoints:
            return VerifyResult(True, "no endpoints recorded for this target: not probed")
        from certpilot.adapters.probe.diagnose import (
            InspectableTarget,
            Inspection,
            diagnose_endpoint,
            file_mtime,
            inspect_target,
        )
        from certpilot.adapters.probe.scale import verify_served

        report = verify_served(list(endpoints), material.fingerprint, material.not_after, deadline=self.deadline,
                               settle=self.settle, trust=self.trust, timeout=self.timeout)
        if report.all_served:
            names = ", ".join(str(e) for e in endpoints)
            return VerifyResult(True, f"{len(endpoints)} endpoint(s) serve {material.fingerprint[:16]}…: {names}")
        first = report.failures[0].result
        if isinstance(target, InspectableTarget):
            cert_file = getattr(target, "deployed_file", None)
            inspection = inspect_target(target, deployed_at=file_mtime(cert_file) if cert_file else None)
        else:
            inspection = Inspection()
        diag = diagnose_endpoint(first.endpoint, new_fingerprint=material.fingerprint,
                                 old_fingerprint=old_fingerprint, target=target.describe(),
                                 inspection=inspection, trust=self.trust, probe=first)
        return VerifyResult(False, f"{len(report.failures)} of {len(endpoints)} endpoint(s) do not serve the new "
                                   f"certificate after {self.deadline:g}s; {diag}")
