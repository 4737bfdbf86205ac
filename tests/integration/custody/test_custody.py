"""Key custody (issue 15): two local master keys at once, rewrap local→local / local→KMS / KMS→KMS
(KMS on moto_server), rewrap and restore killed midway (every key still opens), backup/restore
verified by opening every key, the master key file's owner and mode checked on its descriptor.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from certpilot.core.errors import BadInputError, RefusedError
from certpilot.crypto.kms import KmsMasterKey
from certpilot.crypto.vault import KeyVault, LocalMasterKey, VaultError, key_aad
from certpilot.operations import custody
from certpilot.store.db import dispose_engine, ensure_schema, session_scope
from certpilot.store.repository import Repository

ROOT = Path(__file__).resolve().parents[3]
OLD, NEW = LocalMasterKey(bytes(range(32)), "old"), LocalMasterKey(bytes(range(1, 33)), "new")
PURPOSES = ("tls-key", "acme-account", "ca", "tls-key", "tls-key", "ca")


def populate(url: str, vault: KeyVault) -> dict[str, tuple[str, str, bytes]]:
    """Six sealed keys of every purpose: {key_id: (public fingerprint, purpose, plaintext)}."""
    ensure_schema(url)
    out = {}
    with session_scope(url) as s:
        repo = Repository(s)
        for i, purpose in enumerate(PURPOSES):
            fp, secret = f"{i:064x}", f"private key {i}".encode()
            key_id = repo.put_key(vault.seal(secret, key_aad(fp, purpose)), "EC-P256", fp)
            out[key_id] = (fp, purpose, secret)
    return out


def all_open(url: str, keys: dict, vault: KeyVault) -> bool:
    with session_scope(url, readonly=True) as s:
        repo = Repository(s)
        return all(vault.open(repo.get_sealed_key(k), key_aad(fp, p)) == secret for k, (fp, p, secret) in keys.items())


@pytest.fixture
def store(tmp_path):
    url = f"sqlite:///{tmp_path / 'certpilot.db'}"
    keys = populate(url, KeyVault(OLD))
    yield url, keys
    dispose_engine(url)


def test_two_local_master_keys_open_what_each_sealed():
    """Issue 15's reproduction: KeyVault(new, old) kept only one provider per name; both open now."""
    a, b = KeyVault(OLD).seal(b"a", b"x"), KeyVault(NEW).seal(b"b", b"x")
    both = KeyVault(NEW, OLD)
    assert (both.open(a, b"x"), both.open(b, b"x")) == (b"a", b"b")
    with pytest.raises(VaultError, match="sealed under master key id"):
        KeyVault(NEW).open(a, b"x")


def test_rewrap_local_to_local_moves_every_key_without_touching_ciphertext(store):
    url, keys = store
    with session_scope(url, readonly=True) as s:
        before = {k: Repository(s).get_sealed_key(k).ciphertext for k in keys}
    report = custody.rewrap_keys(url, KeyVault(NEW, OLD))
    assert (report.total, report.rewrapped, report.already, report.check.ok) == (6, 6, 0, True)
    assert all_open(url, keys, KeyVault(NEW))
    with session_scope(url, readonly=True) as s:
        assert {k: Repository(s).get_sealed_key(k).ciphertext for k in keys} == before
    again = custody.rewrap_keys(url, KeyVault(NEW, OLD))
    assert (again.rewrapped, again.already) == (0, 6)


KILL_AFTER = """
import os, signal, sys
sys.path.insert(0, {root!r})
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.operations import custody
done = []
def on_key(key_id):
    done.append(key_id)
    if len(done) == {n}:
        os.kill(os.getpid(), signal.SIGKILL)
custody.rewrap_keys({url!r}, KeyVault(LocalMasterKey(bytes(range(1, 33))), LocalMasterKey(bytes(range(32)))),
                    on_key=on_key)
"""


