"""Issue 15: keys and bundles are written through unpredictable O_EXCL|O_NOFOLLOW temp files into
directories checked for owner and mode; symlinks are never followed."""

from __future__ import annotations

import os
import stat

import pytest

from certpilot.crypto.keys import write_key_file
from certpilot.crypto.safefile import UnsafeLocationError, atomic_write


def test_key_file_is_0600_and_replaces_a_symlink_instead_of_writing_through_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    d = tmp_path / "keys"
    d.mkdir(mode=0o700)
    (d / "key.pem").symlink_to(victim)
    write_key_file(d / "key.pem", b"-----BEGIN PRIVATE KEY-----\n")
    assert victim.read_text() == "untouched"
    st = os.lstat(d / "key.pem")
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert sorted(os.listdir(d)) == ["key.pem"]  # no temp file left behind


def test_a_symlinked_directory_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(UnsafeLocationError, match="is a symlink or not a directory"):
        atomic_write(tmp_path / "link" / "key.pem", b"k", mode=0o600)
    assert os.listdir(real) == []


def test_a_group_writable_directory_is_refused_a_sticky_one_is_not(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(UnsafeLocationError, match=r"is writable by group or others \(mode 0777\)"):
        atomic_write(shared / "fullchain.pem", b"c")
    os.chmod(shared, 0o1777)
    atomic_write(shared / "fullchain.pem", b"c")
    assert (shared / "fullchain.pem").read_bytes() == b"c"


def test_temp_names_are_unpredictable(tmp_path, monkeypatch):
    seen = []
    real_open = os.open

    def spy(path, flags, *a, **k):
        if str(path).endswith(".tmp"):
            seen.append((str(path), flags))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", spy)
    atomic_write(tmp_path / "a.pem", b"1")
    atomic_write(tmp_path / "a.pem", b"2")
    (first, flags), (second, _) = seen
    assert first != second and first.startswith(".a.pem.") and len(first) >= len(".a.pem.") + 16 + 4
    assert flags & os.O_EXCL and flags & os.O_NOFOLLOW and flags & os.O_CREAT
