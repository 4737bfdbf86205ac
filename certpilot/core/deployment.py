"""Pure decisions of deployment (DEP-1, DEP-2, DEP-7, CSR-2): which targets, may it deploy,
may this run start, which states are final, how far along a task is, why a key cannot be opened;
and the plain records the use cases, the deploy adapters' factory and the verifier pass around
(`TargetRecord`, `VerifyResult`).

No I/O: `certpilot.operations.deployments` reads the rows and asks here; adapters act.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from certpilot.core.errors import Reason, Refusal
from certpilot.core.models import Certificate, Status
from certpilot.core.verification import Endpoint


class DeploymentState(StrEnum):
    """A managed deployment task's state (DEP-2)."""

    PENDING = "pending"
    """Planned; nothing done on the target yet."""
    RUNNING = "running"
    """A run holds the task and is acting on the target."""
    SUCCEEDED = "succeeded"
    """Deployed and verified: the target serves the new certificate."""
    FAILED = "failed"
    """Failed, and the previous certificate could not be restored automatically."""
    ROLLED_BACK = "rolled_back"
    """Failed, and the previous certificate was restored (DEP-7)."""
    UNVERIFIED = "unverified"
    """Deployed to a target marked "not verifiable" (no endpoint to probe, VER-1): nothing proves
    it is served, so it is never shown as verified; its backup is kept until the next success."""


TERMINAL = frozenset({DeploymentState.SUCCEEDED, DeploymentState.FAILED, DeploymentState.ROLLED_BACK,
                      DeploymentState.UNVERIFIED})


class TargetKind(StrEnum):
    """Where a certificate can be deployed."""

    NGINX = "nginx"
    """A server reading PEM files and reloading on a command (nginx, Apache, HAProxy)."""
    FILES = "files"
    """A directory bundle (cert, chain, fullchain, key) for manual deployment (DEP-4)."""
    AWS_ACM = "aws-acm"
    """An AWS ACM certificate re-imported in place (its ARN and bindings kept)."""
    AWS_ELB = "aws-elb"
    """An AWS ALB/ELBv2 HTTPS listener (default certificate or an SNI certificate)."""
    ALIBABA_JOB = "alibaba-deployment-job"
    """Alibaba Cloud resources (SLB/ALB, CDN, WAF…) a CAS deployment job moves to the new certificate."""


class DeploymentOutcome(BaseModel):
    """What one run of a managed deployment task ended with (DEP-2, DEP-7): the flows branch on
    `state`; `details` are the run's progress lines (no key material, CSR-5)."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    target_id: str
    state: DeploymentState
    details: str = ""

    @property
    def succeeded(self) -> bool:
        """True when the target serves the new certificate, verified (VER-1)."""
        return self.state is DeploymentState.SUCCEEDED

    @property
    def deployed(self) -> bool:
        """True when the new certificate is in place: verified, or on a target marked not verifiable."""
        return self.state in (DeploymentState.SUCCEEDED, DeploymentState.UNVERIFIED)


@dataclass(frozen=True)
class TargetRecord:
    """A deployment target as the use cases see it (no secrets in `config`).

    Attributes:
        id: the target's id.
        certificate_id: the certificate the target serves now (DEP-1: it moves to each new one).
        kind: which adapter deploys to it.
        name: what operators call it ("" when unnamed).
        config: the adapter's settings (paths, argv, ARNs); never credentials or key material.
        endpoints: where the target is probed after a deployment (VER-1).
        host: the host (Prefect work queue) whose worker deploys it; None: any worker.
    """

    id: str
    certificate_id: str
    kind: TargetKind
    name: str
    config: dict[str, Any]
    endpoints: tuple[Endpoint, ...]
    host: str | None = None

    @property
    def verifiable(self) -> bool:
        """False when marked "not verifiable" (VER-1: its deployments are never shown verified)."""
        return verifiable(self.config)


@dataclass(frozen=True)
class VerifyResult:
    """What a verifier found: served or not, and a sentence (a VER-2 diagnosis when not)."""

    ok: bool
    message: str


KeyOpenerById = Callable[[str], bytes]
"""`key_opener(certificate_id) -> key PEM`, opened from the vault inside an adapter only (CSR-5)."""


MANAGED_KINDS = frozenset({TargetKind.NGINX, TargetKind.AWS_ACM, TargetKind.AWS_ELB, TargetKind.ALIBABA_JOB})
"""Targets certpilot deploys to by itself: they need the private key (CSR-2; CAS needs it to deploy)."""


class Progress(IntEnum):
    """A task's progress (0-100) after each step of a run."""

    PLANNED = 0
    STARTED = 5
    STAGED = 20
    VALIDATED = 40
    COMMITTED = 60
    RELOADED = 75
    VERIFIED = 90
    DONE = 100


