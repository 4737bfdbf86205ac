"""Use cases of stage 3 (LC-3): where a certificate is deployed, planning the managed deployment
tasks of a new certificate, running one, listing them (DEP-1, DEP-2, DEP-5..DEP-7, VER-1).

A run is re-entrant over its `deployment_tasks` row and owns its transactions: it takes a session
factory and claims the row in one transaction (RUNNING, committed before anything is touched),
records progress, details and the target's checkpoint after each step in one short transaction
each (the CLI and the UI see them while it runs; a rerun after a crash finds them), and ends
SUCCEEDED, ROLLED_BACK or FAILED. The work on the target and the verification run between those
transactions, never inside one. A rerun of a succeeded task is a no-op; a failed or rolled-back
one may run again after a fix. The `Session`-level functions (`add_target`, `plan_deployments`,
`list_tasks`, `material_for`...) work in the caller's transaction and never commit it.

The private key is opened by the adapter from the vault through `key_opener(certificate_id)`
(reading the sealed key in a transaction of its own); it is never an argument or a result of
anything here (CSR-5).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from certpilot.adapters.deploy.base import (
    DeployMaterial,
    DeployTarget,
    RollbackImpossibleError,
    TransientDeployError,
)
from certpilot.adapters.notify.base import NotificationEvent
from certpilot.core.deployment import (
    HEARTBEAT,
    RUN_LEASE,
    DeploymentOutcome,
    DeploymentState,
    KeyOpenerById,
    Progress,
    TargetKind,
    TargetRecord,
    VerifyResult,
    default_endpoints,
    final_state,
    is_terminal,
    may_deploy,
    may_run,
    target_free,
    targets_to_plan,
    verifiable,
)
from certpilot.core.errors import BadInputError, NotFoundError, Reason, Refusal, RefusedError
from certpilot.core.models import Certificate
from certpilot.core.verification import Endpoint
from certpilot.operations.common import new_id
from certpilot.store.base import utcnow
from certpilot.store.repository import Repository
from certpilot.store.run_queries import claims_of
from certpilot.store.tables import CertificateRow
from certpilot.store.tables_deploy import DeploymentTargetRow, DeploymentTaskRow

if TYPE_CHECKING:
    from certpilot.operations.applications import Sessions
    from certpilot.runtime import Services

__all__ = ["DeploymentOutcome", "TakenOverError", "TargetFactory", "TaskRecord", "Verifier", "add_target", "deploy",
           "get_target", "get_task", "list_tasks", "locate_targets", "material_for", "outcome", "plan",
           "plan_deployments", "routes", "run_deployment", "targets_of"]

log = logging.getLogger(__name__)

_SECRET_WORDS = ("secret", "password", "passphrase", "private_key", "privatekey", "token", "credential")


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


Verifier = Callable[[DeployMaterial, Sequence[Endpoint], DeployTarget, str | None], VerifyResult]
"""`verifier(material, endpoints, target, old_fingerprint) -> VerifyResult` (VER-1; VER-2 message on failure)."""

TargetFactory = Callable[[TargetRecord, KeyOpenerById], DeployTarget]
"""Builds the adapter of a target; gets the key opener for targets that restore an old key (ACM)."""


# ---------------------------------------------------------------------------- rows → records


def _target(row: DeploymentTargetRow) -> TargetRecord:
    return TargetRecord(id=row.id, certificate_id=row.certificate_id, kind=TargetKind(row.kind), name=row.name,
                        config=dict(row.config or {}),
                        endpoints=tuple(Endpoint(host=h, port=int(p), sni=s) for h, p, s in (row.endpoints or [])),
                        host=row.host)


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
               target_id: str | None = None, now: datetime | None = None, host: str | None = None) -> TargetRecord:
    """Record that `certificate_id` is deployed to a target (what DEP-1 replaces later).

    Args:
        session: the store session.
        certificate_id: the certificate the target serves.
        kind: nginx, files, aws-acm or aws-elb.
        config: the adapter's settings (paths, argv, ARNs); no secrets.
        endpoints: where the target is probed after a deployment (host, port, SNI).
        name: what operators call it.
        target_id: a chosen id (default a fresh one).
        host: the host (work queue) whose worker deploys it (None: any worker).
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
                              name=name or kind.value, config=config, endpoints=eps, host=host, created_at=now,
                              updated_at=now)
    session.add(row)
    session.flush()
    return _target(row)


