"""CLI behaviour outside renewals: exit codes, --json on every command, list/show, the demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.cli.conftest import row_counts

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("args", [
    ["renew", "x", "--bogus"],                               # unknown option
    ["renew", "x", "--years", "4"],                          # PL-1/PL-2: 1, 2 or 3 only
    ["renew"],                                               # missing argument
    ["list", "--at", "2025-09-10T00:00:00"],                 # naive time: no timezone
    ["list", "--at", "next tuesday"],
    ["list", "--status", "sleepy"],
    ["quota", "add", "--count", "2"],                        # quota needs --level
    ["nosuchcommand"],
])
def test_exit_2_on_usage_errors(cp, args):
    """Usage errors exit 2; with --json they still print parseable JSON."""
    assert cp(*args).code == 2
    r = cp(*args, "--json")
    assert r.code == 2
    assert r.json["error"]["exit_code"] == 2


def test_exit_4_on_missing_file_bad_pem_unknown_id(cp, tmp_path):
    """UP-3: a missing file, a file that is not PEM, an unknown id: exit 4, a reason, nothing stored."""
    r = cp("import", "--cert", tmp_path / "nope.pem", "--json")
    assert (r.code, r.json["error"]["exit_code"]) == (4, 4)
    assert "nope.pem" in r.json["error"]["message"]
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    r = cp("import", "--cert", bad, "--json")
    assert r.code == 4
    assert r.json["error"]["reason"] == "BadPem"
    assert cp("list", "--json").json["certificates"] == []
    for args in (["show", "no-such-id"], ["renew", "no-such-id", "--dry-run"], ["cancel", "no-such-id"],
                 ["pay", "no-such-order"]):
        r = cp(*args, "--json")
        assert (r.code, r.json["error"]["reason"]) == (4, "NotFound"), args
    assert cp("show", "no-such-id").code == 4  # human output too


def test_import_prints_identity_never_key_material(cp, make_pem, home, clock):
    """CSR-5: import prints id, names, type, expiry, warnings; no key bytes anywhere in the output."""
    cert, key, chain = make_pem(["shop.example.com"], "2024-10-01", "2025-09-30")
    clock("2025-09-01T00:00:00Z")
    r = cp("import", "--cert", cert, "--key", key, "--chain", chain, "--origin", "official", "--json")
    assert r.code == 0, r.out
    assert {k: r.json[k] for k in ("names", "type", "origin", "not_after", "key_held")} == {
        "names": ["shop.example.com"], "type": "single", "origin": "official",
        "not_after": "2025-09-30T00:00:00Z", "key_held": True}
    body = key.read_text().splitlines()[1]
    assert body not in r.out and "PRIVATE KEY" not in r.out
    human = cp("import", "--cert", cert)  # a duplicate (UP-3)
    assert human.code == 3
    assert "PRIVATE KEY" not in human.out + human.err


def test_lc4_list_derives_status_at_the_time_asked(cp, imported):
    """LC-4: statuses come from dates at --at (60-day window), soonest expiry first; filters work."""
    a = imported(["a.example.com"], "2024-10-01", "2025-09-30")   # 20 days left on 2025-09-10
    b = imported(["b.example.com"], "2025-01-01", "2026-01-01")   # 113 days left
    c = imported(["c.example.com"], "2024-01-01", "2025-01-01", origin="uploaded")  # expired
    r = cp("list", "--json", "--at", "2025-09-10T00:00:00Z")
    assert r.code == 0
    rows = [(x["id"], x["status"], x["days_left"]) for x in r.json["certificates"]]
    assert rows == [(c, "expired", -252), (a, "expiring_soon", 20), (b, "valid", 113)]
    soon = cp("list", "--status", "expiring_soon", "--json", "--at", "2025-09-10T00:00:00Z").json
    assert [x["id"] for x in soon["certificates"]] == [a]
    # Already expired counts as expiring within any horizon, unless --hide-expired.
    within = cp("list", "--expiring-within", "120", "--json", "--at", "2025-09-10T00:00:00Z").json
    assert [x["id"] for x in within["certificates"]] == [c, a, b]
    hidden = cp("list", "--expiring-within", "120", "--hide-expired", "--json", "--at", "2025-09-10T00:00:00Z").json
    assert [x["id"] for x in hidden["certificates"]] == [a, b]
    assert cp("list", "--at", "2025-09-10T00:00:00Z").code == 0  # the rich table renders
    earlier = cp("list", "--json", "--at", "2025-06-01T00:00:00Z").json["certificates"]
    assert {x["id"]: x["status"] for x in earlier}[a] == "valid"


def test_show_has_audit_trail(cp, imported):
    """`show` prints the certificate, its derived status and its audit trail (import recorded)."""
    a = imported(["a.example.com"], "2024-10-01", "2025-09-30")
    r = cp("show", a, "--json", "--at", "2025-09-10T00:00:00Z")
    assert r.code == 0
    assert r.json["certificate"]["status"] == "expiring_soon"
    assert r.json["parent"] is None and r.json["children"] == []
    assert r.json["audit"] and r.json["audit"][0]["to"] == "issued"
    assert cp("show", a, "--at", "2025-09-10T00:00:00Z").code == 0


def test_json_everywhere_parses(cp, imported, clock):
    """Every command accepts --json and prints one JSON document."""
    a = imported(["a.example.com"], "2024-10-01", "2025-09-30")
    commands = [
        ["list"], ["show", a], ["quota"], ["quota", "add", "--managed", "1"],
        ["quota", "add", "--level", "OV", "--type", "wildcard", "--brand", "GlobalSign", "--count", "2"],
        ["renew", a, "--dry-run"], ["db", "upgrade"], ["renew", a, "--years", "2", "--approve-payment"],
    ]
    for args in commands:
        reads = {"list", "show"} | ({"renew"} if "--dry-run" in args else set())
        clock("2025-09-10T00:00:00Z")  # actions take no --at: they act at the clock's time
        r = cp(*args, "--json", *(["--at", "2025-09-10T00:00:00Z"] if args[0] in reads else []))
        assert r.code == 0, (args, r.out, r.err)
        json.loads(r.out)
    assert cp("quota", "--json").json["quota"]["GlobalSign/OV/wildcard"] == 2


def test_quota_add_refuses_non_positive_counts(cp):
    """PAY-3: quota and credits are added in positive whole numbers (bad input otherwise)."""
    r = cp("quota", "add", "--managed", "0", "--json")
    assert (r.code, r.json["error"]["reason"]) == (4, "BadInput")
    assert cp("quota", "add", "--level", "DV", "--count", "-1", "--json").code == 4
    assert cp("quota", "--json").json == {"quota": {}, "managed": 0}


def test_up_demo_prints_inventory_and_preview_idempotently(cp, home, clock):
    """`certpilot up` (the demo): loads real certificates, shows derived statuses and a renewal
    preview of a due certificate; a second run duplicates nothing (same rows, same ledger)."""
    assert cp("demo", "--at", "2025-09-10T00:00:00Z").code == 2  # loading is an action: no --at
    clock("2025-09-10T00:00:00Z")
    first = cp("demo", "--json")
    assert first.code == 0, first.out + first.err
    d = first.json
    statuses = {c["common_name"]: c["status"] for c in d["certificates"]}
    assert statuses["shop.example.com"] == "expiring_soon"
    assert statuses["legacy.example.com"] == "expired"
    assert statuses["www.example.com"] == "valid"
    assert {c["type"] for c in d["certificates"]} >= {"single", "multi", "wildcard"}
    assert {c["origin"] for c in d["certificates"]} == {"official", "uploaded", "private-ca"}
    assert len(d["imported"]) == len(d["certificates"]) >= 6
    assert d["preview"]["eligible"] is True
    assert d["preview"]["plan"]["certificates"][0]["state"] == "pending_application"
    counts = row_counts(home)

    clock("2025-09-11T00:00:00Z")
    second = cp("demo", "--json")
    assert second.code == 0, second.out
    assert second.json["imported"] == []
    assert len(second.json["already_present"]) == len(d["certificates"])
    assert row_counts(home) == counts
    assert second.json["balances"] == d["balances"]
    human = cp("demo")
    assert human.code == 0 and "shop.example.com" in human.out
    assert "PRIVATE KEY" not in first.out + human.out


def test_console_script_runs_as_a_process(tmp_path):
    """The `certpilot` entry point as a real process: db upgrade --json, and exit code 2 kept."""
    env = {**os.environ, "CERTPILOT_HOME": str(tmp_path / "h")}
    env.pop("CERTPILOT_DATABASE_URL", None)
    cmd = [sys.executable, "-m", "certpilot.cli"]
    up = subprocess.run([*cmd, "db", "upgrade", "--json"], env=env, cwd=ROOT, capture_output=True, text=True,
                        timeout=60)
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["schema"] == "up to date"
    bad = subprocess.run([*cmd, "list", "--at", "2025-01-01T00:00:00"], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2


def test_importing_the_cli_is_light():
    """`import certpilot.cli` loads no Prefect, no store and no crypto: those load inside commands."""
    code = ("import sys, certpilot.cli; "
            "print(sorted(m for m in ('prefect', 'sqlalchemy', 'alembic', 'cryptography') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout.strip()) == (0, "[]"), out.stderr


def test_policy_switches_automatic_renewal_per_certificate(cp):
    """The scanner renews what is due unless the certificate's policy says otherwise; the policy
    is shown with its defaults and changed per certificate (unknown id: exit 4)."""
    cid = cp("demo", "--json").json["certificates"][0]["id"]
    defaults = {"start_days": 30, "start_days_set": False, "pays_fee": False, "validation": "auto"}
    assert cp("policy", cid, "--json").json == {"certificate_id": cid, "auto_renew": True, "years": 1, "default": True,
                                                **defaults}
    changed = cp("policy", cid, "--no-auto-renew", "--years", "2", "--json")
    assert changed.code == 0
    assert changed.json == {"certificate_id": cid, "auto_renew": False, "years": 2, "default": False, **defaults}
    assert cp("policy", "no-such-id", "--json").code == 4


def test_pl1_pay2_policy_starts_automatic_renewal_at_30_days_unless_told_earlier(cp):
    """PL-1/PAY-2: automatic renewal starts at 30 days left by default (no managed-service fee);
    starting earlier is the certificate's own explicit policy, shown as paying the fee; a start
    outside the expiry window is refused (EL-1, exit 3) and nothing changes; back to the default."""
    cid = cp("demo", "--json").json["certificates"][0]["id"]
    early = cp("policy", cid, "--start-days", "45", "--json")
    assert early.code == 0
    assert (early.json["start_days"], early.json["start_days_set"], early.json["pays_fee"]) == (45, True, True)
    assert "pays the managed-service fee" in cp("policy", cid).out
    refused = cp("policy", cid, "--start-days", "61", "--json")
    assert refused.code == 3 and refused.json["error"]["rule"] == "PL-1"
    assert cp("policy", cid, "--json").json["start_days"] == 45
    back = cp("policy", cid, "--default-start", "--json").json
    assert (back["start_days"], back["start_days_set"], back["pays_fee"]) == (30, False, False)
    assert cp("policy", cid, "--validation", "http-file", "--json").json["validation"] == "http-file"
    assert cp("policy", cid, "--validation", "auto", "--json").json["validation"] == "auto"
