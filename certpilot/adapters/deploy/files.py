"""A directory bundle for manual deployment to one's own servers (DEP-4).

`cert.pem` (leaf), `chain.pem` (intermediates), `fullchain.pem` (leaf + intermediates, DEP-6)
and `key.pem` (0600 from creation, CSR-5; absent when the system does not hold the key,
CSR-2), each written atomically; optionally a post-deploy command (argv, no shell) that copies
or installs the bundle. This is the bundle a human copies where certpilot does not reach.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from certpilot.adapters.deploy.base import (
    DeployError,
    DeployMaterial,
    atomic_write,
    key_matches_certificate,
    run_command,
)
from certpilot.crypto.safefile import open_directory

BUNDLE = ("cert.pem", "chain.pem", "fullchain.pem", "key.pem")
_MODES = {"key.pem": 0o600}


class FilesTarget:
    """Writes the bundle into `directory` and runs `post_command` after it.

    Args:
        target_id: the deployment target's id.
        directory: where the bundle lives (created 0700 if missing).
        post_command: argv run after the bundle is committed (and again after a rollback).
        timeout: seconds for the post command.
    """

    kind = "files"

    def __init__(self, target_id: str, directory: str | Path, *, post_command: Sequence[str] | None = None,
                 timeout: float = 60.0):
        self.target_id = target_id
        self.directory = Path(directory)
        self.post_command = list(post_command) if post_command else None
        self.timeout = timeout
        self._staging: Path | None = None
        self._backup: Path | None = None
        self._committed = False
        self._ran_post = False

    def describe(self) -> str:
        """E.g. "files bundle in /srv/certs/example"."""
        return f"files bundle in {self.directory}"

    def stage(self, material: DeployMaterial) -> None:
        """Write the new bundle into a staging directory beside the live one."""
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        staging = self.directory.with_name(f".{self.directory.name}.certpilot-new")
        shutil.rmtree(staging, ignore_errors=True)
        os.mkdir(staging, 0o700)
        self._staging = staging
        contents = {"cert.pem": material.leaf_pem, "chain.pem": material.chain_pem,
                    "fullchain.pem": material.fullchain_pem}
        for name, data in contents.items():
            atomic_write(staging / name, data, mode=0o644)
        if material.has_key:
            atomic_write(staging / "key.pem", material.open_key(), mode=0o600)

    def validate(self) -> None:
        """The bundle's own check: the certificate parses and the key (if any) belongs to it."""
        staging = self._require_staging("validate")
        key = staging / "key.pem"
        try:
            ok = not key.exists() or key_matches_certificate((staging / "cert.pem").read_bytes(), key.read_bytes())
        except ValueError as exc:
            raise DeployError(f"{self.describe()}: the staged bundle does not parse ({type(exc).__name__}); "
                              "re-import the certificate", step="validate") from exc
        if not ok:
            raise DeployError(f"{self.describe()}: the private key does not belong to the certificate; "
                              "the stored key is not this certificate's — re-import the pair", step="validate")

    def commit(self) -> None:
        """Swap each bundle file into the live directory atomically, keeping the old ones as backups."""
        staging = self._require_staging("commit")
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        backup = self.directory.with_name(f".{self.directory.name}.certpilot-prev")
        # The backup's parent must be safe too (no one else may plant a symlink there), and an
        # existing backup must be a real directory of ours: never follow one into another place.
        os.close(open_directory(self.directory.parent))
        if os.path.lexists(backup):
            os.close(open_directory(backup))
        if not os.path.lexists(backup):
            # (An existing backup was left by a run that died before finalize/rollback: it holds
            # the bundle from before that run, the one to roll back to — keep it, DEP-7.)
            os.mkdir(backup, 0o700)
            for name in BUNDLE:
                live = self.directory / name
                if live.exists():
                    os.link(live, backup / name) if _same_fs(live, backup) else shutil.copy2(live, backup / name)
        self._backup = backup
        self._committed = True
        for name in BUNDLE:
            new = staging / name
            if new.exists():
                os.replace(new, self.directory / name)
            else:
                (self.directory / name).unlink(missing_ok=True)  # no stale key beside a new certificate
        shutil.rmtree(staging, ignore_errors=True)
        self._staging = None

    def reload(self) -> None:
        """Run the post-deploy command, if any."""
        if self.post_command:
            self._ran_post = True
            run_command(self.post_command, step="reload", timeout=self.timeout,
                        what=f"{self.describe()}: the post-deploy command failed")

    def rollback(self) -> None:
        """Put the previous bundle back (and run the post command again if it ran)."""
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
        if not self._committed or self._backup is None:
            return
        for name in BUNDLE:
            old = self._backup / name
            live = self.directory / name
            if old.exists():
                atomic_write(live, old.read_bytes(), mode=_MODES.get(name, 0o644))
            else:
                live.unlink(missing_ok=True)
        self._committed = False
        if self._ran_post and self.post_command:
            run_command(self.post_command, step="rollback", timeout=self.timeout,
                        what=f"{self.describe()}: the post-deploy command after restoring failed")
        self.finalize()  # restored: the backup has done its job

    def finalize(self) -> None:
        """Drop the backup of the previous bundle."""
        if self._backup is not None:
            shutil.rmtree(self._backup, ignore_errors=True)
            self._backup = None

    def _require_staging(self, step: str) -> Path:
        if self._staging is None:
            raise DeployError(f"{self.describe()}: nothing staged", step=step)
        return self._staging

    def __repr__(self) -> str:
        return f"FilesTarget({self.target_id!r}, {str(self.directory)!r})"


def _same_fs(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_dev == b.stat().st_dev
    except OSError:
        return False