def targets_of(session: Session, certificate_id: str) -> list[TargetRecord]:
    """DEP-1: the targets a certificate is deployed to (the old certificate's, at renewal)."""
    rows = session.scalars(select(DeploymentTargetRow).where(DeploymentTargetRow.certificate_id == certificate_id,
                                                             DeploymentTargetRow.removed_at.is_(None))
                           .order_by(DeploymentTargetRow.created_at, DeploymentTargetRow.id))
    return [_target(r) for r in rows]


def get_target(session: Session, target_id: str) -> TargetRecord:
    """One target (not a removed one). Raises `NotFoundError`."""
    row = session.get(DeploymentTargetRow, target_id)
    if row is None or row.removed_at is not None:
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

    The key itself is not read here: `material.key()` calls `key_opener`, which reads the sealed
    key in a transaction of its own when the adapter needs it.

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


Notify = Callable[[Session, NotificationEvent], object]
"""`notify(session, event)`: records and sends a DEP-3 notice in the transaction that records the
failure (the Services door: `notices.send(svc, event, session=session)`)."""

Also = Callable[[Session], None]
"""More work for the transaction of a step (moving the target, recording the notice)."""

RECORD_TRIES = (0.2, 0.5, 1.0, 2.0)
"""Waits between tries of recording a run's final state (a database error is retried: the
target was already restored, and the record must say so)."""


class TakenOverError(RefusedError):
    """This run no longer holds its task: a newer attempt claimed it (fencing, DEP-2). The run
    stops where it is and leaves the target to that attempt (no rollback: it is not its own)."""


@dataclass(frozen=True)
class _Claim:
    """What the claiming transaction read, as plain values: no ORM object outlives its transaction.

    Attributes:
        cert: the certificate being deployed.
        record: the target, as it was when claimed (it still names the old certificate).
        attempt: the attempt this run is (the task's attempts after the claim): its fencing token.
        checkpoint: the target's checkpoint left by an earlier, crashed run (DEP-7).
        old_fingerprint: the fingerprint of the certificate the target served before (VER-2).
    """

    cert: Certificate
    record: TargetRecord
    attempt: int
    checkpoint: dict[str, Any]
    old_fingerprint: str | None


@dataclass(frozen=True)
class _Busy:
    """The target is held by another task's live run: this one waits (one deployment per target)."""

    refusal: Refusal


