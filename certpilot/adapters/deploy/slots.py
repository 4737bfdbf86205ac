"""Live files switched together by one symlink flip, and a host lock, for the file targets.

A `Slot` keeps every version of a target's files in `root/versions/<tag>/` and makes the served
paths symlinks into `root/current`, itself a symlink to one version (certbot's `live/` links to
`archive/`). Switching versions is one `rename(2)` of the `current` link: a certificate and its
key (and every vhost of the target) change together or not at all, whatever instant the process
dies at. The first deployment adopts the served regular files: it snapshots them as a version,
points `current` at it, then replaces each served file by its link; each of those replacements
keeps what is served byte for byte, so a kill between two of them still serves a matching pair.

`HostLock` is an advisory `flock(2)` on a file in the slot: held for a whole deployment run, it
keeps two runs on the same host (a stalled run and the one that took its task over, or two
certificates for one target) from acting on the same files at once; the kernel drops it when the
holding process dies.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import secrets
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

from certpilot.adapters.deploy.base import DeployError, TransientDeployError

CURRENT = "current"
VERSIONS = "versions"
LOCK = "lock"


class Slot:
    """The versions of a set of served files and the one link that chooses among them.

    Args:
        root: the slot's directory (created 0700; on the same filesystem as nothing in particular:
            the served paths are absolute symlinks).
        links: served path per file name in a version, e.g. ``{"0.cert": /etc/nginx/a.pem, ...}``.
        dir_mode: the mode of each version directory (0755 lets a server running as another user
            read the certificate; the key file itself is 0600).
    """

    def __init__(self, root: Path, links: Mapping[str, Path], *, dir_mode: int = 0o755):
        self.root = Path(root)
        self.links = {name: Path(p) for name, p in links.items()}
        self.dir_mode = dir_mode

    # ------------------------------------------------------------------ reading
    @property
    def current_link(self) -> Path:
        """The `current` symlink."""
        return self.root / CURRENT

    def version_dir(self, tag: str) -> Path:
        """Where version `tag` lives."""
        return self.root / VERSIONS / tag

    def current(self) -> str | None:
        """The tag `current` points at, or None before the first adoption."""
        try:
            return Path(os.readlink(self.current_link)).name
        except OSError:
            return None

    def adopted(self) -> bool:
        """True when every served path is this slot's link (what is served is `current`)."""
        return self.current() is not None and all(self._is_ours(n) for n in self.links)

    def versions(self) -> list[str]:
        """Every complete version's tag."""
        try:
            return sorted(e.name for e in os.scandir(self.root / VERSIONS) if not e.name.startswith("."))
        except FileNotFoundError:
            return []

    def read(self, tag: str, name: str) -> bytes | None:
        """One file of a version (None when that version has none)."""
        try:
            return (self.version_dir(tag) / name).read_bytes()
        except FileNotFoundError:
            return None

    # ------------------------------------------------------------------ writing
    def adopt(self, modes: Mapping[str, int]) -> str:
        """Make every served path a link into the slot; return the tag served now.

        A served path that is a regular file (the first deployment, or an operator replaced our
        link by hand) is snapshotted with the others into a version tagged by content, `current`
        is pointed at it, then each such path is swapped for its link — every step serves the
        same bytes as before it, so a crash anywhere here changes nothing served. Idempotent.

        Args:
            modes: file mode per name (0600 for keys).
        """
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.root / VERSIONS).mkdir(mode=0o700, exist_ok=True)
        if self.adopted():
            return self.current()  # type: ignore[return-value]
        served = {}
        for name, path in self.links.items():
            try:
                served[name] = path.read_bytes()  # follows our link where there is one
            except FileNotFoundError:
                continue
        digest = hashlib.sha256()
        for name in sorted(served):
            digest.update(name.encode() + b"\0" + served[name] + b"\0")
        tag = f"snap-{digest.hexdigest()[:16]}"
        self.write(tag, {n: (data, modes.get(n, 0o644)) for n, data in served.items()})
        self.flip(tag)
        for name, path in self.links.items():
            if not self._is_ours(name):  # (a path with no file yet gets a link that dangles, as before)
                path.parent.mkdir(parents=True, exist_ok=True)
                _symlink_replace(self.current_link / name, path)
        return tag

    def write(self, tag: str, files: Mapping[str, tuple[bytes, int]]) -> None:
        """Write version `tag` whole (a temp directory renamed into place), unless it exists
        with exactly these bytes (a rerun of the same deployment)."""
        final = self.version_dir(tag)
        if final.is_dir():
            if all(self.read(tag, n) == data for n, (data, _m) in files.items()):
                return
            if self.current() == tag:
                raise DeployError(f"version {tag} in {self.root} is served and differs from what this "
                                  "deployment writes; remove the slot by hand", step="stage")
            shutil.rmtree(final)
        tmp = self.root / VERSIONS / f".{tag}.{secrets.token_hex(4)}.tmp"
        os.mkdir(tmp, self.dir_mode)
        try:
            for name, (data, mode) in files.items():
                fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
                try:
                    os.write(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(final.parent)

    def flip(self, tag: str) -> bool:
        """Point `current` at version `tag` in one rename; True when it changed anything.

        Raises:
            DeployError: no such version.
        """
        if not self.version_dir(tag).is_dir():
            raise DeployError(f"version {tag} is missing from {self.root}; nothing was switched", step="commit")
        if self.current() == tag:
            return False
        _symlink_replace(Path(VERSIONS) / tag, self.current_link)
        return True

    def drop(self, *tags: str) -> None:
        """Remove versions (never the current one)."""
        current = self.current()
        for tag in tags:
            if tag and tag != current:
                shutil.rmtree(self.version_dir(tag), ignore_errors=True)

    def drop_all_but(self, *keep: str) -> None:
        """Remove every version but `current` and `keep` (and half-written temp directories)."""
        keep_set = {self.current(), *keep}
        try:
            entries = list(os.scandir(self.root / VERSIONS))
        except FileNotFoundError:
            return
        for e in entries:
            if e.name not in keep_set:
                shutil.rmtree(e.path, ignore_errors=True)

    def relink(self) -> None:
        """Give every served path its link again (after `prune`d names come back in a version)."""
        for name, path in self.links.items():
            if not self._is_ours(name) and not path.exists():
                _symlink_replace(self.current_link / name, path)

    def prune(self) -> None:
        """Remove the served links whose file the current version lacks (a bundle without its key:
        no stale key stays beside a new certificate, and none dangles)."""
        for name, path in self.links.items():
            if self._is_ours(name) and not (self.current_link / name).exists():
                path.unlink(missing_ok=True)

    def _is_ours(self, name: str) -> bool:
        try:
            return Path(os.readlink(self.links[name])) == self.current_link / name
        except OSError:
            return False

    def __repr__(self) -> str:
        return f"Slot({str(self.root)!r}, current={self.current()!r})"


def _symlink_replace(target: Path, link: Path) -> None:
    """Make `link` a symlink to `target` in one rename (a temp link beside it first)."""
    tmp = link.with_name(f".{link.name}.{secrets.token_hex(4)}.lnk")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(link.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class HostLock:
    """An exclusive `flock` on `path`, waited for up to `timeout` seconds.

    Args:
        path: the lock file (created 0600).
        timeout: how long `acquire` waits for another holder.
        sleep: how to wait between tries (injected by tests).
    """

    def __init__(self, path: Path, *, timeout: float = 600.0, sleep: Callable[[float], None] = time.sleep):
        self.path = Path(path)
        self.timeout = timeout
        self.sleep = sleep
        self._fd: BinaryIO | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self, *, what: str, step: str = "stage") -> None:
        """Take the lock, waiting up to `timeout` for another run on this host to let go.

        Raises:
            TransientDeployError: still held by another process after `timeout` seconds.
        """
        if self._fd is not None:
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A file object, not a bare descriptor: if its holder is dropped without `release`, the
        # garbage collector closes it and the kernel frees the lock, as when a process dies.
        fh = open(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), "rb", buffering=0)  # noqa: SIM115
        deadline = time.monotonic() + self.timeout
        delay = 0.02
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    fh.close()
                    raise
                if time.monotonic() >= deadline:
                    fh.close()
                    raise TransientDeployError(
                        f"{what}: another deployment run on this host holds {self.path} after "
                        f"{self.timeout:g}s; it is still working on this target — retry once it ends",
                        step=step) from None
                self.sleep(delay)
                delay = min(delay * 2, 0.5)
        self._fd = fh

    def release(self) -> None:
        """Let go of the lock (closing the file releases it)."""
        if self._fd is not None:
            fh, self._fd = self._fd, None
            fh.close()