DEPLOYABLE_STATES = frozenset({Status.ISSUED, Status.UPLOADED})
RUN_LEASE = timedelta(minutes=2)
"""A RUNNING task whose lease (renewed by its run's heartbeat every `HEARTBEAT`) lapsed this long
ago is taken to be abandoned by a dead run and may run again; a task without a recorded lease
(claimed before migration 0011) counts from its start."""
HEARTBEAT = timedelta(seconds=20)
"""How often a live run renews its task's lease and its target's lock."""
DEFAULT_VERIFY_PORT = 443


def is_terminal(state: DeploymentState | str) -> bool:
    """True when a task is finished (succeeded, failed or rolled back)."""
    return DeploymentState(state) in TERMINAL


def may_deploy(certificate: Certificate, kind: TargetKind | str, *, has_pem: bool = True) -> Refusal | None:
    """May `certificate` be deployed to a target of `kind`?

    Args:
        certificate: the new certificate.
        kind: the target's kind.
        has_pem: whether the certificate's PEM is stored (nothing to deploy otherwise).
    Returns:
        None, or a refusal: not issued yet (NOT_DEPLOYABLE), or the key is not held and the
        target is managed (KEY_NOT_HELD, CSR-2; a files bundle without the key stays possible, DEP-4).
    """
    kind = TargetKind(kind)
    if certificate.state not in DEPLOYABLE_STATES or not has_pem:
        return Refusal(Reason.NOT_DEPLOYABLE,
                       f"certificate {certificate.common_name} (id {certificate.id}) is {certificate.state.value}"
                       f"{'' if has_pem else ' and has no certificate PEM'}: there is nothing to deploy yet; "
                       f"deploy it once the CA has issued it (see where it stands with `certpilot show "
                       f"{certificate.id}`).", rule="DEP-1")
    if not certificate.key_held and kind in MANAGED_KINDS:
        return Refusal(Reason.KEY_NOT_HELD,
                       f"certificate {certificate.common_name} (id {certificate.id}) was requested with your own "
                       f"CSR, so certpilot does not hold its private key and cannot deploy it to the {kind.value} "
                       "target; install it there yourself (a files bundle without the key is available), or "
                       f"renew with a system-generated key (`certpilot renew {certificate.id} --csr system "
                       "--dry-run` previews it).", rule="CSR-2")
    return None


def key_refusal(certificate: Certificate) -> Refusal:
    """Why the private key of `certificate` cannot be opened when the store holds none (CSR-2).

    Args:
        certificate: the certificate whose key was asked for.
    Returns:
        The refusal a managed deployment of it gets without its key: not issued yet
        (NOT_DEPLOYABLE), else KEY_NOT_HELD with what to do instead.
    """
    without_key = certificate.model_copy(update={"key_held": False})
    # may_deploy always refuses a managed target without the key; the fallback keeps the answer
    # a refusal whatever that rule becomes.
    return may_deploy(without_key, TargetKind.NGINX) or Refusal(
        Reason.KEY_NOT_HELD, f"no private key is stored for {certificate.common_name} (id {certificate.id}); "
                             "re-import it with its key", rule="CSR-2")


def may_run(state: DeploymentState | str, *, started_at: datetime | None, now: datetime,
            lease: timedelta = RUN_LEASE, claimed_at: datetime | None = None,
            lease_until: datetime | None = None) -> Refusal | None:
    """May a run take a task in `state` now? (The caller skips SUCCEEDED tasks: a rerun is a no-op.)

    PENDING, FAILED and ROLLED_BACK may run (a retry after a fix); RUNNING only when its run's
    lease lapsed (`lease_until` passed: its heartbeat stopped, the run died; without a recorded
    lease, `lease` after `started_at`), or at once when the certificate's work was claimed by a
    run after this task started (`claimed_at` later than `started_at`): a run claims a
    certificate's work before it deploys, and a new claim is made only by a run launched because
    the claimant before it died. A run taken over while it still lives is fenced: each of its
    writes needs its own attempt number, and the file targets' host lock keeps it and its
    successor from acting on the files at once. SUCCEEDED never runs again.
    """
    state = DeploymentState(state)
    if state is DeploymentState.SUCCEEDED:
        return Refusal(Reason.DEPLOYMENT_IN_PROGRESS,
                       "this deployment already succeeded; nothing to do (a new certificate gets its own task).",
                       rule="DEP-2")
    superseded = claimed_at is not None and started_at is not None and claimed_at > started_at
    until = lease_until if lease_until is not None else (started_at + lease if started_at is not None else None)
    if state is DeploymentState.RUNNING and until is not None and now < until and not superseded:
        return Refusal(Reason.DEPLOYMENT_IN_PROGRESS,
                       f"another run holds this deployment (its lease runs to {until:%Y-%m-%dT%H:%M:%S}Z and its "
                       "heartbeat renews it while it lives); wait for it to finish, then run it again.",
                       rule="DEP-2")
    return None


