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
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import inspect, select, table, text

from certpilot import runtime
from certpilot.core.bulk import BulkOutcome
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.operations.bulk_import import discover, import_directory
from certpilot.operations.importing import import_bundle
from certpilot.store.db import get_engine, session_scope
from certpilot.store.repository import Repository

certs = importlib.import_module("tests.servers.certs")
pki = importlib.import_module("tests.fixtures.import.pki")

NOW = datetime(2026, 2, 1, tzinfo=UTC)
VAULT = KeyVault(LocalMasterKey(bytes(range(7, 39)), source="test"))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """The folder: three good bundles laid out three ways, one already imported, and the bad ones."""
    root = tmp_path_factory.mktemp("fleet")
    ca = certs.make_ca("Fleet Root")
    inter = certs.make_ca("Fleet Intermediate", issuer=ca)
    a, b, c, d, e = (certs.make_leaf(inter, [f"{n}.example.test"]) for n in "abcde")
    # certbot's layout: cert + chain + fullchain + privkey (the leaf twice: one bundle)
    _write(root / "a/cert.pem", a.cert_pem)
    _write(root / "a/chain.pem", inter.cert_pem)
    _write(root / "a/fullchain.pem", a.fullchain_pem)
    _write(root / "a/privkey.pem", a.key_pem)
    # a full chain file and a key of another name
    _write(root / "b/fullchain.pem", b.fullchain_pem)
    _write(root / "b/b.example.test.key", b.key_pem)
    # flat files, the intermediate in a shared folder elsewhere (linked by issuer)
    _write(root / "flat/c.crt", c.cert_pem)
    _write(root / "flat/c.key", c.key_pem)
    _write(root / "shared/intermediate.pem", inter.cert_pem)
    # already in the inventory before the run
    _write(root / "d/cert.pem", d.cert_pem)
    _write(root / "d/key.pem", d.key_pem)
    # bad: DER certificate (and so its key is left without a certificate)
    _write(root / "bad/der/cert.der", e.cert.public_bytes(serialization.Encoding.DER))
    _write(root / "bad/der/key.pem", e.key_pem)
    # bad: an encrypted key (no passphrase given): the key and its certificate are refused
    enc = certs.make_leaf(inter, ["enc.example.test"])
    _write(root / "bad/enc/cert.pem", enc.cert_pem)
    _write(root / "bad/enc/key.pem", _encrypted(enc.key_pem))
    # bad: a 1024-bit RSA key (UP-3 weak key) and a certificate without SAN
    weak, nosan = pki.corpus()["rsa1024"], pki.corpus()["no_san"]
    _write(root / "bad/weak/cert.pem", weak.cert)
    _write(root / "bad/weak/key.pem", weak.key)
    _write(root / "bad/weak/chain.pem", weak.chain)
    _write(root / "bad/nosan/cert.pem", nosan.cert)
    _write(root / "bad/nosan/key.pem", nosan.key)
    _write(root / "bad/nosan/chain.pem", nosan.chain)
    # bad: a truncated PEM file; not a certificate at all: ignored
    _write(root / "bad/truncated.pem", a.cert_pem[: len(a.cert_pem) // 2])
    _write(root / "README.txt", b"certificates of the fleet\n")
    return {"root": root, "a": a, "b": b, "c": c, "d": d, "inter": inter}


def _encrypted(key_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(b"secret"))


def snapshot(url: str) -> dict[str, list[tuple]]:
    names = inspect(get_engine(url)).get_table_names()
    with session_scope(url, readonly=True) as s:
        return {n: sorted(map(tuple, s.execute(select(text("*")).select_from(table(n)))), key=repr)
                for n in names if n != "alembic_version"}


REFUSED = {  # file(s) -> UP-3 reason
    ("bad/der/cert.der",): "BadPem",
    ("bad/der/key.pem",): "KeyMismatch",
    ("bad/enc/key.pem",): "EncryptedKey",
    ("bad/enc/cert.pem", "bad/enc/key.pem"): "EncryptedKey",
    ("bad/truncated.pem",): "BadPem",
    ("bad/weak/cert.pem", "bad/weak/chain.pem", "bad/weak/key.pem"): "WeakKey",
    ("bad/nosan/cert.pem", "bad/nosan/chain.pem", "bad/nosan/key.pem"): "NoSan",
}


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
    assert seen[-1] == (6, 6)  # a, b, c, d, weak and nosan: assembled, then imported one by one
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
