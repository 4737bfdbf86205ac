"""`certpilot discover` (find served certificates and add them, no key held) and `certpilot adopt`
(seal a discovered certificate's key). Registered by `certpilot.cli` (`register(module)`); like the
rest of the CLI these call `certpilot.operations` only.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Annotated

from cyclopts import Parameter

JsonFlag = Annotated[bool, Parameter(name="--json", negative="", help="Machine output (JSON).")]
_cli: ModuleType | None = None


def register(cli: ModuleType) -> None:
    """Add `discover` and `adopt` to `cli.app`."""
    global _cli
    _cli = cli
    cli.app.command(discover, name="discover")
    cli.app.command(adopt, name="adopt")


def discover(*endpoints: str,
             nginx_config: Annotated[Path | None, Parameter(help="An nginx configuration: probe its TLS server_names.")] = None,
             connect: Annotated[str, Parameter(help="Host nginx listens on when `listen` names only a port.")] = "127.0.0.1",
             concurrency: Annotated[int, Parameter(help="Connections in flight at most.")] = 50,
             as_json: JsonFlag = False) -> int:
    """Probe endpoints (`host`, `host:port`, `host:port/sni`) and/or an nginx configuration's TLS
    server names; add each certificate not in the inventory as a discovered certificate (no key
    held) to adopt with `certpilot adopt ID --key FILE`. Only reads: no served site changes."""
    from certpilot.operations.discovery import discover as run

    report = run(_cli._ctx.services(), endpoints=list(endpoints), nginx_config=str(nginx_config) if nginx_config else None,
                 connect=connect, concurrency=concurrency)
    data = {"added": report.added, "known": report.known, "failed": report.failed, "skipped": list(report.skipped),
            "items": [{"endpoint": i.endpoint, "certificate_id": i.certificate_id, "fingerprint": i.fingerprint,
                       "common_name": i.common_name, "not_after": i.not_after, "added": i.added, "known": i.known,
                       "error": i.error or None} for i in report.items]}

    def render(con) -> None:
        e = _cli._e
        for i in report.items:
            what = "[green]added[/]" if i.added else "known" if i.known else f"[red]{e(i.error)}[/]"
            con.print(f"{e(i.endpoint)}: {what} {e(i.certificate_id or '')} {e(i.common_name)} "
                      f"{e(i.not_after or '')}")
        con.print(f"{report.added} added (adopt with `certpilot adopt ID --key FILE`), {report.known} already "
                  f"known, {report.failed} failed" + (f"; skipped {e(', '.join(report.skipped))}" if report.skipped else ""))

    _cli._emit(data, render, as_json)
    return _cli.EXIT_OK


def adopt(certificate_id: str, /, *,
          key: Annotated[Path, Parameter(help="The certificate's private key (PEM).")],
          passphrase: Annotated[str | None, Parameter(help="The key's passphrase, when encrypted.")] = None,
          as_json: JsonFlag = False) -> int:
    """Adopt a discovered certificate: seal its private key in the vault (checked against the
    certificate first), so certpilot can deploy and renew it."""
    from certpilot.operations.discovery import adopt as run

    key_pem = _cli._read(key, "key")
    cid = run(_cli._ctx.services(keys=True), certificate_id, key_pem,
              passphrase=passphrase.encode() if passphrase else None)
    _cli._emit({"adopted": cid}, lambda con: con.print(f"adopted {cid}: its key is sealed in the vault"), as_json)
    return _cli.EXIT_OK
