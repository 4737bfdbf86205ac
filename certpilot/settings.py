"""Where certpilot keeps its state and which defaults it runs with (pydantic-settings).

Environment variables prefixed ``CERTPILOT_`` override the defaults; `config/` holds data files.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config"


class Settings(BaseSettings):
    """certpilot's process settings."""

    model_config = SettingsConfigDict(env_prefix="CERTPILOT_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".local" / "share" / "certpilot")
    """State directory: SQLite inventory, master key file, private CA, deploy bundles."""
    database_url: str | None = None
    """SQLAlchemy URL; default SQLite under `home`. PostgreSQL: postgresql+psycopg://..."""
    master_key: SecretStr | None = None
    """Base64 32-byte key-vault master key; default a 0600 file under `home`."""
    config_dir: Path = REPO_CONFIG
    """Directory of data files (CA/B schedule, demo inventory, defaults)."""

    @property
    def db_url(self) -> str:
        """The effective database URL."""
        return self.database_url or f"sqlite:///{self.home / 'certpilot.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process (tests clear the cache when they change the env)."""
    return Settings()
