"""Child processes get an allow-listed environment (issue 9, locked down): nginx's check and
reload, post-deploy commands; and CERTPILOT_HOME is private (0700)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from certpilot.adapters.deploy.base import DeployMaterial
from certpilot.adapters.deploy.files import FilesTarget
from certpilot.adapters.deploy.nginx import PemFilesTarget
from certpilot.childenv import child_env, is_secret_name
from certpilot.core.errors import PermanentError
from certpilot.settings import ensure_home
from tests.integration.serve.conftest import PARENT_SECRETS
from tests.servers.certs import make_leaf
from tests.servers.nginx import DEFAULT_NAMES

DUMP_ENV = ["sh", "-c", 'env > "$0"; exec "$@"']
"""argv prefix: write the command's environment to the file named next, then run the rest."""


@pytest.fixture
def secrets_in_env(monkeypatch):
    """The worker's environment holds every kind of secret."""
    for name, value in PARENT_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")


def _dumped(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def _assert_clean(env: dict[str, str]) -> None:
    assert sorted(name for name in PARENT_SECRETS if name in env) == []
    assert not [v for v in env.values() if v in PARENT_SECRETS.values()]
    assert env["PATH"] == os.environ["PATH"]
    assert env["LC_ALL"] == "C.UTF-8"


def test_lock_child_env_is_an_allow_list():
    """Only the base list, the locale and what the caller names; a secret-looking name is never
    inherited through a prefix, only by its exact name or as an explicit value."""
    environ = {"PATH": "/bin", "HOME": "/h", "LC_TIME": "C", "CERTPILOT_MASTER_KEY": "k", "AWS_REGION": "r",
               "DATABASE_URL": "postgresql://u:p@h/d", "PREFECT_SERVER_LOGGING_LEVEL": "INFO",
               "PREFECT_SERVER_ENCRYPTION_KEY": "fernet", "PREFECT_SERVER_DATABASE_PASSWORD": "pw",
               "PREFECT_API_AUTH_STRING": "a:b", "EDITOR": "vi"}
    assert child_env(environ=environ) == {"PATH": "/bin", "HOME": "/h", "LC_TIME": "C"}
    assert child_env({"X": "1"}, keep=("PREFECT_SERVER_", "PREFECT_SERVER_DATABASE_PASSWORD"), environ=environ) == {
        "PATH": "/bin", "HOME": "/h", "LC_TIME": "C", "PREFECT_SERVER_LOGGING_LEVEL": "INFO",
        "PREFECT_SERVER_DATABASE_PASSWORD": "pw", "X": "1"}
    assert [n for n in environ if is_secret_name(n)] == [
        "CERTPILOT_MASTER_KEY", "AWS_REGION", "PREFECT_SERVER_ENCRYPTION_KEY", "PREFECT_SERVER_DATABASE_PASSWORD",
        "PREFECT_API_AUTH_STRING"]


def test_lock_post_deploy_command_gets_no_secret(secrets_in_env, nginx_ca, tmp_path):
    """A files target's post-deploy command runs without the worker's secrets."""
    leaf = make_leaf(nginx_ca, ["post.example.test"])
    dump = tmp_path / "post.env"
    target = FilesTarget("t-files", tmp_path / "bundle", post_command=[*DUMP_ENV, str(dump), "true"])
    target.stage(DeployMaterial.from_pems("c-1", leaf.fullchain_pem, key=lambda: leaf.key_pem))
    target.validate()
    target.commit()
    target.reload()
    target.finalize()
    _assert_clean(_dumped(dump))
    assert (tmp_path / "bundle" / "fullchain.pem").read_bytes() == leaf.fullchain_pem


@pytest.mark.servers
def test_lock_nginx_check_and_reload_get_no_secret(secrets_in_env, nginx_factory, nginx_ca, tmp_path):
    """`nginx -t` and `nginx -s reload` of an nginx target run (for real) without the worker's secrets."""
    server = nginx_factory()
    leaf = make_leaf(nginx_ca, list(DEFAULT_NAMES))
    check, reload = tmp_path / "check.env", tmp_path / "reload.env"
    target = PemFilesTarget(
        "t-nginx", [{"cert": str(server.cert_path(n)), "key": str(server.key_path(n))} for n in DEFAULT_NAMES],
        check_argv=[*DUMP_ENV, str(check), *server.check_argv()],
        reload_argv=[*DUMP_ENV, str(reload), *server.reload_argv()], timeout=10)
    target.stage(DeployMaterial.from_pems("c-2", leaf.fullchain_pem, key=lambda: leaf.key_pem))
    target.validate()
    target.commit()
    target.reload()
    target.finalize()
    _assert_clean(_dumped(check))
    _assert_clean(_dumped(reload))
    assert server.cert_path(DEFAULT_NAMES[0]).read_bytes() == leaf.fullchain_pem


def test_lock_home_created_0700(tmp_path):
    """A new CERTPILOT_HOME is 0700 whatever the umask."""
    old = os.umask(0o022)
    try:
        assert ensure_home(tmp_path / "a" / "home") is None
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "home").stat().st_mode) == 0o700


def test_lock_existing_home_tightened(tmp_path):
    """An existing home of ours with group/world bits is made 0700, and the operator told."""
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o755)
    assert ensure_home(home) == f"CERTPILOT_HOME {home} was mode 0755; made it 0700 (it holds keys)"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert ensure_home(home) is None


def test_lock_home_not_a_directory_or_not_ours_refused(tmp_path):
    """A file, or a directory of another user, is refused."""
    (tmp_path / "file").write_text("")
    with pytest.raises(PermanentError, match="is not a directory"):
        ensure_home(tmp_path / "file")
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    os.chown(other, 65534, 65534)
    with pytest.raises(PermanentError, match="belongs to uid 65534, not to you"):
        ensure_home(other)
