"""Engines, sessions and schema migrations for the store.

SQLite at `Settings().db_url` by default (under ``$CERTPILOT_HOME``); PostgreSQL when
``CERTPILOT_DATABASE_URL`` is a ``postgresql+psycopg://`` URL. The schema is brought to every
Alembic head by `ensure_schema()` on first use of a URL in the process (and by
``certpilot db upgrade``).

SQLite write concurrency: every transaction starts with ``BEGIN IMMEDIATE`` (the write lock is
taken up front, and a second writer waits up to ``busy_timeout`` instead of failing with
"database is locked" when it later tries to upgrade a read lock). Read-only work can ask for a
deferred transaction with ``session_scope(readonly=True)``; WAL lets it read while one writer
writes.
"""

from __future__ import annotations

import ast
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from certpilot.core.errors import PermanentError, TransientError
from certpilot.settings import get_settings

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for another process's write lock before giving up."""
SCHEMA_LOCK_ID = 0x6365727470696C6F  # "certpilo": PostgreSQL advisory lock for migrations

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_makers: dict[str, sessionmaker[Session]] = {}
_schema_ready: set[str] = set()
_heads: frozenset[str] | None = None


def resolve_url(url: str | None = None) -> str:
    """The URL to use: `url` if given, else the settings' (``CERTPILOT_DATABASE_URL`` or SQLite)."""
    return url or get_settings().db_url


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # The driver's own transaction handling is off; we emit BEGIN ourselves (see _sqlite_begin).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin(conn) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
    conn.exec_driver_sql(f"BEGIN {mode}")


def get_engine(url: str | None = None) -> Engine:
    """Return the process-wide engine for `url` (created once; SQLite pragmas installed).

    Args:
        url: SQLAlchemy URL; default `resolve_url()`.

    Raises:
        PermanentError: the URL cannot be parsed or names an unsupported database.
    """
    url = resolve_url(url)
    with _lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        try:
            parsed = make_url(url)
        except Exception as exc:  # noqa: BLE001 - any parse failure is a configuration error
            raise PermanentError(
                "the database URL cannot be parsed; set CERTPILOT_DATABASE_URL to a "
                "sqlite:/// or postgresql+psycopg:// URL"
            ) from exc
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                parsed,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            )
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
        elif backend == "postgresql":
            engine = create_engine(parsed, pool_pre_ping=True)
        else:
            raise PermanentError(
                f"database backend {backend!r} is not supported; use SQLite or PostgreSQL "
                "(postgresql+psycopg://...)"
            )
        _engines[url] = engine
        _makers[url] = sessionmaker(bind=engine, expire_on_commit=False)
        return engine


def alembic_config(url: str | None = None) -> Config:
    """A programmatic Alembic config (no ini file) pointing at the package's migrations."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # `%` would be read as interpolation by configparser.
    cfg.set_main_option("sqlalchemy.url", resolve_url(url).replace("%", "%%"))
    return cfg


def script_heads() -> frozenset[str]:
    """The revisions at the tip of every migration branch (read from disk once per process).

    Read from the migration files' ``revision`` / ``down_revision`` assignments, without importing
    Alembic (a quarter of a second of every command's start-up); Alembic's own reading is the
    fallback for a file that does not state them as literals.
    """
    global _heads
    if _heads is None:
        _heads = _literal_heads()
        if _heads is None:
            from alembic.script import ScriptDirectory

            _heads = frozenset(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())
    return _heads


_ASSIGN = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)


def _literal_heads() -> frozenset[str] | None:
    """Heads from the literal ``revision``/``down_revision`` of every migration file, or None when
    a file states either otherwise (then Alembic reads them)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        found = dict(m.groups() for m in _ASSIGN.finditer(path.read_text(encoding="utf-8")))
        try:
            rev = ast.literal_eval(found["revision"])
            down = ast.literal_eval(found["down_revision"])
        except (KeyError, ValueError, SyntaxError):
            return None
        if not isinstance(rev, str):
            return None
        revisions.add(rev)
        parents.update([down] if isinstance(down, str) else list(down or ()))
    return frozenset(revisions - parents) or None


def _current_heads(conn) -> frozenset[str]:
    """The revisions the database is at (none on an empty database)."""
    if not inspect(conn).has_table("alembic_version"):
        return frozenset()
    return frozenset(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def ensure_schema(url: str | None = None) -> None:
    """Upgrade the database at `url` to every Alembic head (idempotent; cheap after the first call).

    Concurrent callers are serialised: SQLite by ``BEGIN IMMEDIATE``, PostgreSQL by a
    transaction-scoped advisory lock, so two processes starting at once migrate once.

    Raises:
        TransientError: the database is unreachable or locked for longer than the busy timeout.
        PermanentError: the URL is invalid or a migration fails.
    """
    url = resolve_url(url)
    if url in _schema_ready:
        return
    engine = get_engine(url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK_ID})
            # Already at every head (the common case: a new process on a migrated database):
            # skip Alembic entirely (not even imported).
            if _current_heads(conn) != script_heads():
                _upgrade(conn, url)
    except OperationalError as exc:
        raise TransientError(
            f"the database could not be reached or stayed locked while migrating "
            f"({type(exc.orig).__name__}); retry, and check that it is running"
        ) from exc
    _schema_ready.add(url)


def _upgrade(conn, url: str) -> None:
    """Run Alembic's upgrade to every head on `conn` (Alembic is imported only here).

    Raises:
        PermanentError: a migration fails or the database is at a revision this version lacks.
    """
    from alembic import command
    from alembic.util.exc import CommandError

    cfg = alembic_config(url)
    cfg.attributes["connection"] = conn
    try:
        command.upgrade(cfg, "heads")
    except CommandError as exc:
        raise PermanentError(
            f"the database schema cannot be brought to this version's migrations ({exc}); "
            "point CERTPILOT_DATABASE_URL at a database made by this or an older certpilot"
        ) from exc


@contextmanager
def session_scope(url: str | None = None, *, readonly: bool = False) -> Iterator[Session]:
    """A session in one transaction: commit on success, rollback on error.

    Args:
        url: database URL; default `resolve_url()`. The schema is ensured on first use.
        readonly: SQLite only: start a deferred transaction (no write lock); writes are still
            possible but may then fail under contention.
    """
    url = resolve_url(url)
    ensure_schema(url)
    maker = _makers[url]
    session = maker()
    if readonly:
        session.connection(execution_options={"sqlite_begin": "DEFERRED"})
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def reset_engines() -> None:
    """Dispose every engine and forget which schemas are ready (tests, forks, URL changes)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _makers.clear()
        _schema_ready.clear()


def dispose_engine(url: str | None = None) -> None:
    """Close this process's engine for `url` and forget it (its SQLite file is about to be replaced)."""
    url = resolve_url(url)
    with _lock:
        engine = _engines.pop(url, None)
        _makers.pop(url, None)
        _schema_ready.discard(url)
    if engine is not None:
        engine.dispose()
