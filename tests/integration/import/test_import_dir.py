"""`certpilot import --dir DIR` (issue 16): a folder of good, duplicate and bad bundles.

Bundles are assembled by keys (a certificate with the private key whose public key is its own)
and chains by issuer, wherever in the folder they lie; each is imported in its own transaction
(UP-3): bad ones are refused with their exact reason and nothing of them is stored, a certificate
already in the inventory is skipped, and a second run changes nothing.
"""

from __future__ import annotations

import base64
import importlib
from datetime import UTC, datetime

import pytest
from cryptography import x509
from sqlalchemy import inspect, select, table, text

from certpilot import runtime
from certpilot.core.bulk import BulkOutcome
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.operations.bulk_import import discover, import_directory
from certpilot.operations.importing import import_bundle
from certpilot.store.db import get_engine, session_scope
from certpilot.store.repository import Repository

fleet_folder = importlib.import_module("tests.fixtures.import.fleet")

NOW = datetime(2026, 2, 1, tzinfo=UTC)
VAULT = KeyVault(LocalMasterKey(bytes(range(7, 39)), source="test"))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """The folder: three good bundles laid out three ways, one already imported, and the bad ones."""
    return fleet_folder.write_fleet(tmp_path_factory.mktemp("fleet"))


def snapshot(url: str) -> dict[str, list[tuple]]:
    names = inspect(get_engine(url)).get_table_names()
    with session_scope(url, readonly=True) as s:
        return {n: sorted(map(tuple, s.execute(select(text("*")).select_from(table(n)))), key=repr)
                for n in names if n != "alembic_version"}


REFUSED = fleet_folder.REFUSED


def test_up3_import_dir_good_duplicate_and_bad_bundles(fleet, tmp_path):
    """UP-3: every good bundle imported with its key and chain, the one already there skipped,
    each bad file refused with its exact reason and nothing of it stored; a second run imports
    nothing and changes nothing."""
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    svc = runtime.local_services(database_url=url, vault=VAULT, clock=lambda: NOW)
    d = fleet["d"]
    before = import_bundle(svc, cert_pem=d.cert_pem, key_pem=d.key_pem, chain_pem=fleet["inter"].cert_pem)
    seen: list[tuple[int, int]] = []

    report = import_directory(svc, fleet["root"], progress=lambda n, total: seen.append((n, total)))

    assert report.counts == {"imported": 3, "skipped": 1, "refused": 7}
    assert report.ignored == ("README.txt",)
    assert seen == [(6, 6)]  # a, b, c, d, weak and nosan: assembled, then imported (one batch)
    got = {tuple(sorted(r.files)): r.reason for r in report.of(BulkOutcome.REFUSED)}
    assert got == REFUSED
    assert all(r.rule == "UP-3" and r.message for r in report.of(BulkOutcome.REFUSED))
    skipped = report.of(BulkOutcome.SKIPPED)
    assert [(r.files, r.certificate_id) for r in skipped] == [(("d/cert.pem", "a/chain.pem", "d/key.pem"),
                                                             before.certificate.id)]
    imported = {r.common_name: r for r in report.of(BulkOutcome.IMPORTED)}
    assert set(imported) == {"a.example.test", "b.example.test", "c.example.test"}
    assert imported["a.example.test"].files == ("a/cert.pem", "a/fullchain.pem", "a/privkey.pem")
    with session_scope(url, readonly=True) as s:
        repo = Repository(s)
        stored = {c.fingerprint_sha256 for c in map(repo.certificate_model, (r[0] for r in repo.status_rows()))}
        assert stored == {fleet[n].fingerprint for n in "abcd"}  # nothing of a refused bundle
        for name, r in imported.items():
            row = repo.get_certificate(r.certificate_id)
            assert row.key_held and row.key_id, name
            chain = x509.load_pem_x509_certificates(row.chain_pem.encode())
            assert [c.subject for c in chain] == [fleet["inter"].cert.subject], name
    after_first = snapshot(url)

    again = import_directory(svc, fleet["root"])

    assert again.counts == {"imported": 0, "skipped": 4, "refused": 7}
    assert snapshot(url) == after_first


def test_discover_names_bundles_by_reference_without_key_material(fleet):
    """A found bundle is paths and block positions only (it may be a task parameter, CSR-5)."""
    found = discover(fleet["root"])
    a = next(b for b in found.bundles if b.common_name == "a.example.test")
    assert (a.leaf.path, a.leaf.index) == ("a/fullchain.pem", 0)  # the copy followed by its chain
    assert [(r.path, r.index) for r in a.chain] == [("a/fullchain.pem", 1)]
    assert (a.key.path, a.key.index) == ("a/privkey.pem", 0)
    assert "PRIVATE" not in repr(found)


def test_cli_import_dir_reports_and_exits_3_when_something_was_refused(fleet, tmp_path, monkeypatch, capsys):
    """`certpilot import --dir DIR --json`: the report per outcome; exit 3 (refused) while the
    good bundles are imported; `--dir` with `--cert` is a usage error."""
    import json

    from certpilot.cli import main
    from certpilot.settings import get_settings
    from certpilot.store.db import reset_engines

    monkeypatch.setenv("CERTPILOT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CERTPILOT_DATABASE_URL", raising=False)
    monkeypatch.setenv("CERTPILOT_MASTER_KEY", base64.b64encode(bytes(range(32))).decode())
    monkeypatch.setattr(runtime, "_now", lambda: NOW)
    get_settings.cache_clear()
    reset_engines()
    try:
        capsys.readouterr()
        assert main(["import", "--dir", str(fleet["root"]), "--json"]) == 3
        out = json.loads(capsys.readouterr().out)
        assert out["counts"] == {"imported": 4, "skipped": 0, "refused": 7}
        assert {tuple(sorted(r["files"])): r["reason"] for r in out["refused"]} == REFUSED
        assert main(["import", "--dir", str(fleet["root"]), "--cert", "x.pem"]) == 2
    finally:
        get_settings.cache_clear()
        reset_engines()
