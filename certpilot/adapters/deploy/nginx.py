"""A web server that reads PEM files and reloads on a command: nginx by default, Apache or
HAProxy through the configured argv.

The served files become links into a `Slot` (`slots.py`): every version of the target's files
lives in its own directory and one symlink flip switches all of them, certificate and key of
every vhost together (certbot's `live/` links). Steps (DEP-5, DEP-6, DEP-7):
- stage: take the host lock, adopt the served files (the first time: snapshot them, content
  unchanged), remember the version served before this task (once per task, in the checkpoint:
  a rerun after a crash rolls back to what was there before the first run) and write the new
  full chain (leaf + intermediates) and key as a new version; nothing served changes.
- validate: flip to the new version and run the check command (`nginx -t`); the running server
  still holds the old certificate in memory, so a failed check flips back and the server never
  saw the new files.
- commit: keep the flip. reload: run the reload command (`nginx -s reload`).
- rollback: flip back to the version from before the task (whatever this or an earlier, crashed
  run did), reload if anything may have been served from the new one, drop the new version.
- finalize: drop every version but the served one (the backup is kept until then).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from certpilot.adapters.deploy.base import DeployError, DeployMaterial, run_command
from certpilot.adapters.deploy.slots import HostLock, Slot
from certpilot.crypto.pem import fingerprint


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
        lock_timeout: how long a run waits for another run on this host to finish with the target.
    """

    kind = "nginx"

    def __init__(self, target_id: str, files: Sequence[PemFiles | dict | tuple], *,
                 check_argv: Sequence[str] | None = None, reload_argv: Sequence[str] | None = None,
                 timeout: float = 30.0, name: str = "nginx", pid_file: str | Path | None = None,
                 lock_timeout: float = 600.0):
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
        links: dict[str, Path] = {}
        self._modes: dict[str, int] = {}
        for i, pair in enumerate(self.files):
            links[f"{i}.cert"], links[f"{i}.key"] = pair.cert, pair.key
            self._modes[f"{i}.cert"], self._modes[f"{i}.key"] = 0o644, 0o600
        self.slot = Slot(slot_root(self.files[0].cert, target_id), links)
        self.lock = HostLock(self.slot.root / "lock", timeout=lock_timeout)
        self.checkpoint: dict = {}
        """Kept by the deployment task across a crash: `before` (the version served before the
        task, its backup) and `new` (the version it deploys); tags only, never key material."""
        self._flipped = False
        self._reloaded = False

    def describe(self) -> str:
        """E.g. "nginx (3 vhost files, /srv/nginx/certs/a/fullchain.pem, …)"."""
        first = self.files[0].cert
        more = f", {len(self.files)} vhost file pairs" if len(self.files) > 1 else ""
        return f"{self.name} ({first}{more})"

    # ------------------------------------------------------------------ steps
    def stage(self, material: DeployMaterial) -> None:
        """Lock, adopt the served files, remember the version to roll back to, write the new one."""
        self.lock.acquire(what=self.describe())
        key_pem = material.open_key()
        fullchain = material.fullchain_pem
        try:
            served = self.slot.adopt(self._modes)
            self.checkpoint.setdefault("before", served)  # once per task: a rerun keeps the first run's
            new = f"{material.fingerprint[:24]}"
            self.slot.write(new, {n: (fullchain if n.endswith(".cert") else key_pem, m)
                                  for n, m in self._modes.items()})
            self.checkpoint["new"] = new
        except OSError as exc:
            raise DeployError(f"{self.describe()}: could not write the new files ({exc.strerror}: "
                              f"{exc.filename}); check the directory's permissions and free space",
                              step="stage") from exc
        finally:
            del key_pem

    def validate(self) -> None:
        """Flip to the new version and run the check command; on failure flip back."""
        new = self.checkpoint.get("new")
        if not new:
            raise DeployError(f"{self.describe()}: nothing staged to validate", step="validate")
        self._flipped = True  # from here on a rollback flips back (the flip may half-happen: it cannot)
        self.slot.flip(new)
        try:
            run_command(self.check_argv, step="validate", timeout=self.timeout,
                        what=f"{self.describe()}: the configuration test with the new certificate failed")
        except Exception:
            self.slot.flip(self.checkpoint["before"])
            raise

    def commit(self) -> None:
        """Keep the flipped version (it is already in place, switched atomically)."""
        if not self._flipped or self.slot.current() != self.checkpoint.get("new"):
            raise DeployError(f"{self.describe()}: validate must succeed before commit", step="commit")

    def reload(self) -> None:
        """Run the reload command so the server serves the new files (DEP-5)."""
        self._reloaded = True  # from here on, a rollback reloads too (the attempt may have half-happened)
        run_command(self.reload_argv, step="reload", timeout=self.timeout,
                    what=f"{self.describe()}: the reload failed")

    def rollback(self) -> None:
        """Flip back to the version from before the task and reload when it changed (DEP-7).

        Works from the checkpoint and the files alone, so a rerun restores what an earlier run
        of the task (that died after its flip or its reload) left.
        """
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
        if flipped or self._reloaded:
            run_command(self.reload_argv, step="rollback", timeout=self.timeout,
                        what=f"{self.describe()}: the reload after restoring the previous certificate failed")
        self._flipped = False
        # Restored and in effect: the new version goes; the backup is what is served again.
        self.slot.drop_all_but()  # the new version and what dead runs half-wrote; the backup is served

    def finalize(self) -> None:
        """Drop every version but the served one: the new certificate is verified and recorded."""
        self.slot.drop_all_but()

    def close(self) -> None:
        """Release the host lock (the run is over, whatever its outcome)."""
        self.lock.release()

    def check(self) -> list[tuple[str, str]]:
        """What stops a deployment here, changing nothing: each served file exists and is readable,
        its directory writable, the reload program exists, and the check command (`nginx -t`)
        passes on what is served now. Problems name their field (`files[0].key`, `check_argv`)."""
        from certpilot.adapters.deploy.checks import command_problems, path_problems

        out: list[tuple[str, str]] = []
        for i, pair in enumerate(self.files):
            out += path_problems(f"files[{i}].cert", pair.cert, must_exist=True)
            out += path_problems(f"files[{i}].key", pair.key, must_exist=True)
        out += command_problems("reload_argv", self.reload_argv)
        if not (missing := command_problems("check_argv", self.check_argv)):
            try:
                run_command(self.check_argv, step="validate", timeout=self.timeout,
                            what=f"{self.describe()}: the configuration test")
            except Exception as exc:  # noqa: BLE001 - reported as the field's problem
                out.append(("check_argv", str(exc)))
        return out + missing

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

    def __repr__(self) -> str:
        return f"PemFilesTarget({self.target_id!r}, {self.describe()!r})"


NginxTarget = PemFilesTarget
"""nginx is the default configuration of `PemFilesTarget`."""


def slot_root(first_file: Path, target_id: str) -> Path:
    """Where a target's versions live: beside its first served file, named after the target."""
    return Path(first_file).parent / f".certpilot-{target_id}"
