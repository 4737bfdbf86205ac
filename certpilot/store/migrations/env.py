"""Alembic environment for certpilot, driven programmatically by `certpilot.store.db`.

`ensure_schema()` passes an open connection in ``config.attributes["connection"]`` (already
inside a transaction that holds the schema lock); this file only runs the migrations on it.
Each area adds its own revision branching from ``0001``, so there are several heads: the
caller upgrades to "heads". Only the foundation tables are imported here, for autogenerate
hints; other areas' table modules are deliberately not imported (their migrations are explicit).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from certpilot.store import tables  # noqa: F401 - registers the foundation tables on Base
from certpilot.store.base import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run on the caller's connection, or open one from ``sqlalchemy.url``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