def target_free(lock_task_id: str | None, lock_until: datetime | None, *, task_id: str, now: datetime) -> bool:
    """DEP-2: may task `task_id` take the target's lock? Free, already its own (a takeover of
    the same task), or its holder's lock lapsed (the holder's heartbeat stopped)."""
    return lock_task_id is None or lock_task_id == task_id or lock_until is None or lock_until <= now


def verifiable(config: dict[str, Any]) -> bool:
    """VER-1: False only for a target its operator marked "not verifiable" (`verify: false`):
    a bundle for a manual install, with no endpoint that serves it."""
    return config.get("verify", True) is not False


def default_endpoints(names: Iterable[str], port: int = DEFAULT_VERIFY_PORT) -> tuple[Endpoint, ...]:
    """VER-1: where a target without endpoints is probed: `https://<name>:443` for the
    certificate's first name that is not a wildcard (none: the target is not verifiable)."""
    for name in names:
        if not name.startswith("*"):
            return (Endpoint(host=name, port=port, sni=name),)
    return ()


def targets_to_plan(parent_target_ids: Iterable[str], planned_target_ids: Iterable[str]) -> list[str]:
    """DEP-1/DEP-2: the targets of the old certificate that have no task for the new one yet.

    Order of `parent_target_ids` is kept; duplicates are dropped.
    """
    planned = set(planned_target_ids)
    out: list[str] = []
    for tid in parent_target_ids:
        if tid not in planned:
            planned.add(tid)
            out.append(tid)
    return out


def final_state(*, verified: bool, rolled_back: bool) -> DeploymentState:
    """The state a finished run records: succeeded, rolled back (DEP-7) or failed."""
    if verified:
        return DeploymentState.SUCCEEDED
    return DeploymentState.ROLLED_BACK if rolled_back else DeploymentState.FAILED


HOST_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
"""A target's host: the Prefect work queue its deploy steps run on (lowercase letters, digits, dashes)."""
_ARN = re.compile(r"^arn:aws[a-z-]*:(acm|elasticloadbalancing):[a-z0-9-]+:\d{12}:\S+$")
_BLOCK_NAME = HOST_NAME
"""A Prefect block document name: the same slug shape as a work queue name."""


