"""Use cases of key custody (issue 15): rewrap every key to the vault's sealing provider, rotate the
local master key, check that every key opens, back up and restore the database with its sealed keys.

Crash safety. Rewrapping changes only a key's wrapped data key (32 bytes), never its ciphertext,
one key per transaction, compare-and-swap on the old wrapped value: at every instant each key is
wrapped either by the old provider or by the new one, and every process opens with both (the
vault keeps old providers, `crypto.vault.rotation_keys`, the KMS block's previous keys). A run
killed anywhere is simply run again. A rotation writes the new master key before rewrapping
anything and retires the old one only by renaming, never deleting, it.

Backups hold the database (with the sealed keys) and a manifest, never a master key: the
master key is kept apart, and a restore is refused unless every key of the backup opens with the
vault given, so a restore never installs keys nobody can open.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from certpilot.core.errors import BadInputError, Reason, Refusal, RefusedError
from certpilot.crypto.safefile import atomic_write, make_private_dir, open_directory
from certpilot.crypto.vault import (
    KEY_FILE,
    NEXT_KEY_FILE,
    OFFLINE,
    RETIRED_PREFIX,
    KeyVault,
    LocalMasterKey,
    SealedKey,
    VaultError,
    key_aad,
    rotation_keys,
)
from certpilot.store import key_queries as kq
from certpilot.store.db import dispose_engine, session_scope

if TYPE_CHECKING:
    from certpilot.runtime import Services

PURPOSES = ("tls-key", "acme-account", "ca")
"""Every purpose a key is sealed for (`key_aad`): TLS keys, ACME account keys, private-CA keys."""
MANIFEST = "manifest.json"
BACKUP_DB = "certpilot.db"


@dataclass(frozen=True)
class KeyCheck:
    """Whether every stored key opens: how many, and the ids (with why) of those that do not."""

    total: int
    failed: tuple[tuple[str, str], ...] = ()
    providers: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every key opens."""
        return not self.failed


@dataclass(frozen=True)
class RewrapReport:
    """A rewrap pass: keys moved to the sealing provider, keys already there, and the final check."""

    provider: str
    total: int
    rewrapped: int
    already: int
    check: KeyCheck


@dataclass(frozen=True)
class RotateReport:
    """A local master-key rotation: the old and new key ids, the rewrap, where the old key was kept."""

    old_key_id: str
    new_key_id: str
    rewrap: RewrapReport
    retired_file: str


@dataclass(frozen=True)
class BackupReport:
    """A backup written: its directory, the keys it holds, the master keys needed to restore it."""

    directory: str
    keys: int
    providers: dict[str, int]
    master_key_ids: tuple[str, ...]
    sha256: str


@dataclass(frozen=True)
class RestoreReport:
    """A restore done: the database replaced, where the previous one was kept, every key checked."""

    database: str
    previous: str | None
    check: KeyCheck


def _opens(vault: KeyVault, sealed: SealedKey, public_fingerprint: str) -> str | None:
    """None when the key opens for one of its possible purposes, else why not."""
    why = "no purpose's associated data matches"
    for purpose in PURPOSES:
        try:
            vault.open(sealed, key_aad(public_fingerprint, purpose))
            return None
        except VaultError as exc:
            why = exc.message
            if "associated data" not in why:
                return why  # the data key itself did not unwrap: no other purpose will help
    return why


def check_keys(database_url: str | None, vault: KeyVault) -> KeyCheck:
    """Open every stored key with `vault` (nothing is changed; plaintext is dropped at once).

    Args:
        database_url: the store.
        vault: the vault to open with (for "opens with the new key alone": a vault of that key only).
    """
    with session_scope(database_url, readonly=True) as s:
        ids = kq.key_ids(s)
        providers = kq.provider_counts(s)
    failed = []
    for key_id in ids:
        with session_scope(database_url, readonly=True) as s:
            found = kq.sealed_with_fingerprint(s, key_id)
        if found is None or found[0].provider == OFFLINE:
            continue  # a private CA's root, sealed offline on purpose
        why = _opens(vault, *found)
        if why is not None:
            failed.append((key_id, why))
    return KeyCheck(total=len(ids), failed=tuple(failed), providers=providers)


