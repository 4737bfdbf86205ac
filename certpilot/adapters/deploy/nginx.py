"""A web server that reads PEM files and reloads on a command: nginx by default, Apache or
HAProxy through the configured argv.

Steps (DEP-5, DEP-6, DEP-7):
- stage: copy the current files to `*.certpilot-prev` backups (key 0600) and write the new full
  chain (leaf + intermediates) and key to temp files beside them; nothing served changes.
- validate: swap the new files in (`os.replace`) and run the check command (`nginx -t`); the
  running server still holds the old certificate in memory, so a failed check only means the
  old files are put back, and the server never saw the new ones.
- commit: keep the swap. reload: run the reload command (`nginx -s reload`).
- rollback: put the backups back and reload again. finalize: remove the backups.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from certpilot.adapters.deploy.base import (
    DeployError,
    DeployMaterial,
    atomic_write,
    run_command,
)
from certpilot.crypto.pem import fingerprint

BACKUP_SUFFIX = ".certpilot-prev"
STAGED_SUFFIX = ".certpilot-new"


@dataclass(frozen=True)
class PemFiles:
    """One vhost's pair of files: the full chain (`ssl_certificate`) and the key."""

    cert: Path
    key: Path

    @classmethod
    def of(cls, value: dict | tuple | list | PemFiles) -> PemFiles:
        """From a `{"cert": ..., "key": ...}` mapping or a `(cert, key)` pair."""
        if isinstance(value, PemFiles):
            return value
        if isinstance(value, dict):
            return cls(Path(value["cert"]), Path(value["key"]))
        cert, key = value
        return cls(Path(cert), Path(key))


def nginx_check_argv(prefix: str | Path | None = None, conf: str | Path | None = None,
                     binary: str = "nginx") -> list[str]:
    """`nginx -t -q [-p PREFIX] [-c CONF]`."""
    argv = [binary, "-t", "-q"]
    if prefix is not None:
        argv += ["-p", str(prefix)]
    if conf is not None:
        argv += ["-c", str(conf)]
    return argv


def nginx_reload_argv(prefix: str | Path | None = None, conf: str | Path | None = None,
                      binary: str = "nginx") -> list[str]:
    """`nginx [-p PREFIX] [-c CONF] -s reload`."""
    argv = [binary]
    if prefix is not None:
        argv += ["-p", str(prefix)]
    if conf is not None:
        argv += ["-c", str(conf)]
    return [*argv, "-s", "reload"]


