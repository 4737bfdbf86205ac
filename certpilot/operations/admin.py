"""Use cases of the installation itself: bring the database schema up to date.

`certpilot db upgrade` calls `upgrade_schema`; so does anything that wants the schema ready
before its first transaction (every `Services.session()` also ensures it on first use).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from certpilot.runtime import Services


@dataclass(frozen=True)
class SchemaStatus:
    """The database a schema upgrade ran on, and the migration heads it is now at."""

    database: str
    """The database URL with its password masked (safe to print)."""
    heads: tuple[str, ...]
    """The Alembic revisions at the tip of every migration branch, sorted."""


def upgrade_schema(svc: Services) -> SchemaStatus:
    """Bring the services' database to every migration head (idempotent).

    Raises:
        TransientError: the database is unreachable or locked for longer than the busy timeout.
        PermanentError: the URL is invalid or a migration fails.
    """
    from sqlalchemy.engine import make_url

    from certpilot.store.db import ensure_schema, resolve_url, script_heads

    url = resolve_url(svc.database_url)
    ensure_schema(url)
    return SchemaStatus(database=make_url(url).render_as_string(hide_password=True),
                        heads=tuple(sorted(script_heads())))
