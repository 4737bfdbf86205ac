"""A directory bundle for manual deployment to one's own servers (DEP-4).

`cert.pem` (leaf), `chain.pem` (intermediates), `fullchain.pem` (leaf + intermediates, DEP-6)
and `key.pem` (0600 from creation, CSR-5; absent when the system does not hold the key,
CSR-2), switched together by one symlink flip (`slots.Slot`); optionally a post-deploy command (argv, no shell) that copies
or installs the bundle. This is the bundle a human copies where certpilot does not reach.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from certpilot.adapters.deploy.base import (
    DeployError,
    DeployMaterial,
    key_matches_certificate,
    run_command,
)
from certpilot.adapters.deploy.slots import HostLock, Slot
from certpilot.crypto.safefile import open_directory

BUNDLE = ("cert.pem", "chain.pem", "fullchain.pem", "key.pem")
_MODES = {"key.pem": 0o600}


class FilesTarget:
    """Writes the bundle as a new version of `directory` and flips to it; runs `post_command` after.

    The bundle's files in `directory` are links into a `Slot` beside it
    (`.<directory name>.certpilot/`): one symlink flip switches cert, chain, fullchain and key
    together, and the version served before the task is kept (its backup) until the new one is
    verified and recorded, or restored.

    Args:
        target_id: the deployment target's id.
        directory: where the bundle lives (created 0700 if missing).
        post_command: argv run after the bundle is committed (and again after a rollback).
        timeout: seconds for the post command.
        lock_timeout: how long a run waits for another run on this host to finish with the target.
    """

    kind = "files"

    def __init__(self, target_id: str, directory: str | Path, *, post_command: Sequence[str] | None = None,
                 timeout: float = 60.0, lock_timeout: float = 600.0):
        self.target_id = target_id
        self.directory = Path(directory)
        self.post_command = list(post_command) if post_command else None
        self.timeout = timeout
        self.slot = Slot(self.directory.with_name(f".{self.directory.name}.certpilot"),
                         {name: self.directory / name for name in BUNDLE}, dir_mode=0o700)
        self.lock = HostLock(self.slot.root / "lock", timeout=lock_timeout)
        self.checkpoint: dict = {}
        """Kept by the deployment task across a crash: `before` and `new` version tags."""
        self._flipped = False
        self._ran_post = False

    def describe(self) -> str:
        """E.g. "files bundle in /srv/certs/example"."""
        return f"files bundle in {self.directory}"

    def stage(self, material: DeployMaterial) -> None:
        """Lock, adopt the bundle directory, remember the version to roll back to, write the new one."""
        self.lock.acquire(what=self.describe())
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The bundle directory and its parent must be real directories of ours (no one else may
        # plant a symlink there): the versions and the `current` link are written inside.
        for checked in (self.directory.parent, self.directory):
            os.close(open_directory(checked))
        contents = {"cert.pem": (material.leaf_pem, 0o644), "chain.pem": (material.chain_pem, 0o644),
                    "fullchain.pem": (material.fullchain_pem, 0o644)}
        if material.has_key:
            contents["key.pem"] = (material.open_key(), _MODES["key.pem"])
        try:
            served = self.slot.adopt({n: _MODES.get(n, 0o644) for n in BUNDLE})
            self.checkpoint.setdefault("before", served)  # once per task (DEP-7 across a crash)
            new = material.fingerprint[:24] + ("" if material.has_key else "-nokey")
            self.slot.write(new, contents)
            self.checkpoint["new"] = new
        except OSError as exc:
            raise DeployError(f"{self.describe()}: could not write the bundle ({exc.strerror}: {exc.filename}); "
                              "check the directory's permissions and free space", step="stage") from exc
        finally:
            contents.clear()

    def validate(self) -> None:
        """The bundle's own check: the certificate parses and the key (if any) belongs to it."""
        new = self._require_staged("validate")
        cert, key = self.slot.read(new, "cert.pem"), self.slot.read(new, "key.pem")
        try:
            ok = key is None or key_matches_certificate(cert or b"", key)
        except ValueError as exc:
            raise DeployError(f"{self.describe()}: the staged bundle does not parse ({type(exc).__name__}); "
                              "re-import the certificate", step="validate") from exc
        if not ok:
            raise DeployError(f"{self.describe()}: the private key does not belong to the certificate; "
                              "the stored key is not this certificate's — re-import the pair", step="validate")

    def commit(self) -> None:
        """Switch the whole bundle to the new version in one flip (no stale key beside a new certificate)."""
        new = self._require_staged("commit")
        self._flipped = True
        self.slot.flip(new)
        self.slot.prune()

    def reload(self) -> None:
        """Run the post-deploy command, if any."""
        if self.post_command:
            self._ran_post = True
            run_command(self.post_command, step="reload", timeout=self.timeout,
                        what=f"{self.describe()}: the post-deploy command failed")

    def rollback(self) -> None:
        """Flip back to the bundle from before the task (and run the post command again if the
        bundle changed), from the checkpoint and the files alone; drop the new version."""
        before = self.checkpoint.get("before")
        if not self.slot.root.is_dir():
            return  # nothing of this task reached the files
        self.lock.acquire(what=self.describe(), step="rollback")
        if before is None:
            # No switch of this task was recorded, and a run switches only after recording its
            # backup: what is served is what was. Drop what a dead run half-wrote.
            self.slot.drop_all_but()
            return
        flipped = self.slot.flip(before)
        self.slot.relink()
        self.slot.prune()
        if (flipped or self._ran_post) and self.post_command:
            run_command(self.post_command, step="rollback", timeout=self.timeout,
                        what=f"{self.describe()}: the post-deploy command after restoring failed")
        self._flipped = False
        self.slot.drop_all_but()  # the new version and what dead runs half-wrote; the backup is served

    def finalize(self) -> None:
        """Drop every version but the served one (the backup has done its job)."""
        self.slot.drop_all_but()

    def close(self) -> None:
        """Release the host lock."""
        self.lock.release()

    def check(self) -> list[tuple[str, str]]:
        """What stops a deployment here, changing nothing: the bundle's directory (or, before the
        first deployment, its parent) is writable, and the post command's program exists."""
        from certpilot.adapters.deploy.checks import command_problems, path_problems

        if self.directory.is_dir():
            out = path_problems("directory", self.directory / "cert.pem", must_exist=False)
        else:
            out = path_problems("directory", self.directory, must_exist=False)
        return out + command_problems("post_command", self.post_command)

    def _require_staged(self, step: str) -> str:
        new = self.checkpoint.get("new")
        if not new:
            raise DeployError(f"{self.describe()}: nothing staged", step=step)
        return new

    def __repr__(self) -> str:
        return f"FilesTarget({self.target_id!r}, {str(self.directory)!r})"