def _cloud_id(value: Any) -> bool:
    """A CAS id: a positive int or a string of digits (not a bool, which is an int in Python)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value > 0
    return isinstance(value, str) and value.strip().isdigit() and int(value) > 0


def config_problems(kind: TargetKind | str, config: dict[str, Any], *, host: str | None = None,
                    endpoints: Iterable[tuple[str, int, str | None]] = ()) -> list[tuple[str, str]]:
    """What is wrong with a target's definition as written (no I/O), as (field, problem) pairs.

    Per kind: nginx needs `files` (a non-empty list of {cert, key} paths) and optional
    `check_argv`/`reload_argv` (lists of strings); files needs `directory`; aws-acm needs
    `certificate_arn`; aws-elb needs `listener_arn` and `mode` default|sni; alibaba-deployment-job
    needs `resource_ids` (CAS cloud resource ids) and takes `cert_id` (the CAS CertId the resources
    used before, informational), `connection` (the Alibaba Cloud connection block's name, default
    "default"), `contact_ids` (CAS contacts the job notifies) and `timeout` (seconds). Every target may name
    its `host` (a work queue) and `endpoints` (host, port 1-65535); `verify` is a boolean; `trust`
    names what its endpoints' chains must reach besides the probe's bundle (`private-ca`, PEM
    files; comma-separated).

    Returns:
        The problems, each naming its field (empty: well formed).
    """
    try:
        kind = TargetKind(kind)
    except ValueError:
        return [("kind", f"unknown target kind {kind!r}; use one of {', '.join(k.value for k in TargetKind)}")]
    out: list[tuple[str, str]] = []

    def need_str(field: str) -> str | None:
        value = config.get(field)
        if not isinstance(value, str) or not value.strip():
            out.append((field, "is required (a non-empty string)"))
            return None
        return value

    if kind is TargetKind.NGINX:
        files = config.get("files")
        if not isinstance(files, list) or not files:
            out.append(("files", "is required: at least one {cert, key} pair of paths"))
        else:
            for i, pair in enumerate(files):
                for part in ("cert", "key"):
                    if not isinstance(pair, dict) or not isinstance(pair.get(part), str) or not pair.get(part):
                        out.append((f"files[{i}].{part}", "is required (a path)"))
        for field in ("check_argv", "reload_argv"):
            argv = config.get(field)
            if argv is not None and (not isinstance(argv, list) or not argv or
                                     not all(isinstance(a, str) and a for a in argv)):
                out.append((field, "must be a non-empty list of strings (argv, no shell)"))
    elif kind is TargetKind.FILES:
        need_str("directory")
        post = config.get("post_command")
        if post is not None and (not isinstance(post, list) or not all(isinstance(a, str) and a for a in post)):
            out.append(("post_command", "must be a list of strings (argv, no shell)"))
    elif kind is TargetKind.AWS_ACM:
        arn = need_str("certificate_arn")
        if arn and not _ARN.match(arn):
            out.append(("certificate_arn", f"{arn!r} is not an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:...)"))
    elif kind is TargetKind.AWS_ELB:
        arn = need_str("listener_arn")
        if arn and not _ARN.match(arn):
            out.append(("listener_arn", f"{arn!r} is not a load balancer listener ARN"))
        if config.get("mode", "default") not in ("default", "sni"):
            out.append(("mode", "must be default or sni"))
    elif kind is TargetKind.ALIBABA_JOB:
        out.extend(_alibaba_job_problems(config))
    if "verify" in config and not isinstance(config["verify"], bool):
        out.append(("verify", "must be true or false"))
    trust = config.get("trust")
    if trust is not None and (not isinstance(trust, str) or not [p for p in trust.split(",") if p.strip()]):
        out.append(("trust", "must name `private-ca` and/or PEM files of CA certificates, joined by commas"))
    if host is not None and not HOST_NAME.match(host):
        out.append(("host", f"{host!r} is not a work queue name (lowercase letters, digits and dashes)"))
    for i, (h, port, _sni) in enumerate(endpoints):
        if not h:
            out.append((f"endpoints[{i}].host", "is required"))
        if not 0 < int(port) < 65536:
            out.append((f"endpoints[{i}].port", f"{port} is not a TCP port (1-65535)"))
    return out


def _alibaba_job_problems(config: dict[str, Any]) -> list[tuple[str, str]]:
    """The problems of an alibaba-deployment-job target's config (field, what is wrong)."""
    out: list[tuple[str, str]] = []
    ids = config.get("resource_ids")
    if "upload_only" in config and not isinstance(config["upload_only"], bool):
        out.append(("upload_only", "must be true or false"))
    if config.get("upload_only") is True and ids in (None, []):
        pass  # a certificate kept in CAS without resources: its successor is only uploaded back
    elif not isinstance(ids, list) or not ids:
        out.append(("resource_ids", "is required: at least one CAS cloud resource id (the Id that "
                                    "ListCloudResources or the CAS console's deployment page shows)"))
    else:
        for i, rid in enumerate(ids):
            if not _cloud_id(rid):
                out.append((f"resource_ids[{i}]", f"{rid!r} is not a CAS cloud resource id (a number)"))
        if len({str(r).strip() for r in ids}) != len(ids):
            out.append(("resource_ids", "names a resource twice"))
    if "cert_id" in config and config["cert_id"] is not None and not _cloud_id(config["cert_id"]):
        out.append(("cert_id", f"{config['cert_id']!r} is not a CAS certificate id (a number)"))
    connection = config.get("connection", "default")
    if not isinstance(connection, str) or not _BLOCK_NAME.match(connection):
        out.append(("connection", f"{connection!r} is not the name of an Alibaba Cloud connection block "
                                  "(lowercase letters, digits and dashes; `certpilot setup` makes \"default\")"))
    contacts = config.get("contact_ids")
    if contacts is not None and (not isinstance(contacts, list) or not contacts
                                 or not all(_cloud_id(c) for c in contacts)):
        out.append(("contact_ids", "must be a non-empty list of CAS contact ids (numbers)"))
    timeout = config.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                or not 0 < timeout <= 86_400):
        out.append(("timeout", f"{timeout!r} is not a number of seconds (more than 0, at most 86400)"))
    return out