class PemFilesTarget:
    """Deploys to PEM files of a server and drives its check and reload commands (no shell).

    Args:
        target_id: the deployment target's id.
        files: one `PemFiles` (or mapping/pair) per vhost served by this certificate.
        check_argv: the configuration test, run with the new files in place (default `nginx -t`).
        reload_argv: the graceful reload (default `nginx -s reload`).
        timeout: seconds for each command.
        name: what operators call the server (messages).
        pid_file: the server's pid file, when known: lets the VER-2 diagnosis tell whether the
            server reloaded after the files were written.
    """

    kind = "nginx"

    def __init__(self, target_id: str, files: Sequence[PemFiles | dict | tuple], *,
                 check_argv: Sequence[str] | None = None, reload_argv: Sequence[str] | None = None,
                 timeout: float = 30.0, name: str = "nginx", pid_file: str | Path | None = None):
        if not files:
            raise DeployError(f"target {target_id} lists no certificate files; configure at least one "
                              "cert/key pair", step="stage")
        self.target_id = target_id
        self.files = [PemFiles.of(f) for f in files]
        self.check_argv = list(check_argv) if check_argv is not None else nginx_check_argv()
        self.reload_argv = list(reload_argv) if reload_argv is not None else nginx_reload_argv()
        self.timeout = timeout
        self.name = name
        self.pid_file = Path(pid_file) if pid_file else None
        self._staged = False
        self._swapped = False
        self._reloaded = False
        self._had: dict[Path, bool] = {}

    def describe(self) -> str:
        """E.g. "nginx (3 vhost files, /srv/nginx/certs/a/fullchain.pem, …)"."""
        first = self.files[0].cert
        more = f", {len(self.files)} vhost file pairs" if len(self.files) > 1 else ""
        return f"{self.name} ({first}{more})"

    # ------------------------------------------------------------------ steps
    def stage(self, material: DeployMaterial) -> None:
        """Back up the current files and write the new full chain and key beside them."""
        key_pem = material.open_key()
        fullchain = material.fullchain_pem
        try:
            for pair in self.files:
                for path, mode in ((pair.cert, 0o644), (pair.key, 0o600)):
                    path.parent.mkdir(parents=True, exist_ok=True)
                    if _backup(path).exists():
                        # Left by a run that died between the swap and finalize/rollback: it holds
                        # the files from before that run, the ones to roll back to (DEP-7).
                        self._had[path] = True
                        continue
                    self._had[path] = path.exists()
                    if self._had[path]:
                        atomic_write(_backup(path), path.read_bytes(), mode=mode)
                atomic_write(_staged(pair.cert), fullchain, mode=0o644)
                atomic_write(_staged(pair.key), key_pem, mode=0o600)
        except OSError as exc:
            self._discard_staged()
            raise DeployError(f"{self.describe()}: could not write the new files ({exc.strerror}: "
                              f"{exc.filename}); check the directory's permissions and free space",
                              step="stage") from exc
        finally:
            del key_pem
        self._staged = True

    def validate(self) -> None:
        """Swap the new files in and run the check command; on failure put the old ones back."""
        if not self._staged:
            raise DeployError(f"{self.describe()}: nothing staged to validate", step="validate")
        for pair in self.files:
            os.replace(_staged(pair.cert), pair.cert)
            os.replace(_staged(pair.key), pair.key)
        self._swapped = True
        try:
            run_command(self.check_argv, step="validate", timeout=self.timeout,
                        what=f"{self.describe()}: the configuration test with the new certificate failed")
        except Exception:
            self._restore_files()
            raise

    def commit(self) -> None:
        """Keep the swapped files (they are already in place, written atomically)."""
        if not self._swapped:
            raise DeployError(f"{self.describe()}: validate must succeed before commit", step="commit")

    def reload(self) -> None:
        """Run the reload command so the server serves the new files (DEP-5)."""
        self._reloaded = True  # from here on, a rollback reloads too (the attempt may have half-happened)
        run_command(self.reload_argv, step="reload", timeout=self.timeout,
                    what=f"{self.describe()}: the reload failed")

    def rollback(self) -> None:
        """Put the previous files back and, if the server was reloaded, reload it again (DEP-7)."""
        self._discard_staged()
        if self._swapped:
            self._restore_files()
        if self._reloaded:
            run_command(self.reload_argv, step="rollback", timeout=self.timeout,
                        what=f"{self.describe()}: the reload after restoring the previous certificate failed")
        self.finalize()  # restored and in effect: the backups have done their job

    def finalize(self) -> None:
        """Remove the backups: the new certificate is verified."""
        for pair in self.files:
            for path in (pair.cert, pair.key):
                _backup(path).unlink(missing_ok=True)

    # ------------------------------------------------------------------ VER-2 facts
    @property
    def deployed_file(self) -> Path:
        """The first vhost's certificate file (what the diagnosis reads)."""
        return self.files[0].cert

    @property
    def reload_hint(self) -> str:
        """The advice of a "not reloaded" diagnosis."""
        return f"run `{' '.join(self.reload_argv)}`"

    def deployed_fingerprint(self) -> str | None:
        """SHA-256 of the leaf in the first certificate file (None when unreadable); never reads keys."""
        try:
            certs = x509.load_pem_x509_certificates(self.deployed_file.read_bytes())
        except (OSError, ValueError):
            return None
        return fingerprint(certs[0]) if certs else None

    def last_reload(self) -> datetime | None:
        """When the server last loaded its configuration (nginx: newest worker's start), if known."""
        if self.pid_file is None:
            return None
        from certpilot.adapters.probe.diagnose import nginx_last_load

        return nginx_last_load(self.pid_file)

    # ------------------------------------------------------------------ internals
    def _restore_files(self) -> None:
        for pair in self.files:
            for path, mode in ((pair.cert, 0o644), (pair.key, 0o600)):
                backup = _backup(path)
                if self._had.get(path) and backup.exists():
                    # Copy, not move: the backup stays until finalize in case of a second failure.
                    tmp = path.with_name(f".{path.name}.restore.tmp")
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
                    os.close(fd)
                    shutil.copyfile(backup, tmp)
                    os.replace(tmp, path)
                elif not self._had.get(path, True):
                    path.unlink(missing_ok=True)
        self._swapped = False

    def _discard_staged(self) -> None:
        for pair in self.files:
            _staged(pair.cert).unlink(missing_ok=True)
            _staged(pair.key).unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"PemFilesTarget({self.target_id!r}, {self.describe()!r})"


NginxTarget = PemFilesTarget
"""nginx is the default configuration of `PemFilesTarget`."""


def _backup(path: Path) -> Path:
    return path.with_name(path.name + BACKUP_SUFFIX)


def _staged(path: Path) -> Path:
    return path.with_name(path.name + STAGED_SUFFIX)
