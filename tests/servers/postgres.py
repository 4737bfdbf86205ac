"""PostgreSQL 15 for the test suite: one server per session, an empty database per test.

The cluster lives in a temp dir owned by the `postgres` user (initdb refuses to run as root),
listens on 127.0.0.1 on a free port, runs with fsync off, and is stopped with
``pg_ctl -m fast stop`` at teardown and at interpreter exit. `store_url` gives each test an
empty database: one database migrated once per session, every table emptied before each test
(cloning a database per test costs 50-400 ms; a wipe costs a few ms). `empty_store_url` gives a
really new database without schema, for migration tests.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers.base import free_port, missing

PG_BIN = Path("/usr/lib/postgresql/15/bin")
STORE_DB = "certpilot_store"


def _pg_bin(name: str) -> str | None:
    path = PG_BIN / name
    if os.access(path, os.X_OK):
        return str(path)
    return shutil.which(name)


def _run(argv: list[str], *, user: str | None) -> subprocess.CompletedProcess:
    kwargs: dict = {}
    if user is not None and os.geteuid() == 0:
        kwargs["user"] = user
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, **kwargs)


@dataclass
class PostgresServer:
    """A running PostgreSQL cluster we own."""

    port: int
    root: Path
    pg_ctl: str
    user: str | None
    _stopped: bool = field(default=False, repr=False)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str) -> str:
        """SQLAlchemy URL (psycopg 3) of one database on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database `name` (optionally cloned from `template`) and return its URL."""
        clause = f" TEMPLATE {template}" if template else " TEMPLATE template0"
        self._admin(f'CREATE DATABASE "{name}"{clause}')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name`, disconnecting whoever still holds it."""
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Fast shutdown (disconnects clients) and remove the cluster's files."""
        if self._stopped:
            return
        self._stopped = True
        _run([self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"], user=self.user)
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """initdb + pg_ctl start in a fresh temp dir; raises FileNotFoundError/RuntimeError."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise FileNotFoundError("initdb/pg_ctl (PostgreSQL 15 server binaries)")
    user = "postgres" if os.geteuid() == 0 else None
    # Not under pytest's tmp dir: that is 0700 root, and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="certpilot-pg-"))
    sock = root / "sock"
    sock.mkdir()
    log = root / "postgres.log"
    log.touch()
    if user is not None:
        shutil.chown(root, user)
        shutil.chown(sock, user)
        shutil.chown(log, user)
    data = root / "data"
    done = _run([initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"], user=user)
    if done.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {done.stderr[-2000:]}")
    port = free_port()
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off -c full_page_writes=off"
    server = PostgresServer(port=port, root=root, pg_ctl=pg_ctl, user=user)
    atexit.register(server.stop)
    done = _run([pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "30", "-o", opts, "start"], user=user)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        server.stop()
        raise RuntimeError(f"pg_ctl start failed: {done.stderr[-1000:]}\n{tail}")
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL 15 server for the session (skipped without binaries; fails in CI)."""
    try:
        server = start_postgres()
    except (FileNotFoundError, RuntimeError, OSError) as exc:
        missing(f"PostgreSQL 15 ({exc})")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """URL of an empty database ``certpilot_test`` on the session's server."""
    return postgres_server.create_database("certpilot_test")


@pytest.fixture(scope="session")
def _postgres_store(postgres_server: PostgresServer) -> str:
    """A database migrated to every head once per session; each test gets it emptied."""
    from certpilot.store import db

    url = postgres_server.create_database(STORE_DB)
    db.ensure_schema(url)
    return url


def wipe_database(server: PostgresServer, database: str) -> None:
    """Delete every row of every table but ``alembic_version`` (ends other sessions first).

    Much faster than cloning a database per test (cloning writes the whole template, 50-400 ms);
    foreign keys are ignored while deleting (``session_replication_role = replica``).
    """
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=server.port, user="postgres", dbname=database,
                         autocommit=True) as conn:
        # A test's leftover session (a failed thread) must not hold locks the wipe waits for.
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")]
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            for table in tables:
                conn.execute(f'DELETE FROM "{table}"')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> Iterator[str]:
    """A fresh, empty database with the schema applied (`ensure_schema`), SQLite and PostgreSQL."""
    from certpilot.store import db

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        db.ensure_schema(url)
        yield url
        db.reset_engines()
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = request.getfixturevalue("_postgres_store")
    wipe_database(server, STORE_DB)
    db.ensure_schema(url)
    yield url
    db.reset_engines()


def _unique_name() -> str:
    return "t_" + uuid.uuid4().hex[:16]


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_store_url(request, tmp_path) -> Iterator[str]:
    """A fresh database with no schema at all (for migration tests), SQLite and PostgreSQL."""
    from certpilot.store import db

    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sub' / 'empty.db'}"
        db.reset_engines()
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = _unique_name()
    url = server.create_database(name)
    yield url
    db.reset_engines()
    server.drop_database(name)
