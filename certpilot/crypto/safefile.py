"""Writing files safely where others may also write (issue 15): keys, deployed bundles, backups.

`atomic_write` creates its temp file beside the target with an unpredictable name, through a
descriptor of the parent directory opened with O_NOFOLLOW, and with
O_CREAT|O_EXCL|O_NOFOLLOW and the final mode from the first byte on: a symlink planted at a
guessed name, or in place of the directory, is never followed. The parent directory is checked
on that same descriptor (no window between check and use): it must belong to this user or
root, and not be writable by group or others unless sticky (/tmp): otherwise another user could
swap the file between our write and the server's read.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from certpilot.core.errors import PermanentError


class UnsafeLocationError(PermanentError):
    """The directory a key or bundle would be written to is not safe (owner, mode, symlink)."""


def check_directory(fd: int, where: Path) -> None:
    """Refuse a directory (given by an open descriptor) another user could write into.

    Raises:
        UnsafeLocationError: owned by another user than this one or root, or group/world
            writable without the sticky bit; the message says how to fix it.
    """
    st = os.fstat(fd)
    owner_ok = st.st_uid in (os.geteuid(), 0)
    shared = bool(st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)) and not st.st_mode & stat.S_ISVTX
    if not owner_ok or shared:
        why = (f"belongs to uid {st.st_uid}, not this user ({os.geteuid()}) or root" if not owner_ok
               else f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})")
        raise UnsafeLocationError(f"the directory {where} {why}: another user could replace what certpilot writes "
                                  f"there; `chown` it to this user and `chmod go-w {where}`, or choose another one.")


def open_directory(path: Path) -> int:
    """An O_DIRECTORY|O_NOFOLLOW descriptor of `path`, checked by `check_directory`.

    Raises:
        UnsafeLocationError: `path` is a symlink, or not safe (see `check_directory`).
        FileNotFoundError: it does not exist.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (40, 20):  # ELOOP (a symlink), ENOTDIR
            raise UnsafeLocationError(f"{path} is a symlink or not a directory: certpilot writes keys and "
                                      "bundles only into real directories; give the real path.") from None
        raise
    try:
        check_directory(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def atomic_write(path: str | Path, data: bytes, *, mode: int = 0o644) -> Path:
    """Write `data` to `path` atomically with `mode` from the first byte on (0600 for keys).

    A temp file `.<name>.<random>.tmp` in the same directory (O_EXCL|O_NOFOLLOW, relative to
    the checked directory descriptor), fsync, rename over the target, fsync the directory.

    Raises:
        UnsafeLocationError: the directory is a symlink or not safe (see `check_directory`).
        OSError: the write itself fails (no temp file is left behind).
    """
    path = Path(path)
    dfd = open_directory(path.parent)
    tmp = f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)
        try:
            os.fchmod(fd, mode)  # whatever the umask
            view = memoryview(bytes(data))
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.replace(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            os.unlink(tmp, dir_fd=dfd)
            raise
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return path


def make_private_dir(path: str | Path) -> Path:
    """Create `path` (0700) if absent and check it: owned by this user, no symlink, not shared.

    Raises:
        UnsafeLocationError: see `open_directory`.
    """
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(open_directory(path))
    return path


def offline_key_sink(directory: str | Path):
    """A sink for `PrivateCa(offline_sink=...)`: writes `<ca>-root-<key id>.offline-key` (0600) under
    `directory` (0700), to be moved offline by the operator."""

    def sink(ca_name: str, key_id: str, key_text: bytes) -> None:
        where = make_private_dir(directory)
        atomic_write(where / f"{ca_name}-root-{key_id}.offline-key", key_text, mode=0o600)

    return sink