def rewrap_keys(database_url: str | None, vault: KeyVault, *,
                on_key: Callable[[str], None] | None = None) -> RewrapReport:
    """Wrap every stored key's data key with `vault.provider`, one key per transaction.

    Args:
        database_url: the store.
        vault: the target provider first, then every provider that may have sealed a key.
        on_key: called after each key is rewrapped (progress; the fault tests kill here).

    Returns:
        How many keys moved and how many were already there, and a check that every key opens
        with the target provider alone.

    Raises:
        VaultError: a key opens with none of the vault's providers (the keys before it are
            rewrapped, the rest untouched: fix the configuration and run it again).
    """
    with session_scope(database_url, readonly=True) as s:
        ids = kq.key_ids(s)
    moved = already = 0
    for key_id in ids:
        with session_scope(database_url, readonly=True) as s:
            found = kq.sealed_with_fingerprint(s, key_id)
        if found is None or found[0].provider == OFFLINE:
            continue  # a private CA's root, sealed offline on purpose: never online
        sealed, _ = found
        try:
            new = vault.rewrap(sealed)
        except VaultError as exc:
            raise VaultError(f"key {key_id} cannot be rewrapped: {exc.message}") from None
        if new is sealed:
            already += 1
            continue
        with session_scope(database_url) as s:
            if kq.swap_wrapped_dek(s, key_id, expected=sealed.wrapped_dek, wrapped_dek=new.wrapped_dek,
                                   provider=new.provider):
                moved += 1
            else:
                already += 1  # another rewrap got there first
        if on_key is not None:
            on_key(key_id)
    return RewrapReport(provider=vault.provider.name, total=len(ids), rewrapped=moved, already=already,
                        check=check_keys(database_url, KeyVault(vault.provider)))


def rewrap(svc: Services, *, on_key: Callable[[str], None] | None = None) -> RewrapReport:
    """`certpilot vault rewrap`: move every key to the services' sealing provider (see `rewrap_keys`).

    Configure the new provider first (the key-vault block's kms_key_id with the old key in
    previous_kms_key_ids, or the local key file kept on the host): every process then opens keys
    of either, and new keys are sealed by the new one while this runs.
    """
    return rewrap_keys(svc.database_url, _vault_of(svc), on_key=on_key)


def _vault_of(svc: Services) -> KeyVault:
    vault = svc.vault
    return vault if isinstance(vault, KeyVault) else vault._get()  # the CLI's lazily opened local vault


