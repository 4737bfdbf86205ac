"""Deployment targets as first-class objects: add (validated), list, show, remove, test; the
deployment tasks of a certificate (DEP-2); the export of a certificate for a manual install (DEP-4).

What `certpilot target ...`, `certpilot deployments ID`, `certpilot export ID` and the UI's
`target-*` flows call. A definition is checked before anything is stored: its shape (core
`config_problems`), its endpoints' hosts resolve, and — for a target on this host — the
adapter's own `check()` (files exist and are readable, directories writable, `nginx -t`
passes, the ARN is readable with these credentials). A target on another host (`host`) is
checked there: `target test` runs on that host's worker from the UI (the `target-test` flow).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select, update

from certpilot.core.deployment import (
    DeploymentState,
    TargetKind,
    TargetRecord,
    config_problems,
    default_endpoints,
)
from certpilot.core.errors import BadInputError, Reason, Refusal, RefusedError
from certpilot.core.verification import Endpoint
from certpilot.operations import deployments
from certpilot.operations.deployments import TaskRecord
from certpilot.store.repository import Repository
from certpilot.store.tables_deploy import DeploymentTargetRow, DeploymentTaskRow

if TYPE_CHECKING:
    from certpilot.runtime import Services

EndpointSpec = tuple[str, int, str | None]


@dataclass(frozen=True)
class TargetView:
    """A target with what an operator needs beside it.

    Attributes:
        record: the target (kind, name, config without secrets, endpoints, host).
        common_name: its certificate's common name.
        probed_at: where VER-1 probes it: its endpoints, else `https://<name>:443` (empty:
            not verifiable).
        tasks: its deployment tasks, newest first (on `show`; empty on `list`).
    """

    record: TargetRecord
    common_name: str
    probed_at: tuple[Endpoint, ...]
    tasks: tuple[TaskRecord, ...] = ()

    @property
    def verifiable(self) -> bool:
        """False when marked not verifiable, or when there is nothing to probe."""
        return self.record.verifiable and bool(self.probed_at)


@dataclass(frozen=True)
class TargetTest:
    """What `target test` found, changing nothing.

    Attributes:
        target: the target tested.
        problems: (field, sentence) pairs that stop a deployment (empty: it would run).
        probes: per endpoint probed: (endpoint, serves the target's certificate?, what it said).
    """

    target: TargetView
    problems: tuple[tuple[str, str], ...]
    probes: tuple[tuple[str, bool, str], ...]

    @property
    def ok(self) -> bool:
        """True when nothing stops a deployment and every endpoint serves the certificate."""
        return not self.problems and all(ok for _e, ok, _m in self.probes)


@dataclass(frozen=True)
class DeploymentLine:
    """A deployment task of a certificate with its target (DEP-2)."""

    task: TaskRecord
    target_name: str
    target_kind: TargetKind
    host: str | None


@dataclass(frozen=True)
class Exported:
    """What `export` wrote: the files (0600), and whether the key is among them."""

    paths: tuple[Path, ...]
    with_key: bool
    fingerprint: str


def endpoint_of(spec: str) -> EndpointSpec:
    """`HOST:PORT[/SNI]` (or `HOST` for port 443) as (host, port, sni).

    Raises:
        BadInputError: the port is not a number (the field named).
    """
    where, _, sni = spec.partition("/")
    host, _, port = where.rpartition(":") if ":" in where else (where, "", "443")
    try:
        return host, int(port), sni or None
    except ValueError:
        raise _refuse([("endpoints", f"{spec!r}: the port is not a number (HOST:PORT[/SNI])")]) from None


def _pair(spec: str) -> dict[str, str]:
    cert, sep, key = spec.partition(":")
    if not sep or not cert or not key:
        raise _refuse([("files", f"{spec!r}: give CERT_PATH:KEY_PATH (the files the server reads)")])
    return {"cert": cert, "key": key}


def config_of(kind: str, *, files: list[str] = (), check_cmd: str | None = None, reload_cmd: str | None = None,
              directory: str | None = None, post_cmd: str | None = None, arn: str | None = None,
              mode: str | None = None, old_arn: str | None = None, endpoint_url: str | None = None,
              region: str | None = None, not_verifiable: bool = False, trust: str | None = None,
              resource_ids: Sequence[str | int] = (), connection: str | None = None,
              cert_id: str | int | None = None) -> dict[str, Any]:
    """A target's stored configuration from an operator's options (the CLI's flags, the UI's
    form): only those of its kind; commands split like a shell would (run without one). Paths
    are kept as given: a relative one is relative to the deploying host's CERTPILOT_HOME.

    Args:
        kind: nginx, files, aws-acm, aws-elb or alibaba-deployment-job.
        files: nginx: `CERT_PATH:KEY_PATH` per vhost.
        check_cmd, reload_cmd: nginx: the configuration test and the reload.
        directory, post_cmd: files: the bundle's directory, a command run after each deployment.
        arn: aws-acm: the certificate ARN; aws-elb: the listener ARN.
        mode, old_arn: aws-elb: default|sni, the SNI certificate removed once verified.
        endpoint_url, region: aws: the API endpoint (an emulator) and the region.
        resource_ids, connection, cert_id: alibaba-deployment-job: the CAS cloud resource ids
            (kept as numbers when they are digits, as given otherwise: the check names them), the
            Alibaba Cloud connection block (default "default"), the CAS CertId they use now.
        not_verifiable: no endpoint serves it (VER-1: never shown verified).
        trust: what its endpoints' chains must reach besides the probe's bundle (VER-1 strict):
            `private-ca` (certpilot's private CA) and/or PEM files of CA certificates, comma-separated.
    """
    cfg: dict[str, Any] = {}
    if kind == "nginx":
        cfg["files"] = [_pair(f) for f in files]
        if check_cmd:
            cfg["check_argv"] = shlex.split(check_cmd)
        if reload_cmd:
            cfg["reload_argv"] = shlex.split(reload_cmd)
    elif kind == "files":
        if directory:
            cfg["directory"] = directory
        if post_cmd:
            cfg["post_command"] = shlex.split(post_cmd)
    elif kind == "aws-acm":
        if arn:
            cfg["certificate_arn"] = arn
    elif kind == "aws-elb":
        if arn:
            cfg["listener_arn"] = arn
        cfg["mode"] = mode or "default"
        if old_arn:
            cfg["old_certificate_arn"] = old_arn
    elif kind == "alibaba-deployment-job":
        cfg["resource_ids"] = [_number(r) for r in resource_ids]
        if connection:
            cfg["connection"] = connection
        if cert_id is not None and str(cert_id).strip():
            cfg["cert_id"] = _number(cert_id)
    if kind.startswith("aws-"):
        cfg.update({k: v for k, v in (("endpoint_url", endpoint_url), ("region", region)) if v})
    if not_verifiable:
        cfg["verify"] = False
    if trust:
        cfg["trust"] = trust
    return cfg


def _number(value: str | int) -> str | int:
    """A CAS id as an int when it is digits (as given otherwise, for the check to name)."""
    text = str(value).strip()
    return int(text) if text.isdigit() else value


def _refuse(problems: list[tuple[str, str]]) -> BadInputError:
    lines = "; ".join(f"{field}: {why}" for field, why in problems)
    return BadInputError(f"the target definition is refused, nothing was stored — {lines}")


def check_definition(svc: Services, record: TargetRecord, *, local: bool = True) -> list[tuple[str, str]]:
    """Every problem of a definition: its shape, then (on this host) the world as the adapter sees it.

    Args:
        svc: the services (their target factory builds the adapter; nothing is deployed).
        record: the definition (stored or not).
        local: run the adapter's checks here (False for a target on another host).
    Returns:
        (field, sentence) pairs; empty when a deployment would run.
    """
    from certpilot.adapters.deploy.checks import endpoint_problems

    eps = [(e.host, e.port, e.sni) for e in record.endpoints]
    problems = config_problems(record.kind, record.config, host=record.host, endpoints=eps)
    if problems:
        return problems
    problems = endpoint_problems(eps)
    if local and record.config.get("trust"):
        from certpilot.adapters.probe.verifier import trust_setting_problems

        problems += [("trust", p) for p in trust_setting_problems(record.config["trust"])]
    if local:
        try:
            adapter = svc.target_factory(record, lambda _cid: b"")
        except (KeyError, TypeError, ValueError) as exc:
            return [*problems, ("config", f"the adapter cannot be built: {exc}")]
        problems += list(adapter.check()) if hasattr(adapter, "check") else []
        close = getattr(adapter, "close", None)
        if close is not None:
            close()
    return problems


def add(svc: Services, certificate_id: str, kind: TargetKind | str, *, config: dict[str, Any],
        endpoints: list[EndpointSpec] | tuple[EndpointSpec, ...] = (), name: str = "", host: str | None = None,
        check: bool = True, known_hosts: Callable[[], Iterable[str]] | None = None) -> TargetView:
    """Record a deployment target of a certificate, validated first (nothing stored when refused).

    Args:
        svc: the services.
        certificate_id: the certificate the target serves now (the next renewal deploys there, DEP-1).
        kind: nginx, files, aws-acm, aws-elb or alibaba-deployment-job.
        config: the adapter's settings (see `core.deployment.config_problems`); no secrets.
        endpoints: (host, port, sni) probed after each deployment (default `https://<name>:443`).
        name: what operators call it.
        host: the work queue whose worker deploys it (None: any worker, i.e. this host's files).
        check: run the adapter's checks (on this host only; a target with `host` is checked there).
        known_hosts: gives the work queues of the certpilot pool (the caller asks Prefect; called
            only once the definition is well formed); a `host` not among them is an unknown
            host. None: not checked.
    Returns:
        The stored target.
    Raises:
        NotFoundError: no such certificate. BadInputError: a problem, naming its field.
    """
    try:
        kind = TargetKind(kind)
    except ValueError:
        raise _refuse([("kind", f"unknown target kind {kind!r}; use one of "
                                f"{', '.join(k.value for k in TargetKind)}")]) from None
    draft = TargetRecord(id="draft", certificate_id=certificate_id, kind=kind, name=name, config=dict(config),
                         endpoints=tuple(Endpoint(h, int(p), s) for h, p, s in endpoints), host=host)
    with svc.session(readonly=True) as s:
        Repository(s).certificate_model(certificate_id)  # NotFoundError first: the id is the first thing to fix
    problems = check_definition(svc, draft, local=check and host is None)
    if host is not None and known_hosts is not None and not problems:
        known = sorted(set(known_hosts()))
        if host not in known:
            problems.append(("host", f"unknown host {host!r}: the certpilot pool has no such work queue (it has "
                                     f"{', '.join(known) or 'none'}); start that host's worker with `prefect worker "
                                     f"start --pool certpilot --work-queue {host}`, then add the target"))
    if problems:
        raise _refuse(problems)
    with svc.session() as s:
        record = deployments.add_target(s, certificate_id, kind, config=dict(config), endpoints=endpoints,
                                        name=name, host=host, now=svc.now())
    return show(svc, record.id)


def list_targets(svc: Services, certificate_id: str | None = None) -> list[TargetView]:
    """Every target (or a certificate's), oldest first; removed ones are not listed."""
    with svc.session(readonly=True) as s:
        stmt = select(DeploymentTargetRow.id).where(DeploymentTargetRow.removed_at.is_(None))
        if certificate_id is not None:
            Repository(s).certificate_model(certificate_id)
            stmt = stmt.where(DeploymentTargetRow.certificate_id == certificate_id)
        ids = list(s.scalars(stmt.order_by(DeploymentTargetRow.created_at, DeploymentTargetRow.id)))
        return [_view(s, deployments.get_target(s, i)) for i in ids]


def show(svc: Services, target_id: str) -> TargetView:
    """One target with its deployment tasks, newest first. Raises `NotFoundError`."""
    with svc.session(readonly=True) as s:
        record = deployments.get_target(s, target_id)
        rows = s.scalars(select(DeploymentTaskRow).where(DeploymentTaskRow.target_id == target_id)
                         .order_by(DeploymentTaskRow.created_at.desc(), DeploymentTaskRow.id))
        return _view(s, record, tasks=tuple(deployments.get_task(s, r.id) for r in rows))


def _view(session, record: TargetRecord, tasks: tuple[TaskRecord, ...] = ()) -> TargetView:
    cert = Repository(session).certificate_model(record.certificate_id)
    probed = record.endpoints or default_endpoints(cert.names)
    return TargetView(record=record, common_name=cert.common_name, probed_at=probed if record.verifiable else (),
                      tasks=tasks)


def remove(svc: Services, target_id: str) -> TargetView:
    """Stop deploying to a target: it is kept with its tasks' history, no longer listed or planned;
    its pending tasks end FAILED saying so.

    Raises:
        NotFoundError: no such target. RefusedError(DEPLOYMENT_IN_PROGRESS): a run is deploying to it now.
    """
    now = svc.now()
    with svc.session() as s:
        view = _view(s, deployments.get_target(s, target_id))
        running = s.scalars(select(DeploymentTaskRow.id).where(DeploymentTaskRow.target_id == target_id,
                                                              DeploymentTaskRow.state == "running")).first()
        if running is not None:
            raise RefusedError(Refusal(
                Reason.DEPLOYMENT_IN_PROGRESS,
                f"deployment task {running} is deploying to target {target_id} now; remove the target once it "
                f"ends (`certpilot target show {target_id}` shows it).", rule="DEP-2"))
        s.execute(update(DeploymentTaskRow)
                  .where(DeploymentTaskRow.target_id == target_id, DeploymentTaskRow.state == "pending")
                  .values(state=DeploymentState.FAILED.value, finished_at=now, updated_at=now,
                          details=f"{now:%Y-%m-%dT%H:%M:%S}Z the target was removed; nothing was deployed")
                  .execution_options(synchronize_session=False))
        row = s.get(DeploymentTargetRow, target_id)
        row.removed_at = now
        row.updated_at = now
    return view


def test(svc: Services, target_id: str) -> TargetTest:
    """Check a target without changing anything: the adapter's checks (files, permissions,
    `nginx -t`, the ARN readable) and a TLS probe of each endpoint for its certificate.

    Raises:
        NotFoundError: no such target.
    """
    from certpilot.adapters.probe.scale import verify_served

    view = show(svc, target_id)
    problems = check_definition(svc, view.record, local=True)
    probes: list[tuple[str, bool, str]] = []
    if view.probed_at:
        with svc.session(readonly=True) as s:
            cert = Repository(s).certificate_model(view.record.certificate_id)
        report = verify_served(list(view.probed_at), cert.fingerprint_sha256, cert.not_after, deadline=3.0,
                               trust=getattr(svc.verifier, "trust", None))
        for x in report.endpoints:
            probes.append((str(x.result.endpoint), x.served,
                           "serves it" if x.served else f"{x.result.outcome.value}, serving "
                                                          f"{(x.result.fingerprint or 'nothing')[:16]}"))
    return TargetTest(target=view, problems=tuple(problems), probes=tuple(probes))


def deployments_of(svc: Services, certificate_id: str) -> list[DeploymentLine]:
    """DEP-2: the managed deployment tasks of a certificate, with state, progress, details and target.

    Raises:
        NotFoundError: no such certificate.
    """
    with svc.session(readonly=True) as s:
        Repository(s).certificate_model(certificate_id)
        out = []
        for task in deployments.list_tasks(s, certificate_id):
            row = s.get(DeploymentTargetRow, task.target_id)
            out.append(DeploymentLine(task=task, target_name=row.name or row.id, target_kind=TargetKind(row.kind),
                                      host=row.host))
        return out


def export(svc: Services, certificate_id: str, out: Path, *, fmt: Literal["pem", "pfx"] = "pem",
           with_key: bool = False, password: bytes | None = None) -> Exported:
    """DEP-4: write a certificate for a manual install; the key only when asked (`with_key`).

    PEM: `out` is a file holding the full chain (leaf + intermediates), then the key when asked.
    PFX (PKCS#12): leaf, intermediates and (when asked) the key, encrypted with `password` when
    one is given. Written 0600 from creation, never over an existing file; nothing is printed.

    Raises:
        NotFoundError: no such certificate. BadInputError: `out` exists or its directory does not.
        RefusedError(KEY_NOT_HELD): the key was asked for and certpilot does not hold it (CSR-2).
    """
    from certpilot.crypto.pem import export_pfx

    out = Path(out)
    if out.exists():
        raise BadInputError(f"{out} exists; give a new file name (an export never overwrites)")
    if not out.parent.is_dir():
        raise BadInputError(f"directory {out.parent} does not exist")
    with svc.session(readonly=True) as s:
        material = deployments.material_for(s, certificate_id, svc.key_opener() if with_key else None)
    if with_key and not material.has_key:
        with svc.session(readonly=True) as s:
            from certpilot.core.deployment import key_refusal

            raise RefusedError(key_refusal(Repository(s).certificate_model(certificate_id)))
    key = material.open_key() if with_key else None
    if fmt == "pem":
        data = material.fullchain_pem + (key or b"")
    else:
        data = export_pfx(material.leaf_pem, material.chain_pems, key, name=material.common_name, password=password)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
        del key, data
    return Exported(paths=(out,), with_key=with_key, fingerprint=material.fingerprint)
