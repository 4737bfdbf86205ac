"""Moving an existing fleet in on the command line: `certpilot import --dir DIR`,
`certpilot import --from acm [--region R]`, `certpilot import --from certbot [CONFIG_DIR]`.

`certpilot.cli`'s `import` command delegates here when it is given `--dir` or `--from`
(`register(module)` hands this module the CLI's helpers, error shape and exit codes). Every
path prints one report: what was imported, skipped (already in the inventory, same fingerprint)
and refused (UP-3's reason per file); the exit code is 0 when nothing was refused, 3 otherwise
(what was importable is imported either way). Like the rest of the CLI this module calls
`certpilot.operations` only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Any

_cli: ModuleType | None = None
"""`certpilot.cli` (or `__main__`), set by `register`: its helpers are read at call time."""


def register(cli: ModuleType) -> None:
    """Remember the CLI module whose helpers the import report uses."""
    global _cli
    _cli = cli


def report_dict(report) -> dict[str, Any]:
    """A `core.bulk.BulkReport` as machine output."""
    from certpilot.core.bulk import BulkOutcome

    def one(r) -> dict[str, Any]:
        return {"outcome": r.outcome.value, "files": list(r.files), "common_name": r.common_name,
                "fingerprint_sha256": r.fingerprint_sha256, "certificate_id": r.certificate_id,
                "reason": r.reason, "rule": r.rule, "message": r.message, "warnings": list(r.warnings),
                "source": r.source}

    return {"source": report.source, "counts": report.counts,
            **{o.value: [one(r) for r in report.of(o)] for o in BulkOutcome},
            "ignored": list(report.ignored)}


def _render(con, report, what: str) -> None:
    from rich.table import Table

    from certpilot.core.bulk import BulkOutcome

    e = _cli._e
    c = report.counts
    con.print(f"{e(what)}: [green]{c['imported']} imported[/], {c['skipped']} skipped (already in the inventory), "
              f"[{'red' if c['refused'] else 'dim'}]{c['refused']} refused[/]"
              + (f", {len(report.ignored)} file(s) without certificates ignored" if report.ignored else ""))
    imported = report.of(BulkOutcome.IMPORTED)
    if imported:
        t = Table(title="Imported")
        for col in ("id", "common name", "from"):
            t.add_column(col, overflow="fold")
        for r in imported[:50]:
            t.add_row(r.certificate_id or "-", e(r.common_name or "-"), e(r.source or ", ".join(r.files)))
        con.print(t)
        if len(imported) > 50:
            con.print(f"... and {len(imported) - 50} more: `certpilot list` shows them all")
    refused = report.of(BulkOutcome.REFUSED)
    if refused:
        t = Table(title="Refused (UP-3): nothing of these was stored")
        for col in ("files", "reason", "what failed, what to do"):
            t.add_column(col, overflow="fold")
        for r in refused:
            t.add_row(e(r.source or ", ".join(r.files)), r.reason or "-", e(r.message or ""))
        con.print(t)


def _finish(report, what: str, as_json: bool) -> int:
    from certpilot.core.bulk import BulkOutcome

    _cli._emit(report_dict(report), lambda con: _render(con, report, what), as_json)
    return _cli.EXIT_REFUSED if report.of(BulkOutcome.REFUSED) else _cli.EXIT_OK


def import_dir(directory: Path, *, origin: str, level: str, brand: str, owner: str | None,
               passphrase: str | None, as_json: bool) -> int:
    """`certpilot import --dir DIR`: every bundle of the folder, one transaction each."""
    from certpilot.operations.bulk_import import import_directory

    def progress(done: int, total: int) -> None:
        if not as_json and sys.stderr.isatty() and (done % 200 == 0 or done == total):
            sys.stderr.write(f"\r{done}/{total} bundles")
            sys.stderr.flush()

    report = import_directory(_cli._ctx.services(keys=True), directory, origin=origin, level=level, brand=brand,
                              owner=owner, passphrase=passphrase, actor="cli:import-dir", progress=progress)
    return _finish(report, f"import of {directory}", as_json)


def run(*, dir_: Path | None, from_: str | None, config_dir: Path | None, region: str | None, origin: str,
        level, brand: str, owner: str | None, as_json: bool, passphrase_env: str | None,
        nginx_dir: Path | None = None) -> int:
    """Dispatch `certpilot import --dir` / `--from` (the CLI checked that exactly one is given)."""
    import os

    passphrase = None
    if passphrase_env:
        if passphrase_env not in os.environ:
            raise _cli.UsageError(f"--key-passphrase-env names {passphrase_env}, which is not set")
        passphrase = os.environ[passphrase_env]
    if dir_ is not None:
        return import_dir(dir_, origin=origin, level=level, brand=brand, owner=owner, passphrase=passphrase,
                          as_json=as_json)
    if from_ == "acm":
        return import_acm(region=region, level=level, brand=brand, owner=owner, as_json=as_json)
    return import_certbot(config_dir or Path("/etc/letsencrypt"), nginx_dir=nginx_dir, level=level, owner=owner,
                          as_json=as_json)


def import_acm(*, region: str | None, level, brand: str, owner: str | None, as_json: bool) -> int:
    """`certpilot import --from acm [--region R]`: every ACM certificate, key not held."""
    from certpilot import runtime
    from certpilot.operations.fleet_sources import import_acm as run_acm

    svc = _cli._ctx.services()
    report = run_acm(svc, runtime.acm_fleet(svc, region=region), level=level, brand=brand, owner=owner)
    return _finish(report, f"import from ACM ({report.source})", as_json)


def import_certbot(config_dir: Path, *, nginx_dir: Path | None, level, owner: str | None, as_json: bool) -> int:
    """`certpilot import --from certbot [CONFIG_DIR]`: every certbot lineage, keys into the vault;
    its brand is its ACME server's name (the issuer), not `--brand`."""
    from certpilot.operations.fleet_sources import import_certbot as run_certbot

    report = run_certbot(_cli._ctx.services(keys=True), config_dir, nginx_dir=nginx_dir or Path("/etc/nginx"),
                         level=level, owner=owner)
    return _finish(report, f"import of certbot's {config_dir}", as_json)
