"""Migrations: applied on first use, to every head, idempotent, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from certpilot.store import db

FOUNDATION = {"certificates", "orders", "ledger_entries", "audit_log", "keys"}


def _versions(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))}
    finally:
        engine.dispose()


def test_migrations_apply_to_every_head_and_are_idempotent(empty_store_url):
    heads = set(ScriptDirectory.from_config(db.alembic_config(empty_store_url)).get_heads())
    db.ensure_schema(empty_store_url)
    engine = create_engine(empty_store_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert FOUNDATION <= tables
    assert _versions(empty_store_url) == heads

    # A new process (engines forgotten) upgrading again changes nothing and does not fail.
    db.reset_engines()
    db.ensure_schema(empty_store_url)
    db.ensure_schema(empty_store_url)
    assert _versions(empty_store_url) == heads


def test_session_scope_migrates_on_first_use(empty_store_url):
    with db.session_scope(empty_store_url) as s:
        assert s.execute(text("SELECT count(*) FROM certificates")).scalar_one() == 0


def test_foundation_revision_is_the_root_every_area_branches_from(empty_store_url):
    script = ScriptDirectory.from_config(db.alembic_config(empty_store_url))
    assert script.get_bases() == ["0001"]
    for head in script.get_heads():
        assert "0001" in {rev.revision for rev in script.iterate_revisions(head, "base")}


def test_sqlite_pragmas_foreign_keys_wal_busy_timeout(tmp_path):
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'c.db'}"
    try:
        with db.session_scope(url, readonly=True) as s:
            assert s.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
            assert s.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
            assert s.execute(text("PRAGMA busy_timeout")).scalar_one() == db.SQLITE_BUSY_TIMEOUT_MS
    finally:
        db.reset_engines()
    assert (tmp_path / "nested" / "dir" / "c.db").exists()


def test_default_url_is_sqlite_under_certpilot_home(monkeypatch, tmp_path):
    from certpilot.settings import get_settings

    monkeypatch.setenv("CERTPILOT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CERTPILOT_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        assert db.resolve_url() == f"sqlite:///{tmp_path / 'home' / 'certpilot.db'}"
        db.ensure_schema()
        assert (tmp_path / "home" / "certpilot.db").exists()
    finally:
        db.reset_engines()
        get_settings.cache_clear()


def test_sqlite_readonly_session_does_not_block_a_writer(tmp_path):
    """A readonly session takes no write lock: another connection writes while it is open."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'r.db'}"
    try:
        with db.session_scope(url, readonly=True) as s:
            assert s.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == 0
            other = sqlite3.connect(tmp_path / "r.db", timeout=0.5, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("INSERT INTO audit_log (at, actor, entity_type, entity_id, why) "
                              "VALUES ('2025-09-10 00:00:00', 't', 'x', 'y', '')")
                other.execute("COMMIT")
            finally:
                other.close()
    finally:
        db.reset_engines()


def test_database_ahead_of_this_version_is_a_permanent_error(empty_store_url):
    """A schema stamped with a revision this code does not know is refused with advice."""
    from certpilot.core.errors import PermanentError

    db.ensure_schema(empty_store_url)
    engine = create_engine(empty_store_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM alembic_version"))
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('9999')"))
    finally:
        engine.dispose()
    db.reset_engines()
    with pytest.raises(PermanentError) as err:
        db.ensure_schema(empty_store_url)
    assert "CERTPILOT_DATABASE_URL" in str(err.value)


def test_two_first_users_migrate_once(empty_store_url):
    """Two workers starting at once on an empty database: both succeed, the schema is made once."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    barrier = threading.Barrier(2, timeout=20)

    def first_use(_):
        barrier.wait()
        db.ensure_schema(empty_store_url)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(first_use, range(2)))
    heads = set(ScriptDirectory.from_config(db.alembic_config(empty_store_url)).get_heads())
    assert _versions(empty_store_url) == heads
