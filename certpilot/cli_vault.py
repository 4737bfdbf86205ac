"""Key custody on the command line (issue 15): `certpilot vault check|rewrap|rotate|retire`,
`certpilot backup DIR`, `certpilot restore DIR`.

Registered by `certpilot.cli` (`register(module)`), whose output helpers, error shape and exit
codes these commands share. Every command calls `certpilot.operations.custody` only; the vault
is the one the workers use (`cli._ctx.services(keys=True)`).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

from cyclopts import App, Parameter

JsonFlag = Annotated[bool, Parameter(name="--json", negative="", help="Machine output (JSON).")]

_cli: ModuleType | None = None
"""`certpilot.cli` (or `__main__`), set by `register`: its helpers are read at call time."""


def register(cli: ModuleType) -> None:
    """Add `vault check|rewrap|rotate|retire`, `backup` and `restore` to `cli.app`."""
    global _cli
    _cli = cli
    vault_app = App(name="vault", help="The key vault: check every key opens, rewrap, rotate the master key.")
    vault_app.command(vault_check, name="check")
    vault_app.command(vault_rewrap, name="rewrap")
    vault_app.command(vault_rotate, name="rotate")
    vault_app.command(vault_retire, name="retire")
    cli.app.command(vault_app)
    cli.app.command(backup, name="backup")
    cli.app.command(restore, name="restore")


def _check_dict(c) -> dict[str, Any]:
    return {"keys": c.total, "ok": c.ok, "providers": c.providers,
            "failed": [{"key_id": k, "why": why} for k, why in c.failed]}


def _custody():
    from certpilot.operations import custody

    return custody


def _result(check, data: dict, as_json: bool, said: str) -> int:
    def render(con):
        con.print(said)
        for key_id, why in check.failed[:20]:
            con.print(f"  key {key_id}: {_cli._e(why)}")

    _cli._emit(data, render, as_json)
    return _cli.EXIT_OK if check.ok else _cli.EXIT_REFUSED


def vault_check(*, as_json: JsonFlag = False) -> int:
    """Open every stored key with the configured vault (exit 3 when one does not open)."""
    svc = _cli._ctx.services(keys=True)
    c = _custody()
    check = c.check_keys(svc.database_url, c._vault_of(svc))
    said = (f"all {check.total} key(s) open" if check.ok else
            f"{len(check.failed)} of {check.total} key(s) do not open: configure the master key they need")
    return _result(check, _check_dict(check), as_json, said)


def vault_rewrap(*, as_json: JsonFlag = False) -> int:
    """Move every key to the vault's sealing provider (local → KMS, KMS → KMS): configure it first.

    Safe to interrupt and run again: each key is rewrapped in its own transaction and opens with
    the old or the new key at every moment. Exit 3 when a key does not open with the new one alone.
    """
    report = _custody().rewrap(_cli._ctx.services(keys=True))
    data = {"provider": report.provider, "keys": report.total, "rewrapped": report.rewrapped,
            "already": report.already, "check": _check_dict(report.check)}
    said = (f"{report.rewrapped} key(s) rewrapped to {report.provider}, {report.already} already there; "
            + ("every key opens with it alone" if report.check.ok else "some keys do not open with it alone"))
    return _result(report.check, data, as_json, said)


def vault_rotate(*, as_json: JsonFlag = False) -> int:
    """Rotate the local master key: a new key, every key rewrapped to it, the old one kept as retired.

    Safe to interrupt and run again. `certpilot vault retire` deletes the retired key once
    every key opens without it; keep a copy of the new master.key apart from your backups.
    """
    home = Path(_cli._ctx.settings.home)
    r = _custody().rotate_local(_cli._ctx.services(keys=True), home)
    data = {"old_key_id": r.old_key_id, "new_key_id": r.new_key_id, "retired_file": r.retired_file,
            "rewrapped": r.rewrap.rewrapped, "keys": r.rewrap.total, "check": _check_dict(r.rewrap.check)}
    said = (f"master key rotated: {r.old_key_id} → {r.new_key_id}; {r.rewrap.total} key(s) open with the new key; "
            f"the old key is kept at {r.retired_file} until `certpilot vault retire`")
    return _result(r.rewrap.check, data, as_json, said)


def vault_retire(*, as_json: JsonFlag = False) -> int:
    """Delete retired master keys, once every key opens with the current one alone (else exit 3)."""
    removed = _custody().retire_old_keys(_cli._ctx.services(keys=True), Path(_cli._ctx.settings.home))
    _cli._emit({"removed": list(removed)}, lambda con: con.print(
        f"removed {', '.join(removed)}" if removed else "no retired master key to remove"), as_json)
    return _cli.EXIT_OK


def backup(directory: Path, /, *, as_json: JsonFlag = False) -> int:
    """Back up the database with its sealed keys into a new directory (0700); never the master key.

    Keep the master key (CERTPILOT_HOME/master.key, or the KMS key) apart from the backup: the
    manifest names the key ids a restore needs.
    """
    r = _custody().backup(_cli._ctx.services(keys=True), directory, home=Path(_cli._ctx.settings.home))
    data = {"directory": r.directory, "keys": r.keys, "providers": r.providers,
            "master_key_ids": list(r.master_key_ids), "sha256": r.sha256}
    _cli._emit(data, lambda con: con.print(
        f"backup written to {r.directory}: the database with {r.keys} sealed key(s); it holds no master key — "
        f"keep master key id(s) {', '.join(r.master_key_ids) or '(KMS)'} apart"), as_json)
    return _cli.EXIT_OK


def restore(directory: Path, /, *, as_json: JsonFlag = False) -> int:
    """Restore a backup: refused unless intact and every key in it opens; the old database is kept.

    Stop `certpilot up` and the workers first.
    """
    r = _custody().restore(_cli._ctx.services(keys=True), directory)
    data = {"database": r.database, "previous": r.previous, "check": _check_dict(r.check)}
    _cli._emit(data, lambda con: con.print(
        f"restored {r.database}: all {r.check.total} key(s) open; the previous database is kept at "
        f"{r.previous or '(none)'}"), as_json)
    return _cli.EXIT_OK