def rotate_local(svc: Services, home: Path, *, env: dict[str, str] | None = None,
                 on_key: Callable[[str], None] | None = None) -> RotateReport:
    """`certpilot vault rotate`: a new local master key; every key rewrapped to it; the old one retired.

    Steps, each safe to interrupt (run the command again): write `master.key.next` (0600); rewrap
    every key to it (all processes open with it meanwhile); keep the old key as
    `master.key.retired-<id>` (a hard link) and rename the new one over `master.key`; rewrap
    again (keys another process sealed with the old key meanwhile); check every key opens
    with the new key alone. `certpilot vault retire` removes the retired key afterwards.

    Raises:
        RefusedError: the master key comes from CERTPILOT_MASTER_KEY (rotate it where it is set),
            or the services' vault is not the local one (KMS: use `certpilot vault rewrap`).
        VaultError: a key file is unsafe, or a key opens with none of the keys.
    """
    env = os.environ if env is None else env
    if env.get("CERTPILOT_MASTER_KEY"):
        raise RefusedError(Refusal(Reason.BAD_INPUT, "the master key comes from CERTPILOT_MASTER_KEY: rotating "
                                   "it means changing that variable everywhere; move it to "
                                   f"{home / KEY_FILE} (0600) on each host, then run `certpilot vault rotate`"))
    if _vault_of(svc).provider.name != "local":
        raise RefusedError(Refusal(Reason.BAD_INPUT, "the vault's master key is in AWS KMS: rotate it in KMS "
                                   "(automatic key rotation keeps old versions), or move to another KMS key with "
                                   "previous_kms_key_ids and `certpilot vault rewrap`"))
    make_private_dir(home)
    current = LocalMasterKey.from_file(home / KEY_FILE, create=False)
    next_path = home / NEXT_KEY_FILE
    if not next_path.exists():
        _, text = LocalMasterKey.generate()
        atomic_write(next_path, text, mode=0o600)
    new = LocalMasterKey.from_file(next_path, create=False)
    others = [k for k in rotation_keys(home) if k.key_id != new.key_id]
    first = rewrap_keys(svc.database_url, KeyVault(new, current, *others), on_key=on_key)
    retired = home / f"{RETIRED_PREFIX}{current.key_id}"
    dfd = open_directory(home)
    try:
        if not retired.exists():
            os.link(KEY_FILE, retired.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        os.replace(NEXT_KEY_FILE, KEY_FILE, src_dir_fd=dfd, dst_dir_fd=dfd)
        os.fsync(dfd)
    finally:
        os.close(dfd)
    late = rewrap_keys(svc.database_url, KeyVault(new, current, *others))
    report = RewrapReport(provider=late.provider, total=late.total, rewrapped=first.rewrapped + late.rewrapped,
                          already=late.total - first.rewrapped - late.rewrapped, check=late.check)
    return RotateReport(old_key_id=current.key_id, new_key_id=new.key_id, rewrap=report, retired_file=str(retired))


def retire_old_keys(svc: Services, home: Path) -> tuple[str, ...]:
    """`certpilot vault retire`: delete retired local master keys once every key opens without them.

    Raises:
        RefusedError: some key still needs a retired key (naming how many; run `certpilot vault rewrap`).
    """
    vault = _vault_of(svc)
    check = check_keys(svc.database_url, KeyVault(vault.provider))
    if not check.ok:
        raise RefusedError(Refusal(Reason.BAD_INPUT, f"{len(check.failed)} key(s) do not open with the current "
                                   f"master key alone (first: {check.failed[0][0]}); run `certpilot vault rewrap` "
                                   "first"))
    removed = []
    for path in sorted(home.glob(f"{RETIRED_PREFIX}*")):
        path.unlink()
        removed.append(path.name)
    return tuple(removed)


def _sqlite_path(database_url: str | None) -> Path:
    from certpilot.settings import get_settings

    url = database_url or get_settings().db_url
    if not url.startswith("sqlite:///"):
        raise RefusedError(Refusal(Reason.BAD_INPUT, "certpilot backup/restore copy the SQLite database; for "
                                   "PostgreSQL use pg_dump/pg_restore (the sealed keys are in its `keys` table) "
                                   "and keep the master key apart"))
    return Path(url.removeprefix("sqlite:///"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def backup(svc: Services, directory: Path, *, home: Path | None = None) -> BackupReport:
    """`certpilot backup DIR`: the database (with its sealed keys) and a manifest, never a master key.

    The copy is SQLite's online backup (consistent while flows run), written 0600 into a new
    0700 directory; the manifest names the master key ids the backup needs (ids only).

    Raises:
        BadInputError: DIR exists and is not empty, or is CERTPILOT_HOME (where the master key is).
        RefusedError: the store is not SQLite (use pg_dump).
    """
    source = _sqlite_path(svc.database_url)
    directory = Path(directory)
    if home is not None and directory.resolve() == Path(home).resolve():
        raise BadInputError(f"{directory} is CERTPILOT_HOME, where the master key is: a backup keeps the master "
                            "key apart; give another directory.", Reason.BAD_INPUT)
    if directory.exists() and any(directory.iterdir()):
        raise BadInputError(f"{directory} is not empty: give a new directory for the backup.", Reason.BAD_INPUT)
    make_private_dir(directory)
    target = directory / BACKUP_DB
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    src, dst = sqlite3.connect(str(source)), sqlite3.connect(str(target))
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    url = f"sqlite:///{target}"
    with session_scope(url, readonly=True) as s:
        keys, providers = len(kq.key_ids(s)), kq.provider_counts(s)
    dispose_engine(url)
    vault = _vault_of(svc)
    ids = tuple(sorted({getattr(p, "key_id", "") for p in vault.providers if getattr(p, "key_id", "")}))
    digest = _sha256(target)
    manifest = {"format": 1, "created_at": datetime.now(UTC).isoformat(), "database": BACKUP_DB, "sha256": digest,
                "keys": keys, "providers": providers, "master_key_ids": list(ids),
                "note": "no master key here: restore with the master key (or KMS key) these ids name"}
    atomic_write(directory / MANIFEST, json.dumps(manifest, indent=2).encode(), mode=0o600)
    return BackupReport(directory=str(directory), keys=keys, providers=providers, master_key_ids=ids, sha256=digest)


def restore(svc: Services, directory: Path, *, before_swap: Callable[[], None] | None = None) -> RestoreReport:
    """`certpilot restore DIR`: verify the backup, open every key in it, then swap it in atomically.

    Nothing changes unless the backup is intact (sha256 of the manifest) and every key in it
    opens with the services' vault. The current database is kept as `<db>.pre-restore-<time>`;
    the backup is copied beside it (0600) and renamed over it in one step.

    Args:
        before_swap: called just before the rename (the fault tests kill here).

    Raises:
        BadInputError: no manifest, or the database does not match it.
        RefusedError: a key of the backup does not open (naming how many and the first id).
    """
    directory = Path(directory)
    target = _sqlite_path(svc.database_url)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        source = directory / manifest["database"]
    except (OSError, ValueError, KeyError, TypeError):
        raise BadInputError(f"{directory} holds no readable {MANIFEST}: it is not a certpilot backup.",
                            Reason.BAD_INPUT) from None
    if not source.is_file() or _sha256(source) != manifest.get("sha256"):
        raise BadInputError(f"the database in {directory} does not match its manifest (changed or truncated); "
                            "use another backup.", Reason.BAD_INPUT)
    staged = target.with_name(f".{target.name}.restore-{os.urandom(6).hex()}")
    os.close(os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    try:
        src, dst = sqlite3.connect(str(source)), sqlite3.connect(str(staged))
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
        check = check_keys(f"sqlite:///{staged}", _vault_of(svc))
        dispose_engine(f"sqlite:///{staged}")
        if not check.ok:
            raise RefusedError(Refusal(Reason.BAD_INPUT, f"{len(check.failed)} of the backup's {check.total} key(s) "
                                       f"do not open with this vault (first: {check.failed[0][0]}: "
                                       f"{check.failed[0][1]}); nothing was restored: give the master key the "
                                       f"backup needs (ids {', '.join(manifest.get('master_key_ids', [])) or '?'})"))
        previous = None
        if target.exists():
            previous = target.with_name(f"{target.name}.pre-restore-{datetime.now(UTC):%Y%m%dT%H%M%S%f}")
            os.link(target, previous)
        _quiesce(target)
        if before_swap is not None:
            before_swap()
        os.replace(staged, target)
        dfd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        staged.unlink(missing_ok=True)
    return RestoreReport(database=str(target), previous=str(previous) if previous else None, check=check)


def _quiesce(target: Path) -> None:
    """Fold the live database's write-ahead log into it and drop it, so no stale WAL outlives the swap.

    Raises:
        RefusedError: another process holds the database open (stop `certpilot up` and the workers).
    """
    dispose_engine(f"sqlite:///{target}")
    if not target.exists():
        return
    conn = sqlite3.connect(str(target), timeout=1)
    try:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:
            raise RefusedError(Refusal(Reason.BAD_INPUT, f"{target} is in use by another process; stop "
                                       "`certpilot up` and the workers, then run `certpilot restore` again"))
    finally:
        conn.close()
    for suffix in ("-wal", "-shm"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
