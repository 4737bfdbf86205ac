"""Fixtures for black-box CLI tests: an isolated $CERTPILOT_HOME, an in-process runner, PEM files."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import create_engine, inspect, text

MASTER_KEY = base64.b64encode(bytes(range(32))).decode()


@dataclass
class Run:
    """One CLI invocation: exit code, stdout, stderr (and stdout parsed, with --json)."""

    code: int
    out: str
    err: str

    @property
    def json(self):
        return json.loads(self.out)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh CERTPILOT_HOME (SQLite inventory, fixed master key) for one test."""
    from certpilot.settings import get_settings
    from certpilot.store.db import reset_engines

    h = tmp_path / "home"
    monkeypatch.setenv("CERTPILOT_HOME", str(h))
    monkeypatch.delenv("CERTPILOT_DATABASE_URL", raising=False)
    monkeypatch.setenv("CERTPILOT_MASTER_KEY", MASTER_KEY)
    get_settings.cache_clear()
    reset_engines()
    yield h
    get_settings.cache_clear()
    reset_engines()


@pytest.fixture
def cp(home, capsys) -> Callable[..., Run]:
    """Run `certpilot ARGS...` in-process; returns a `Run`."""
    from certpilot.cli import main

    def run(*args: str) -> Run:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def day(s: str) -> datetime:
    """`YYYY-MM-DD` (or a full ISO instant) as aware UTC."""
    return datetime.fromisoformat(s).replace(tzinfo=UTC) if len(s) == 10 else datetime.fromisoformat(s)


@pytest.fixture
def clock(monkeypatch) -> Callable[[str], datetime]:
    """Fix the clock the commands act at: actions take no `--at` (it is for previews and reads),
    so a test sets the time with `clock("2025-09-10T00:00:00Z")` (or a date) instead."""
    import certpilot.runtime as rt

    def set_(when: str) -> datetime:
        t = day(when) if len(when) == 10 else datetime.fromisoformat(when.replace("Z", "+00:00"))
        monkeypatch.setattr(rt, "_now", lambda: t)
        return t

    return set_


@pytest.fixture(scope="session")
def test_ca():
    """One demo CA for the whole session (real cryptography, made once)."""
    from certpilot.demo import make_ca

    return make_ca("certpilot test CA", day("2025-01-01"), 3650)


@pytest.fixture
def make_pem(tmp_path, test_ca):
    """Write a real certificate, its key and the CA chain; returns (cert, key, chain) paths."""
    from certpilot.demo import issue_leaf

    ca_key, ca_cert = test_ca
    counter = iter(range(1000))

    def make(names: list[str], not_before: str, not_after: str) -> tuple[Path, Path, Path]:
        key, cert = issue_leaf(ca_key, ca_cert, names, day(not_before), day(not_after))
        n = next(counter)
        paths = (tmp_path / f"c{n}.pem", tmp_path / f"c{n}.key", tmp_path / f"c{n}-chain.pem")
        paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[1].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        paths[1].chmod(0o600)
        paths[2].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        return paths

    return make


@pytest.fixture
def imported(cp, make_pem, clock):
    """Import a certificate through the CLI (the clock set to `at`); returns its id."""

    def imp(names: list[str], not_before: str, not_after: str, *, origin: str = "official", level: str = "DV",
            brand: str = "DigiCert", at: str = "2025-09-01T00:00:00Z") -> str:
        cert, key, chain = make_pem(names, not_before, not_after)
        clock(at)
        r = cp("import", "--cert", cert, "--key", key, "--chain", chain, "--origin", origin, "--level", level,
               "--brand", brand, "--owner", "ops@example.com", "--json")
        assert r.code == 0, r.out + r.err
        return r.json["id"]

    return imp


def row_counts(home: Path) -> dict[str, int]:
    """Rows per table of the SQLite inventory under `home` (to prove that nothing changed)."""
    engine = create_engine(f"sqlite:///{home / 'certpilot.db'}")
    try:
        with engine.connect() as conn:
            return {t: conn.execute(text(f'SELECT COUNT(*) FROM "{t}"')).scalar_one()
                    for t in inspect(conn).get_table_names()}
    finally:
        engine.dispose()