class _Heartbeat:
    """Renews the run's task lease and target lock every `every` while the run lives (DEP-2).

    A renewal that finds the task claimed by a newer attempt sets `lost`: the run is fenced and
    stops before its next action. A database error is logged and the next beat tries again (the
    lease is several beats long).
    """

    def __init__(self, sessions: Sessions, task_id: str, target_id: str, attempt: int, lease: timedelta,
                 every: timedelta, clock: Callable[[], datetime]):
        self.sessions, self.task_id, self.target_id, self.attempt = sessions, task_id, target_id, attempt
        self.lease, self.every, self.clock = lease, every, clock
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"deploy-heartbeat-{task_id}", daemon=True)

    def start(self) -> None:
        """Start beating."""
        self._thread.start()

    def stop(self) -> None:
        """Stop beating (the run ended, or died with its process)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.every.total_seconds()):
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - the next beat retries; the lease spans several
                log.warning("deployment %s: heartbeat not recorded (%s)", self.task_id, exc)

    def beat(self) -> bool:
        """Renew the lease once; False (and `lost` set) when a newer attempt holds the task."""
        until = self.clock() + self.lease
        with self.sessions() as s:
            held = s.execute(update(DeploymentTaskRow)
                             .where(DeploymentTaskRow.id == self.task_id, DeploymentTaskRow.attempts == self.attempt,
                                    DeploymentTaskRow.state == DeploymentState.RUNNING.value)
                             .values(lease_until=until).execution_options(synchronize_session=False)).rowcount
            if held != 1:
                self.lost.set()
                return False
            s.execute(update(DeploymentTargetRow)
                      .where(DeploymentTargetRow.id == self.target_id, DeploymentTargetRow.lock_task_id == self.task_id)
                      .values(lock_until=until).execution_options(synchronize_session=False))
        return True


class _Run:
    """One run of a claimed task: what it deploys where, and how far it got.

    Holds plain values only. Every `step` is a short transaction of its own that re-reads the task
    row by id, checks the run still holds it (fencing: its attempt number), and records one
    progress line (the CLI and the UI see it while the run goes on) with the target's checkpoint,
    so a rerun after a crash rolls back to the same state (DEP-7). The work on the target (reload,
    TLS probe, AWS calls) runs between two steps, never inside one: SQLite has one writer, and a
    transaction held across a reload would block every other.
    """

    def __init__(self, sessions: Sessions, task_id: str, claim: _Claim, clock: Callable[[], datetime],
                 lease: timedelta):
        self.sessions, self.task_id, self.clock, self.lease = sessions, task_id, clock, lease
        self.cert, self.record, self.attempt = claim.cert, claim.record, claim.attempt
        self.checkpoint, self.old_fingerprint = claim.checkpoint, claim.old_fingerprint
        self.progress = int(Progress.STARTED)
        """The progress last recorded (the claim records STARTED)."""
        self.target: Any = None
        self.material: DeployMaterial | None = None
        self.heartbeat: _Heartbeat | None = None
        self.verified = True
        """False when the target is marked not verifiable: the run ends UNVERIFIED, its backup kept."""
        self.where = self.record.name or self.record.kind.value
        """What an operator calls the target: its name until the adapter describes itself."""

    def taken_over(self, held_by: int | None = None) -> TakenOverError:
        """The refusal of a fenced run."""
        by = f"attempt {held_by}" if held_by is not None else "a newer attempt"
        return TakenOverError(Refusal(
            Reason.DEPLOYMENT_IN_PROGRESS,
            f"{by} of deployment task {self.task_id} took it over from this run (attempt {self.attempt}); this "
            f"run stops and leaves the target to it (see it with `certpilot deployments {self.cert.id}`).",
            rule="DEP-2"))

    def guard(self) -> None:
        """Fencing before an action on the target: the run still holds its task.

        Raises:
            TakenOverError: a newer attempt claimed the task (this run's heartbeat saw it, or the row says so).
        """
        if self.heartbeat is not None and self.heartbeat.lost.is_set():
            raise self.taken_over()
        with self.sessions() as s:
            attempts = s.scalar(select(DeploymentTaskRow.attempts).where(DeploymentTaskRow.id == self.task_id))
        if attempts != self.attempt:
            raise self.taken_over(attempts)

    def step(self, progress: Progress | int, line: str, *, state: DeploymentState | None = None,
             also: Also | None = None) -> TaskRecord:
        """Record one line of progress (and the final state) in one transaction, committed at once,
        only while this run holds the task (its attempt is the task's); renews the lease.

        Args:
            progress: how far the run got.
            line: what happened (timestamped on the task's details).
            state: the final state, when the run ends with this step.
            also: more work for the same transaction (it commits or rolls back with the step).
        Returns:
            The task as recorded by this step.
        Raises:
            NotFoundError: the task row is gone. TakenOverError: a newer attempt holds the task.
        """
        now = self.clock()
        checkpoint = getattr(self.target, "checkpoint", None)
        with self.sessions() as s:
            row = s.get(DeploymentTaskRow, self.task_id)
            if row is None:
                raise NotFoundError(f"no deployment task with id {self.task_id}")
            if row.attempts != self.attempt:  # fenced: a newer run took the task over (DEP-2)
                raise self.taken_over(row.attempts)
            row.progress = int(progress)
            prior = row.details or ""
            row.details = prior + ("\n" if prior else "") + f"{now:%Y-%m-%dT%H:%M:%S}Z {line}"
            row.updated_at = now
            row.lease_until = now + self.lease
            if checkpoint:  # with each step: a rerun after a crash rolls back to the same state
                row.checkpoint = dict(checkpoint)
            if state is not None:
                row.state = state.value
                if is_terminal(state):
                    row.finished_at = now
                    row.lease_until = None
                    _release_target(s, self.record.id, self.task_id)
            if also is not None:
                also(s)
            recorded = _task(row)
        self.progress = int(progress)
        return recorded

    def note(self, line: str) -> None:
        """A progress line recorded if the store takes it (a failure's story; never blocks a rollback)."""
        try:
            self.step(self.progress, line)
        except TakenOverError:
            raise
        except Exception as exc:  # noqa: BLE001 - the rollback goes on; the final record retries
            log.warning("deployment %s: could not record %r (%s)", self.task_id, line[:80], exc)


@dataclass(frozen=True)
class _Failure:
    """Why a run failed: the error line, the VER-2 diagnosis when verification failed, and
    whether the target may have been touched (then it is rolled back)."""

    error: str
    diagnosis: str | None = None
    touched: bool = True


def deploy(sessions: Sessions, task_id: str, target_factory: TargetFactory, key_opener: KeyOpenerById,
           verifier: Verifier, *, notify: Notify | None = None, now: datetime | None = None,
           clock: Callable[[], datetime] = utcnow, lease: timedelta = RUN_LEASE, heartbeat: timedelta = HEARTBEAT,
           wait: float = 600.0, sleep: Callable[[float], None] = time.sleep) -> TaskRecord:
    """Run one deployment task: stage → validate → swap → reload → verify → record → finalize | rollback.

    DEP-5 (reload after the files), DEP-6 (full chain), DEP-7 (any failure restores the previous
    certificate, database errors included), DEP-3 (a failure is told through `notify`). A
    sequence of short transactions from `sessions`: the claim (the task and its target's lock,
    committed before anything is touched; a RUNNING task is taken over only once its lease
    lapsed, DEP-2), then one per step with the target's checkpoint; the target's own work and the
    verification run between them, outside any transaction. While the run lives a heartbeat
    renews its lease; every step and every action on the target first checks the run still holds
    the task (fencing), and a run taken over stops without touching the target again. The
    success is recorded before the backup is dropped; a failure is rolled back first and
    recorded after, in transactions of their own (retried).

    Args:
        sessions: opens each transaction (`Services.session` in the door); the caller must not
            hold a write transaction on the same SQLite database while this runs.
        task_id: the task to run.
        target_factory: builds the target adapter from its record.
        key_opener: opens a certificate's private key from the vault (inside the adapter only).
        verifier: probes the target's endpoints for the new certificate (VER-1).
        notify: records and sends the failure notice (`notices.deployment_failed`) in the
            transaction that records the failure; a channel or the notice failing does not change
            the task's record.
        now: the time used for the claim decision (default the clock).
        clock: wall clock for the progress lines and the lease.
        lease: how long the run's lease lasts past each heartbeat or step.
        heartbeat: how often a live run renews its lease.
        wait: seconds to wait while another task's run holds the target (one at a time).
        sleep: how to wait between looks at a busy target.
    Returns:
        the task after the run (unchanged when it had already succeeded: a rerun is a no-op).
    Raises:
        NotFoundError: no such task. RefusedError: KEY_NOT_HELD (CSR-2), NOT_DEPLOYABLE, or
        DEPLOYMENT_IN_PROGRESS (another run holds the task, or the target after `wait`, or this
        run was taken over: `TakenOverError`). TransientDeployError: the final state could not
        be recorded (the target was restored; a retry after the lease records it).
    """
    claim = _claim_waiting(sessions, task_id, now, clock, lease, wait, sleep)
    if isinstance(claim, TaskRecord):
        return claim
    run = _Run(sessions, task_id, claim, clock, lease)
    run.heartbeat = _Heartbeat(sessions, task_id, claim.record.id, claim.attempt, lease, heartbeat, clock)
    run.heartbeat.start()
    try:
        failure = _set_up(run, target_factory, key_opener) or _swap_in(run, verifier)
        if failure is None:
            done = _succeed(run)
            if isinstance(done, TaskRecord):
                return done
            failure = done
        return _roll_back(run, failure, notify)
    finally:
        run.heartbeat.stop()
        close = getattr(run.target, "close", None)
        if close is not None:
            close()


def _claim_waiting(sessions: Sessions, task_id: str, now: datetime | None, clock: Callable[[], datetime],
                   lease: timedelta, wait: float, sleep: Callable[[float], None]) -> _Claim | TaskRecord:
    """`_claim`, waiting up to `wait` seconds while another task's live run holds the target."""
    deadline = time.monotonic() + wait
    delay = 0.05
    while True:
        got = _claim(sessions, task_id, now or clock(), clock() + lease)
        if not isinstance(got, _Busy):
            return got
        if time.monotonic() >= deadline:
            raise RefusedError(got.refusal)
        sleep(delay)
        delay = min(delay * 2, 2.0)


def _claim(sessions: Sessions, task_id: str, now: datetime, lease_until: datetime) -> _Claim | TaskRecord | _Busy:
    """Check the run may start (DEP-2 lease, CSR-2, DEP-1), then claim the task and lock its
    target: one transaction (either both or neither).

    Returns:
        The claim; the task unchanged when it already succeeded (a rerun is a no-op); or
        `_Busy` when another task's live run holds the target (nothing was written).
    Raises:
        NotFoundError: no such task. RefusedError: another run holds the task, or the certificate
        may not go to this target (nothing is written).
    """
    with sessions() as s:
        row = s.get(DeploymentTaskRow, task_id)
        if row is None:
            raise NotFoundError(f"no deployment task with id {task_id}")
        if row.state == DeploymentState.SUCCEEDED.value:
            return _task(row)
        work = claims_of(s, [row.certificate_id]).get(row.certificate_id)
        refusal = may_run(row.state, started_at=row.started_at, now=now, lease_until=row.lease_until,
                          claimed_at=work.claimed_at if work is not None else None)
        if refusal is not None:
            raise RefusedError(refusal)
        repo = Repository(s)
        cert = repo.certificate_model(row.certificate_id)
        target_row = s.get(DeploymentTargetRow, row.target_id)
        refusal = may_deploy(cert, TargetKind(target_row.kind), has_pem=bool(repo.get_certificate(cert.id).leaf_pem))
        if refusal is not None:
            raise RefusedError(refusal)
        # One deployment per target (DEP-2): the rule decides, a conditional UPDATE takes the lock
        # (a concurrent claim of another task on the same target sees 0 rows).
        locked = target_free(target_row.lock_task_id, target_row.lock_until, task_id=task_id, now=now) and s.execute(
            update(DeploymentTargetRow)
            .where(DeploymentTargetRow.id == target_row.id,
                   or_(DeploymentTargetRow.lock_task_id.is_(None), DeploymentTargetRow.lock_task_id == task_id,
                       DeploymentTargetRow.lock_until.is_(None), DeploymentTargetRow.lock_until <= now))
            .values(lock_task_id=task_id, lock_until=lease_until)
            .execution_options(synchronize_session=False)).rowcount == 1
        if not locked:
            s.refresh(target_row)
            until = f" (its lock runs to {target_row.lock_until:%Y-%m-%dT%H:%M:%S}Z while its run lives)" \
                if target_row.lock_until else ""
            return _Busy(Refusal(
                Reason.DEPLOYMENT_IN_PROGRESS,
                f"target {target_row.name or target_row.id} is being deployed by task {target_row.lock_task_id}"
                f"{until}; one deployment at a time per target — run this one again once it ends "
                f"(`certpilot deployments {target_row.certificate_id}`).", rule="DEP-2"))
        # One conditional UPDATE; a concurrent run sees 0 rows and gets the refusal.
        claimed = s.execute(
            update(DeploymentTaskRow)
            .where(DeploymentTaskRow.id == row.id, DeploymentTaskRow.state == row.state,
                   DeploymentTaskRow.attempts == row.attempts)
            .values(state=DeploymentState.RUNNING.value, attempts=row.attempts + 1, started_at=now,
                    finished_at=None, progress=int(Progress.STARTED), updated_at=now, lease_until=lease_until)
            .execution_options(synchronize_session=False)).rowcount
        if claimed != 1:
            raise RefusedError(may_run(DeploymentState.RUNNING, started_at=now, now=now, lease_until=lease_until))
        old = s.get(CertificateRow, target_row.certificate_id)
        return _Claim(cert=cert, record=_target(target_row), attempt=row.attempts + 1,
                      checkpoint=dict(row.checkpoint or {}),
                      old_fingerprint=old.fingerprint_sha256 if old is not None else None)


def _release_target(session: Session, target_id: str, task_id: str) -> None:
    """Free the target's lock held by `task_id` (in the transaction of the task's final state)."""
    session.execute(update(DeploymentTargetRow)
                    .where(DeploymentTargetRow.id == target_id, DeploymentTargetRow.lock_task_id == task_id)
                    .values(lock_task_id=None, lock_until=None).execution_options(synchronize_session=False))


def _set_up(run: _Run, target_factory: TargetFactory, key_opener: KeyOpenerById) -> _Failure | None:
    """Build the adapter (with the checkpoint of an earlier crashed run) and load the material.

    A bad target configuration or stored PEM fails the task before anything is touched; an
    earlier run's checkpoint means the target may hold its half-done work, so then the failure
    is rolled back like any other.
    """
    try:
        run.target = target_factory(run.record, key_opener)
        if hasattr(run.target, "checkpoint"):
            run.target.checkpoint = dict(run.checkpoint)
        desc = run.target.describe()
    except Exception as exc:  # noqa: BLE001 - bad target config: nothing of this run was touched
        run.target = None
        return _Failure(f"setup failed: {exc}; nothing on the target was changed — fix the target's configuration "
                        f"(`certpilot target show {run.record.id}`)", touched=False)
    try:
        with run.sessions() as s:
            run.material = material_for(s, run.cert.id, key_opener)
        run.where = desc
        run.step(Progress.STARTED, f"attempt {run.attempt}: deploying {run.cert.common_name} "
                                   f"({run.material.fingerprint[:16]}…) to {desc}")
    except TakenOverError:
        raise
    except Exception as exc:  # noqa: BLE001 - bad stored PEM or the store failing
        return _Failure(f"setup failed: {exc}", touched=bool(run.checkpoint))
    return None


def _act(run: _Run, action: Callable[[], None]) -> None:
    """An action on the target, taken only while the run holds its task (fencing)."""
    run.guard()
    action()


def _stage(run: _Run) -> None:
    _act(run, lambda: run.target.stage(run.material))
    run.step(Progress.STAGED, f"staged the new certificate and {len(run.material.chain_pems)} intermediate(s)")


def _validate(run: _Run) -> None:
    _act(run, run.target.validate)
    run.step(Progress.VALIDATED, "the target's own check passed")


def _swap(run: _Run) -> None:
    _act(run, run.target.commit)
    run.step(Progress.COMMITTED, "committed")


def _reload(run: _Run) -> None:
    _act(run, run.target.reload)
    run.step(Progress.RELOADED, "reloaded")


_STEPS: tuple[tuple[str, Callable[[_Run], None]], ...] = (
    ("stage", _stage), ("validate", _validate), ("commit", _swap), ("reload", _reload))
"""The steps before verification, in order, each named as its failure is reported."""


def _swap_in(run: _Run, verifier: Verifier) -> _Failure | None:
    """Stage, validate, swap and reload (DEP-5, DEP-6), then verify (VER-1); the first failure.

    A target without endpoints is probed at its certificate's name on 443 (VER-1); one with no
    name to probe fails as not verifiable: nothing proves the new certificate is served.
    """
    step = "stage"
    try:
        for name, action in _STEPS:
            step = name  # the step a failure is reported under
            action(run)
        step = "verify"
        if not verifiable(run.record.config):
            run.verified = False
            run.step(Progress.VERIFIED, "not verifiable: the target is marked so (no endpoint serves it); the new "
                                        "certificate is in place but NOT verified (VER-1)")
            return None
        endpoints = run.record.endpoints or default_endpoints(run.cert.names)
        if not endpoints:
            return _Failure("not verifiable: the target has no endpoint and the certificate has no name to probe "
                            "(VER-1); give it one (`certpilot target add ... --endpoint HOST:PORT`)")
        result = verifier(run.material, endpoints, run.target, run.old_fingerprint)
        if not result.ok:
            return _Failure(f"verification failed: {result.message}", result.message)
        run.step(Progress.VERIFIED, f"verified: {result.message}")
    except TakenOverError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is recorded and rolled back (DEP-7)
        return _Failure(f"{getattr(exc, 'step', step)} failed: {exc}")
    return None


def _succeed(run: _Run) -> TaskRecord | _Failure:
    """Record success and move the target to the new certificate (DEP-1) in one transaction,
    then drop the backup (kept until the success is recorded). A success that cannot be
    recorded is a failure: it is rolled back (unless the record did commit after all)."""
    state = DeploymentState.SUCCEEDED if run.verified else DeploymentState.UNVERIFIED
    try:
        done = run.step(Progress.DONE, "succeeded" if run.verified else "deployed, not verified",
                        state=state,
                        also=partial(_move_target, target_id=run.record.id, cert_id=run.cert.id, now=run.clock()))
    except TakenOverError:
        raise
    except Exception as exc:  # noqa: BLE001 - did it commit? ask before rolling back
        if _recorded_state(run) is not state:
            return _Failure(f"recording the success failed: {exc}")
        with run.sessions() as s:
            done = get_task(s, run.task_id)
    if not run.verified:
        return done  # the backup stays: nothing proved the new certificate works
    try:
        run.target.finalize()
    except Exception as exc:  # noqa: BLE001 - the new certificate is served; cleanup can wait
        log.warning("deployment %s succeeded; dropping the backup failed: %s", run.task_id, exc)
    return done


def _recorded_state(run: _Run) -> DeploymentState | None:
    """The task's recorded state, asked a few times (None when the store does not answer)."""
    for delay in (*RECORD_TRIES, None):
        try:
            with run.sessions() as s:
                return DeploymentState(s.scalar(select(DeploymentTaskRow.state)
                                                .where(DeploymentTaskRow.id == run.task_id)))
        except Exception:  # noqa: BLE001 - retried
            if delay is None:
                return None
            time.sleep(delay)
    return None


def _roll_back(run: _Run, failure: _Failure, notify: Notify | None) -> TaskRecord:
    """DEP-7: restore the previous certificate, then record the failure; ends ROLLED_BACK or FAILED.

    The rollback needs nothing from the store (the checkpoint is in memory and on the target), so
    it runs first whatever failed, database errors included; the lines and the final state are
    recorded after, each in a transaction of its own, the final one retried. A failed setup
    touched nothing: it ends FAILED without a rollback. DEP-3: the notice is recorded in the
    transaction of the final state.

    Raises:
        TransientDeployError: the final state could not be recorded (the task stays RUNNING
            until its lease lapses; a retry then takes it over, finds the checkpoint and finishes).
    """
    run.note(failure.error)
    rolled_back = False
    if failure.touched and run.target is not None:
        try:
            run.target.rollback()
            rolled_back = True
            run.note("rolled back: the previous certificate is in place again (DEP-7)")
        except RollbackImpossibleError as exc:
            run.note(str(exc))
        except Exception as exc:  # noqa: BLE001 - recorded; the task ends FAILED
            run.note(f"rollback failed: {exc}; restore the previous certificate by hand")
    state = final_state(verified=False, rolled_back=rolled_back)
    last: Exception | None = None
    for delay in (*RECORD_TRIES, None):
        try:
            return run.step(run.progress, state.value, state=state, also=_failure_notice(notify, run, failure))
        except (TakenOverError, NotFoundError):
            raise
        except Exception as exc:  # noqa: BLE001 - retried: the record must say what the target serves
            last = exc
            if delay is not None:
                time.sleep(delay)
    raise TransientDeployError(
        f"deployment task {run.task_id} was {state.value.replace('_', ' ')} on the target but the store did not "
        f"record it ({type(last).__name__}); it stays running until its lease lapses, then a retry records it",
        step="rollback") from last


def _failure_notice(notify: Notify | None, run: _Run, failure: _Failure) -> Also | None:
    """DEP-3: the owner hears of the failure, recorded with it; a notice failing (a channel, the
    inbox write) leaves the task's record as it is (its own savepoint)."""
    if notify is None:
        return None
    from certpilot.operations import notices

    event = notices.deployment_failed(run.cert, run.where, failure.diagnosis, error=failure.error)

    def record(session: Session) -> None:
        try:
            with session.begin_nested():
                notify(session, event)
        except Exception as exc:  # noqa: BLE001 - the failure is recorded on the task; the notice is best effort
            log.warning("the deployment-failed notice for task %s was not delivered: %s", run.task_id, exc)

    return record


def _move_target(session: Session, *, target_id: str, cert_id: str, now: datetime) -> None:
    # DEP-1: the target now serves the new certificate; the next renewal finds it there.
    row = session.get(DeploymentTargetRow, target_id)
    row.certificate_id = cert_id
    row.updated_at = now


# ---------------------------------------------------------------------------- Services-level doors
# What the tasks call: each owns its transaction and takes its adapters from the services.


def plan(svc: Services, certificate_id: str) -> tuple[str, ...]:
    """DEP-1/DEP-2: plan one managed deployment task per target the old certificate had.

    Idempotent: planning again creates nothing twice.

    Returns:
        The ids of every deployment task of the certificate, planned now or before.
    Raises:
        NotFoundError: no such certificate.
    """
    with svc.session() as s:
        return tuple(t.id for t in plan_deployments(s, certificate_id, now=svc.now()))


def routes(svc: Services, certificate_id: str) -> tuple[tuple[str, str | None], ...]:
    """DEP-1/DEP-2: plan the certificate's deployment tasks (as `plan`) and say where each runs:
    (task id, the host — work queue — of its target, or None for any worker).

    Raises:
        NotFoundError: no such certificate.
    """
    with svc.session() as s:
        tasks = plan_deployments(s, certificate_id, now=svc.now())
        return tuple((t.id, s.get(DeploymentTargetRow, t.target_id).host) for t in tasks)


def outcome(svc: Services, task_id: str) -> DeploymentOutcome:
    """A task's outcome as recorded (what a deployment run on another host left in the store).

    Raises:
        NotFoundError: no such task.
    """
    with svc.session(readonly=True) as s:
        rec = get_task(s, task_id)
    return DeploymentOutcome(task_id=rec.id, target_id=rec.target_id, state=rec.state, details=rec.details)


def run_deployment(svc: Services, task_id: str) -> DeploymentOutcome:
    """Run one deployment task (see `deploy`): a sequence of short transactions of the services'
    store; a failure is told through `notices.send`, in the transaction that records it (DEP-3).

    Returns:
        The task's outcome: SUCCEEDED, ROLLED_BACK (the previous certificate is back, DEP-7) or
        FAILED, with the run's progress lines.
    Raises:
        NotFoundError: no such task. RefusedError: KEY_NOT_HELD (CSR-2), NOT_DEPLOYABLE, or
        DEPLOYMENT_IN_PROGRESS (another run holds it).
    """
    from certpilot.operations import notices

    rec = deploy(svc.session, task_id, svc.target_factory, svc.key_opener(), svc.verifier,
                 notify=lambda s, event: notices.send(svc, event, session=s), now=svc.now(), clock=svc.clock)
    return DeploymentOutcome(task_id=rec.id, target_id=rec.target_id, state=rec.state, details=rec.details)


def locate_targets(svc: Services, certificate_id: str) -> tuple[str, ...]:
    """EM-3: where a certificate is deployed, as ``kind:name`` (the target's id when unnamed)."""
    with svc.session(readonly=True) as s:
        return tuple(f"{t.kind.value}:{t.name or t.id}" for t in targets_of(s, certificate_id))
