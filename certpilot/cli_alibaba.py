"""`certpilot sync alibaba`: the certificates of an Alibaba Cloud account into the inventory (issue 14).

Registered by `certpilot.cli` (`register(module)`), whose output helpers, error shape and exit
codes it shares. It calls `certpilot.operations.alibaba_sync` only; the account is the
`certpilot-alibaba-cloud/NAME` block (AccessKey, region, endpoint), read through the runtime.
"""

from __future__ import annotations

from types import ModuleType
from typing import Annotated, Any

from cyclopts import App, Parameter

JsonFlag = Annotated[bool, Parameter(name="--json", negative="", help="Machine output (JSON).")]

_cli: ModuleType | None = None
"""`certpilot.cli` (or `__main__`), set by `register`: its helpers are read at call time."""


def register(cli: ModuleType) -> None:
    """Add `sync alibaba` to `cli.app`."""
    global _cli
    _cli = cli
    sync_app = App(name="sync", help="Bring a cloud account's certificates into the inventory, again and again.")
    sync_app.command(sync_alibaba, name="alibaba")
    cli.app.command(sync_app)


def sync_dict(report) -> dict[str, Any]:
    """A `SyncReport` as machine output (no key material: ids, names, outcomes, counts)."""
    from certpilot.cli_import import report_dict

    return {**report_dict(report.bulk), "quota": dict(report.quota), "issuer": report.issuer}


def sync_alibaba(*, connection: Annotated[str, Parameter(help="The certpilot-alibaba-cloud block to use.")] = "default",
                 owner: Annotated[str | None, Parameter(help="Who hears of expiry (NT-1).")] = None,
                 connect_to: Annotated[str | None, Parameter(
                     help="host:port to probe every resource's domain at (SNI = the domain) instead of "
                          "domain:443.")] = None,
                 as_json: JsonFlag = False) -> int:
    """Inventory every certificate of the Alibaba Cloud account (CAS): origin, brand, level, names,
    dates, the cloud resources serving it (a deployment-job target), and the package quota.
    Idempotent: run it again (or let the `sync-alibaba` deployment do it on its schedule)."""
    from certpilot import runtime
    from certpilot.cli_import import _render
    from certpilot.operations.alibaba_sync import sync

    svc = _cli._ctx.services(keys=True)
    report = sync(svc, runtime.alibaba_inventory(svc, connection), connection=connection, owner=owner,
                  connect_to=connect_to, actor="cli:sync-alibaba")

    def render(con) -> None:
        _render(con, report.bulk, f"sync of Alibaba Cloud account {connection}")
        for spec, left in sorted(report.quota.items()):
            con.print(f"CAS package quota: {left} {spec} remaining (PAY-3)")
        if report.issuer:
            con.print(f"official certificates renew through {report.issuer}")

    _cli._emit(sync_dict(report), render, as_json)
    from certpilot.core.bulk import BulkOutcome

    return _cli.EXIT_REFUSED if report.bulk.of(BulkOutcome.REFUSED) else _cli.EXIT_OK
