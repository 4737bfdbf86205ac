"""Deployment targets on the command line: `certpilot target add|list|show|remove|test`,
`certpilot deployments ID` (DEP-2) and `certpilot export ID` (DEP-4).

Registered by `certpilot.cli` (`register(module)`), whose output helpers, error shape and exit
codes these commands share. Like the rest of the CLI this module calls `certpilot.operations` only.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Literal

from cyclopts import App, Parameter

JsonFlag = Annotated[bool, Parameter(name="--json", negative="", help="Machine output (JSON).")]
Kind = Literal["nginx", "files", "aws-acm", "aws-elb", "alibaba-deployment-job"]
CLOUD_KINDS = ("aws-acm", "aws-elb", "alibaba-deployment-job")
"""Kinds whose adapter needs the cloud connection blocks (the services built from Prefect's blocks)."""

_cli: ModuleType | None = None
"""`certpilot.cli` (or `__main__`), set by `register`: its helpers are read at call time."""


def register(cli: ModuleType) -> None:
    """Add the `target` sub-commands, `deployments` and `export` to `cli.app`."""
    global _cli
    _cli = cli
    target_app = App(name="target", help="Where certificates are deployed: add, list, show, remove, test.")
    target_app.command(target_add, name="add")
    target_app.command(target_list, name="list")
    target_app.command(target_show, name="show")
    target_app.command(target_remove, name="remove")
    target_app.command(target_test, name="test")
    cli.app.command(target_app)
    cli.app.command(deployments_, name="deployments")
    cli.app.command(export, name="export")


def _work_queues() -> list[str]:
    """The work queues of the certpilot pool on the configured Prefect API (a target's `--host`
    must be one: its worker deploys it).

    Raises:
        ServerUnreachable: no Prefect API is configured or it does not answer (exit 5).
    """
    url = _cli._prefect_api()
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            return [q.name for q in client.read_work_queues(work_pool_name="certpilot")]
    except Exception as exc:  # noqa: BLE001 - no server, or no certpilot pool yet
        raise _cli.ServerUnreachable(f"--host needs the certpilot work pool of a Prefect API with that host's "
                                     f"worker; {url} did not list it ({type(exc).__name__}: {exc}) — run "
                                     "`certpilot setup`, then `prefect worker start --pool certpilot "
                                     "--work-queue HOST` on that host") from exc


def target_dict(v) -> dict[str, Any]:
    """A `TargetView` as JSON."""
    r = v.record
    return {"id": r.id, "certificate_id": r.certificate_id, "common_name": v.common_name, "kind": r.kind.value,
            "name": r.name, "host": r.host, "config": r.config,
            "endpoints": [{"host": e.host, "port": e.port, "sni": e.sni} for e in r.endpoints],
            "probed_at": [f"{e.host}:{e.port}" + (f"/{e.sni}" if e.sni else "") for e in v.probed_at],
            "verifiable": v.verifiable, "tasks": [task_dict(t) for t in v.tasks]}


def task_dict(t) -> dict[str, Any]:
    """A deployment task as JSON (its progress lines included; they never hold key material)."""
    from certpilot.operations.common import iso

    return {"id": t.id, "certificate_id": t.certificate_id, "target_id": t.target_id, "state": t.state.value,
            "progress": t.progress, "attempts": t.attempts, "started_at": iso(t.started_at),
            "finished_at": iso(t.finished_at), "details": t.details}


def _render_target(con, v) -> None:
    e, r = _cli._e, v.record
    con.print(f"target [bold]{r.id}[/]: {r.kind.value} {e(r.name)!s} for {e(v.common_name)} ({r.certificate_id})")
    con.print(f"  host: {r.host or 'any worker'}")
    for k, val in r.config.items():
        con.print(f"  {k}: {e(str(val))}")
    if v.verifiable:
        con.print("  verified at: " + ", ".join(f"{x.host}:{x.port}" + (f" (SNI {x.sni})" if x.sni else "")
                                               for x in v.probed_at)
                  + ("" if r.endpoints else " (the default: its name on 443)"))
    else:
        con.print("  [yellow]not verifiable[/]: its deployments are never shown as verified (VER-1)")
    for t in v.tasks:
        con.print(f"  task {t.id}: {t.state.value} {t.progress}% (certificate {t.certificate_id})")


def target_add(certificate_id: str, /, *, kind: Kind, name: str = "",
               host: Annotated[str | None, Parameter(help="The host (Prefect work queue) whose worker deploys "
                                                          "it, e.g. web-3; default: any worker.")] = None,
               endpoint: Annotated[list[str] | None, Parameter(help="HOST:PORT[/SNI] probed after each deployment "
                                                                    "(repeatable; default its name on 443).")] = None,
               file: Annotated[list[str] | None, Parameter(help="nginx: CERT_PATH:KEY_PATH of a vhost "
                                                                "(repeatable).")] = None,
               check_cmd: Annotated[str | None, Parameter(help="nginx: the configuration test "
                                                               "(default `nginx -t -q`).")] = None,
               reload_cmd: Annotated[str | None, Parameter(help="nginx: the reload "
                                                                "(default `nginx -s reload`).")] = None,
               directory: Annotated[str | None, Parameter(help="files: the bundle's directory.")] = None,
               post_cmd: Annotated[str | None, Parameter(help="files: a command run after each deployment.")] = None,
               arn: Annotated[str | None, Parameter(help="aws-acm: the certificate ARN; aws-elb: the listener "
                                                         "ARN.")] = None,
               mode: Annotated[Literal["default", "sni"] | None, Parameter(help="aws-elb: replace the default "
                                                                                "certificate or add an SNI one.")] = None,
               old_arn: Annotated[str | None, Parameter(help="aws-elb sni: the certificate to remove once "
                                                             "verified.")] = None,
               endpoint_url: str | None = None, region: str | None = None,
               resource_id: Annotated[list[str] | None, Parameter(help="alibaba-deployment-job: a CAS cloud "
                                                                       "resource id (ListCloudResources Id) the "
                                                                       "job deploys to (repeatable).")] = None,
               connection: Annotated[str | None, Parameter(help="alibaba-deployment-job: the Alibaba Cloud "
                                                                "connection block (default `default`).")] = None,
               cas_cert_id: Annotated[str | None, Parameter(help="alibaba-deployment-job: the CAS CertId the "
                                                                 "resources use now (informational).")] = None,
               not_verifiable: Annotated[bool, Parameter(negative="", help="No endpoint serves it (a bundle "
                                                                           "for a manual install): its "
                                                                           "deployments are never shown "
                                                                           "verified.")] = False,
               trust: Annotated[str | None, Parameter(help="What its endpoints' chains must reach besides the "
                                                           "system's CAs (VER-1 strict): `private-ca` and/or a "
                                                           "PEM file of CA certificates, comma-separated.")] = None,
               no_check: Annotated[bool, Parameter(negative="", help="Skip the checks on this host (the "
                                                                     "definition's shape is still checked).")] = False,
               as_json: JsonFlag = False) -> int:
    """Add a deployment target to a certificate; the next renewal deploys there (DEP-1).

    Checked before it is stored (nothing is stored when refused, the field is named): the
    definition's shape, the endpoints' hosts resolve, and on this host the files exist and are
    readable, their directories writable, the check command (`nginx -t`) passes, the ARN is
    readable, the CAS cloud resources exist. A target with `--host` is checked on that host by
    `target test` from the UI.
    """
    from certpilot.operations import targets as ops

    cfg = ops.config_of(kind, files=file or [], check_cmd=check_cmd, reload_cmd=reload_cmd, directory=directory,
                        post_cmd=post_cmd, arn=arn, mode=mode, old_arn=old_arn, endpoint_url=endpoint_url,
                        region=region, not_verifiable=not_verifiable, trust=trust, resource_ids=resource_id or [],
                        connection=connection, cert_id=cas_cert_id)
    v = ops.add(_cli._ctx.services(keys=kind in CLOUD_KINDS), certificate_id, kind, config=cfg,
                endpoints=[ops.endpoint_of(x) for x in endpoint or []], name=name, host=host, check=not no_check,
                known_hosts=_work_queues if host else None)

    def render(con):
        con.print(f"added target [bold]{v.record.id}[/] ({kind}) to {_cli._e(v.common_name)}; "
                  f"`certpilot target test {v.record.id}` checks it again, the next renewal deploys there")

    _cli._emit(target_dict(v), render, as_json)
    return _cli.EXIT_OK


def target_list(*, certificate: Annotated[str | None, Parameter(help="Only this certificate's.")] = None,
                as_json: JsonFlag = False) -> int:
    """List deployment targets (removed ones are not shown)."""
    from certpilot.operations import targets as ops

    views = ops.list_targets(_cli._ctx.services(), certificate)

    def render(con):
        from rich.table import Table

        if not views:
            con.print("no deployment targets; `certpilot target add CERT_ID --kind nginx --file CERT:KEY` adds one")
            return
        t = Table(title="Deployment targets")
        for col in ("id", "kind", "name", "certificate", "host", "verified at"):
            t.add_column(col, no_wrap=col == "id")
        for v in views:
            at = ", ".join(f"{e.host}:{e.port}" for e in v.probed_at) if v.verifiable else "not verifiable"
            t.add_row(v.record.id, v.record.kind.value, _cli._e(v.record.name), _cli._e(v.common_name),
                      v.record.host or "-", at)
        con.print(t)

    _cli._emit({"targets": [target_dict(v) for v in views]}, render, as_json)
    return _cli.EXIT_OK


def target_show(target_id: str, /, *, as_json: JsonFlag = False) -> int:
    """Show one target: its configuration, where it is verified, its deployment tasks."""
    from certpilot.operations import targets as ops

    v = ops.show(_cli._ctx.services(), target_id)
    _cli._emit(target_dict(v), lambda con: _render_target(con, v), as_json)
    return _cli.EXIT_OK


def target_remove(target_id: str, /, *, as_json: JsonFlag = False) -> int:
    """Stop deploying to a target (kept with its history; its pending tasks end failed)."""
    from certpilot.operations import targets as ops

    v = ops.remove(_cli._ctx.services(), target_id)
    _cli._emit({**target_dict(v), "removed": True},
               lambda con: con.print(f"removed target {target_id}; nothing is deployed there any more"), as_json)
    return _cli.EXIT_OK


def target_test(target_id: str, /, *, as_json: JsonFlag = False) -> int:
    """Check a target without changing anything: files and permissions, the check command, the
    ARN, and a TLS probe of each endpoint for its certificate. Exit 1 when something is wrong."""
    from certpilot.operations import targets as ops

    r = ops.test(_cli._ctx.services(keys=True), target_id)
    data = {"target": target_dict(r.target), "ok": r.ok,
            "problems": [{"field": f, "problem": p} for f, p in r.problems],
            "probes": [{"endpoint": e, "serves": ok, "detail": d} for e, ok, d in r.probes]}

    def render(con):
        e = _cli._e
        for field, problem in r.problems:
            con.print(f"[red]✗[/] {field}: {e(problem)}")
        for ep, ok, detail in r.probes:
            con.print(("[green]✓[/] " if ok else "[red]✗[/] ") + f"{ep}: {e(detail)}")
        if not r.target.verifiable:
            con.print("[yellow]not verifiable[/]: no endpoint is probed")
        con.print("ok: a deployment would run" if r.ok else "not ok: fix the fields above")

    _cli._emit(data, render, as_json)
    return _cli.EXIT_OK if r.ok else _cli.EXIT_ERROR


def deployments_(certificate_id: str, /, *, as_json: JsonFlag = False) -> int:
    """List the managed deployment tasks of a certificate with state, progress and details (DEP-2)."""
    from certpilot.operations import targets as ops

    lines = ops.deployments_of(_cli._ctx.services(), certificate_id)

    def render(con):
        if not lines:
            con.print(f"no deployment tasks for {certificate_id}: a renewal plans one per target of the "
                      "certificate it replaces (`certpilot target list`)")
        for x in lines:
            t = x.task
            con.print(f"[bold]{t.id}[/] → {x.target_kind.value} {_cli._e(x.target_name)}"
                      + (f" on {x.host}" if x.host else "") + f": [bold]{t.state.value}[/] {t.progress}%, "
                      f"attempt {t.attempts}")
            for line in t.details.splitlines():
                con.print(f"    {_cli._e(line)}")

    _cli._emit({"certificate_id": certificate_id,
                "deployments": [{**task_dict(x.task), "target_name": x.target_name, "target_kind": x.target_kind.value,
                                 "host": x.host} for x in lines]}, render, as_json)
    return _cli.EXIT_OK


def export(certificate_id: str, /, *, out: Annotated[Path, Parameter(help="The file to write (new; 0600).")],
           format_: Annotated[Literal["pem", "pfx"], Parameter(name="--format")] = "pem",
           include_key: Annotated[bool, Parameter(negative="", help="Put the private key in the file too.")] = False,
           password_env: Annotated[str | None, Parameter(help="pfx: encrypt with the password in this "
                                                              "environment variable.")] = None,
           as_json: JsonFlag = False) -> int:
    """Export a certificate for a manual install (DEP-4): PEM (full chain) or PFX (PKCS#12).

    The key is written only with `--include-key`, into the file (0600, never overwriting);
    nothing secret is printed.
    """
    from certpilot.operations import targets as ops

    password = None
    if password_env:
        if password_env not in os.environ:
            raise _cli.UsageError(f"--password-env {password_env}: that environment variable is not set")
        password = os.environ[password_env].encode()
    r = ops.export(_cli._ctx.services(keys=include_key), certificate_id, out, fmt=format_, with_key=include_key,
                   password=password)
    _cli._emit({"certificate_id": certificate_id, "paths": [str(p) for p in r.paths], "format": format_,
                "with_key": r.with_key, "fingerprint": r.fingerprint},
               lambda con: con.print(f"wrote {', '.join(map(str, r.paths))} ({format_}, "
                                     f"{'with' if r.with_key else 'without'} the private key, mode 0600)"), as_json)
    return _cli.EXIT_OK
