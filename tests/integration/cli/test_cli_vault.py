"""`certpilot vault check|rotate|retire`, `certpilot backup` and `certpilot restore` from the command line
(issue 15): an imported key survives a rotation and a backup/restore, checked by opening it."""

from __future__ import annotations

import pytest


@pytest.fixture
def file_key_home(home, monkeypatch):
    """CERTPILOT_HOME whose master key is the 0600 file (created on first use), not the variable."""
    monkeypatch.delenv("CERTPILOT_MASTER_KEY", raising=False)
    return home


def test_vault_rotate_backup_restore_from_the_cli(cp, file_key_home, make_pem, tmp_path):
    cert, key, chain = make_pem(["vault.example.com"], "2025-01-01", "2026-01-01")
    assert cp("import", "--cert", cert, "--key", key, "--chain", chain, "--origin", "uploaded").code == 0
    checked = cp("vault", "check", "--json")
    assert checked.code == 0 and checked.json["keys"] == 1 and checked.json["ok"] is True
    rotated = cp("vault", "rotate", "--json")
    assert rotated.code == 0, rotated.out + rotated.err
    assert rotated.json["rewrapped"] == 1 and rotated.json["check"]["ok"] is True
    assert rotated.json["old_key_id"] != rotated.json["new_key_id"]
    assert cp("vault", "retire", "--json").json["removed"] == [f"master.key.retired-{rotated.json['old_key_id']}"]
    out = tmp_path / "backup"
    backed = cp("backup", out, "--json")
    assert backed.code == 0 and backed.json["keys"] == 1
    assert backed.json["master_key_ids"] == [rotated.json["new_key_id"]]
    restored = cp("restore", out, "--json")
    assert restored.code == 0, restored.out + restored.err
    assert restored.json["check"] == {"keys": 1, "ok": True, "providers": {"local": 1}, "failed": []}
    assert cp("vault", "check").code == 0


def test_backup_refuses_a_directory_that_is_not_empty(cp, file_key_home, tmp_path):
    out = tmp_path / "full"
    out.mkdir()
    (out / "x").write_text("x")
    r = cp("backup", out, "--json")
    assert r.code == 4 and "is not empty" in r.json["error"]["message"]


def test_import_refuses_an_oversized_file_without_reading_it_whole(cp, home, tmp_path):
    big = tmp_path / "big.pem"
    with open(big, "wb") as fh:
        fh.truncate(50 * 1024 * 1024)  # sparse: 50 MB never read
    r = cp("import", "--cert", big, "--json")
    assert r.code == 4 and r.json["error"]["reason"] == "InputTooLarge"
    assert "is larger than the 262144 bytes" in r.json["error"]["message"]
