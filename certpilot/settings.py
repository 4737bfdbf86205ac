"""Where certpilot keeps its state and which defaults it runs with (pydantic-settings).

Environment variables prefixed ``CERTPILOT_`` override the defaults; `config/` holds data files.
Also here: the private state directory (`ensure_home`, 0700).
"""

from __future__ import annotations

import os
import stat
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from certpilot.core.errors import PermanentError
from certpilot.resources import data_path

REPO_CONFIG = data_path("config")
"""The checkout's config/, or the copy a wheel carries (certpilot.resources)."""


class Settings(BaseSettings):
    """certpilot's process settings."""

    model_config = SettingsConfigDict(env_prefix="CERTPILOT_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".local" / "share" / "certpilot")
    """State directory (0700): SQLite inventory, master key file, private CA, deploy bundles, the
    Prefect API auth string of `certpilot up`."""
    database_url: str | None = None
    """SQLAlchemy URL; default SQLite under `home`. PostgreSQL: postgresql+psycopg://..."""
    master_key: SecretStr | None = None
    """Base64 32-byte key-vault master key; default a 0600 file under `home`."""
    config_dir: Path = REPO_CONFIG
    """Directory of data files (CA/B schedule, demo inventory, defaults)."""
    prefect_port: int = 4200
    """Loopback port of the Prefect server (API and UI) that `certpilot up` starts."""
    launch_mode: str | None = None
    """How the scanner runs renewals (`flows.launch`): inline, in-process or workers; default
    in-process when the renewal deployment exists on the API, else inline."""
    launch_threads: int = 8
    """Renewal runs executed at once by one in-process launcher (the scan, or a renewal-batch run)."""
    launch_batch_size: int = 25
    """Renewals per renewal-batch run in workers mode (one process start per batch)."""

    @property
    def db_url(self) -> str:
        """The effective database URL."""
        return self.database_url or f"sqlite:///{self.home / 'certpilot.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process (tests clear the cache when they change the env)."""
    return Settings()


def ensure_home(path: Path) -> str | None:
    """Create the state directory 0700, or make an existing one of ours 0700.

    An existing directory with group/world bits is tightened rather than refused: it holds the
    master key, sealed keys and the API auth string, and the owner loses nothing by the chmod
    (an older certpilot, or the SQLite store, created it 0755). A directory owned by another
    user is refused: its owner could replace the files certpilot trusts.

    Args:
        path: the directory (CERTPILOT_HOME).

    Returns:
        A sentence saying what was tightened (for the operator), or None when nothing changed.

    Raises:
        PermanentError: the path is not a directory, or belongs to another user.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)  # mkdir's mode is masked by the umask; state it exactly
        return None
    except FileExistsError:
        pass
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise PermanentError(f"CERTPILOT_HOME {path} is not a directory")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise PermanentError(f"CERTPILOT_HOME {path} belongs to uid {st.st_uid}, not to you (uid {os.getuid()}): "
                             "certpilot keeps keys there; point CERTPILOT_HOME at a directory of your own")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077 == 0:
        return None
    os.chmod(path, 0o700)
    return f"CERTPILOT_HOME {path} was mode {mode:04o}; made it 0700 (it holds keys)"