def test_rewrap_killed_midway_leaves_every_key_openable_and_resumes(store):
    """Fault test: SIGKILL after 3 of 6 keys; every key opens with old+new, a rerun finishes."""
    url, keys = store
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER.format(root=str(ROOT), n=3, url=url)], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    with session_scope(url, readonly=True) as s:
        providers = [Repository(s).get_sealed_key(k).wrapped_dek[1:5].hex() for k in keys]
    assert sorted(providers) == sorted([NEW.key_id] * 3 + [OLD.key_id] * 3)
    assert all_open(url, keys, KeyVault(NEW, OLD))
    report = custody.rewrap_keys(url, KeyVault(NEW, OLD))
    assert (report.rewrapped, report.already, report.check.ok) == (3, 3, True)


@pytest.fixture(scope="module")
def kms(moto_server):
    client = moto_server.client("kms")
    ids = [client.create_key(Description=f"certpilot custody {i}")["KeyMetadata"]["KeyId"] for i in range(2)]
    return [KmsMasterKey(client, k) for k in ids]


def test_rewrap_local_to_kms_then_kms_to_kms(store, kms):
    """local → KMS, then KMS key 1 → KMS key 2 (moto_server): each key opens with the new key alone."""
    url, keys = store
    first, second = kms
    to_kms = custody.rewrap(SimpleNamespace(database_url=url, vault=KeyVault(first, OLD)))
    assert (to_kms.provider, to_kms.rewrapped, to_kms.check.ok) == ("aws-kms", 6, True)
    assert all_open(url, keys, KeyVault(first))
    moved = custody.rewrap(SimpleNamespace(database_url=url, vault=KeyVault(second, first)))
    assert (moved.rewrapped, moved.check.ok) == (6, True)
    assert all_open(url, keys, KeyVault(second))
    with pytest.raises(VaultError):
        all_open(url, keys, KeyVault(first))


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "master.key").write_bytes(__import__("base64").b64encode(bytes(range(32))) + b"\n")
    os.chmod(home / "master.key", 0o600)
    return home


def test_rotate_local_master_key_and_retire(store, tmp_path):
    url, keys = store
    home = _home(tmp_path)
    svc = SimpleNamespace(database_url=url, vault=KeyVault(OLD))
    report = custody.rotate_local(svc, home, env={})
    assert report.old_key_id == OLD.key_id and report.rewrap.check.ok
    current = LocalMasterKey.from_file(home / "master.key", create=False)
    assert current.key_id == report.new_key_id != OLD.key_id
    assert sorted(p.name for p in home.iterdir()) == ["master.key", f"master.key.retired-{OLD.key_id}"]
    assert all_open(url, keys, KeyVault(current))
    removed = custody.retire_old_keys(SimpleNamespace(database_url=url, vault=KeyVault(current)), home)
    assert removed == (f"master.key.retired-{OLD.key_id}",) and all_open(url, keys, KeyVault(current))


def test_rotate_refused_for_an_environment_master_key(store, tmp_path):
    url, _ = store
    with pytest.raises(RefusedError, match="comes from CERTPILOT_MASTER_KEY"):
        custody.rotate_local(SimpleNamespace(database_url=url, vault=KeyVault(OLD)), _home(tmp_path),
                             env={"CERTPILOT_MASTER_KEY": "x"})


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_backup_and_restore_verified_by_opening_every_key(store, tmp_path):
    url, keys = store
    db = Path(url.removeprefix("sqlite:///"))
    svc = SimpleNamespace(database_url=url, vault=KeyVault(OLD))
    out = tmp_path / "backup"
    r = custody.backup(svc, out, home=tmp_path / "home")
    assert (r.keys, r.master_key_ids) == (6, (OLD.key_id,))
    assert sorted(p.name for p in out.iterdir()) == ["certpilot.db", "manifest.json"]
    assert oct(out.stat().st_mode & 0o777) == "0o700" and oct((out / "certpilot.db").stat().st_mode & 0o777) == "0o600"
    master_b64 = __import__("base64").b64encode(bytes(range(32)))
    assert not any(master_b64 in f.read_bytes() or bytes(range(32)) in f.read_bytes() for f in out.iterdir())
    with session_scope(url) as s:  # the live database moves on after the backup
        Repository(s).put_key(KeyVault(OLD).seal(b"later", key_aad("f" * 64)), "EC-P256", "f" * 64)
    # A restore with the wrong master key is refused and changes nothing.
    before = _sha(db)
    with pytest.raises(RefusedError, match="6 of the backup's 6 key"):
        custody.restore(SimpleNamespace(database_url=url, vault=KeyVault(NEW)), out)
    assert _sha(db) == before
    done = custody.restore(svc, out)
    assert done.check.ok and done.check.total == 6 and Path(done.previous).exists()
    assert all_open(url, keys, KeyVault(OLD))
    with session_scope(url, readonly=True) as s:
        from certpilot.store.key_queries import key_ids

        assert len(key_ids(s)) == 6


def test_restore_refuses_a_tampered_backup_and_a_backup_into_home(store, tmp_path):
    url, _ = store
    svc = SimpleNamespace(database_url=url, vault=KeyVault(OLD))
    out = tmp_path / "b"
    custody.backup(svc, out)
    with open(out / "certpilot.db", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(BadInputError, match="does not match its manifest"):
        custody.restore(svc, out)
    home = tmp_path / "h"
    home.mkdir()
    with pytest.raises(BadInputError, match="is CERTPILOT_HOME, where the master key is"):
        custody.backup(svc, home, home=home)


KILL_RESTORE = """
import os, signal, sys
sys.path.insert(0, {root!r})
from types import SimpleNamespace
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.operations import custody
custody.restore(SimpleNamespace(database_url={url!r}, vault=KeyVault(LocalMasterKey(bytes(range(32))))),
                {backup!r}, before_swap=lambda: os.kill(os.getpid(), signal.SIGKILL))
"""


def test_restore_killed_before_the_swap_leaves_the_database_as_it_was(store, tmp_path):
    """Fault test: SIGKILL just before the rename; the live database is unchanged and every key opens."""
    url, keys = store
    db = Path(url.removeprefix("sqlite:///"))
    out = tmp_path / "backup"
    custody.backup(SimpleNamespace(database_url=url, vault=KeyVault(OLD)), out)
    dispose_engine(url)
    before = _sha(db)
    code = textwrap.dedent(KILL_RESTORE.format(root=str(ROOT), url=url, backup=str(out)))
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == -signal.SIGKILL
    assert _sha(db) == before and all_open(url, keys, KeyVault(OLD))
    assert custody.restore(SimpleNamespace(database_url=url, vault=KeyVault(OLD)), out).check.ok


def test_master_key_file_symlink_foreign_mode_refused(tmp_path):
    home = _home(tmp_path)
    link = tmp_path / "link.key"
    link.symlink_to(home / "master.key")
    with pytest.raises(VaultError, match="cannot be opened"):
        LocalMasterKey.from_file(link)
    os.chmod(home / "master.key", 0o640)
    with pytest.raises(VaultError, match=r"accessible by group or others \(mode 0640\)"):
        LocalMasterKey.from_file(home / "master.key")


KILL_ROTATE = """
import os, signal, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from types import SimpleNamespace
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.operations import custody
done = []
def on_key(key_id):
    done.append(key_id)
    if len(done) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
custody.rotate_local(SimpleNamespace(database_url={url!r}, vault=KeyVault(LocalMasterKey(bytes(range(32))))),
                     Path({home!r}), env={{}}, on_key=on_key)
"""


def test_rotate_killed_midway_every_process_still_opens_every_key(store, tmp_path):
    """Fault test: a rotation killed after 2 rewraps; the default vault (master.key + master.key.next)
    opens every key; running the rotation again finishes it."""
    from certpilot.crypto.vault import default_vault
    from certpilot.settings import Settings

    url, keys = store
    home = _home(tmp_path)
    code = KILL_ROTATE.format(root=str(ROOT), url=url, home=str(home))
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == -signal.SIGKILL
    assert sorted(p.name for p in home.iterdir()) == ["master.key", "master.key.next"]
    assert all_open(url, keys, default_vault(Settings(home=home, master_key=None)))
    report = custody.rotate_local(SimpleNamespace(database_url=url, vault=KeyVault(OLD)), home, env={})
    assert report.rewrap.check.ok and all_open(url, keys, default_vault(Settings(home=home, master_key=None)))
