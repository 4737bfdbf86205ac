"""Issue 17, the command line a newcomer can trust: no `--at` on actions, exit codes, canonical
brands and levels, `quota remove`, one JSON error shape, views that say what to do next."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.cli.conftest import MASTER_KEY, row_counts

AT = "2025-09-10T00:00:00Z"
EARLY = "2025-06-01T00:00:00Z"
CERTPILOT = str(Path(sys.executable).parent / "certpilot")


@pytest.fixture
def shop(imported):
    """An official DV DigiCert certificate valid 2024-10-01 .. 2025-09-30 (20 days left on 2025-09-10)."""
    return imported(["shop.example.com"], "2024-10-01", "2025-09-30")


# ---------------------------------------------------------------- --at: previews and reads only


ACTIONS = [
    ["import", "--cert", "x.pem"],
    ["renew", "{id}", "--years", "3"],
    ["renew", "{id}", "--years", "1", "--approve-payment"],
    ["renew", "{id}", "--prefect"],
    ["buy", "--name", "a.example.com", "--brand", "DigiCert"],
    ["pay", "ord-0000000000000000"],
    ["pay", "ord-0000000000000000", "--decline"],
    ["cancel", "{id}"],
    ["cancel", "{id}", "--prefect"],
    ["quota", "add", "--managed", "1"],
    ["quota", "add", "--level", "DV", "--brand", "DigiCert", "--count", "1"],
    ["quota", "remove", "--managed", "1"],
    ["demo"],
]


@pytest.mark.parametrize("args", ACTIONS, ids=[" ".join(a[:2]) + (" " + a[-1] if a[-1].startswith("--") else "")
                                               for a in ACTIONS])
def test_actions_refuse_at_as_a_usage_error_and_change_nothing(cp, home, shop, args):
    """EL-2 and issue 17: an action with --at (e.g. ordering as of a day when an expired certificate
    was still renewable) is a usage error, exit 2, saying why; nothing stored changes."""
    before = row_counts(home)
    argv = [a.replace("{id}", shop) for a in args]
    for extra in ([], ["--json"]):
        r = cp(*argv, "--at", "2024-09-10T00:00:00Z", *extra)
        assert r.code == 2, (argv, r.out, r.err)
        text = r.json["error"]["message"] if extra else r.err
        assert "injected time is for previews and reads" in text and "drop --at" in text
    assert row_counts(home) == before


def test_reads_and_previews_keep_at(cp, shop):
    """`list`, `show` and `renew --dry-run` decide as of --at (reproducible answers)."""
    assert cp("list", "--at", AT, "--json").json["at"] == AT
    assert cp("show", shop, "--at", AT, "--json").json["at"] == AT
    assert cp("renew", shop, "--dry-run", "--at", AT, "--json").json["at"] == AT


# ---------------------------------------------------------------- exit codes


def _shell(home: Path, *args: str, wait: bool = True, **env: str) -> subprocess.CompletedProcess | subprocess.Popen:
    """`certpilot ARGS` as a process on `home` (no inherited PREFECT_/CERTPILOT_ settings); with
    `wait=False` the started process (text pipes) instead of its result."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CERTPILOT_"))}
    base.update({"PREFECT_HOME": str(home.parent / "prefect"), "CERTPILOT_HOME": str(home),
                 "CERTPILOT_MASTER_KEY": MASTER_KEY, "PREFECT_CLIENT_MAX_RETRIES": "0", **env})
    if not wait:
        return subprocess.Popen([CERTPILOT, *args], env=base, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, stdin=subprocess.DEVNULL)
    return subprocess.run([CERTPILOT, *args], env=base, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_server_unreachable_is_exit_5_not_usage(shop, home):
    """Commands that start runs report an unreachable Prefect API as exit 5 (its own code), with the
    same JSON error shape; a usage error stays 2. One command per path to the API: a scan run, a
    run for a certificate (apply, emergency, renew --prefect and cancel --prefect share `_trigger`
    after the local id check), the automations; the processes run side by side."""
    from tests.servers.base import free_port

    url = f"http://127.0.0.1:{free_port()}/api"
    commands = (["scan"], ["emergency", shop], ["install-automations"])
    procs = [_shell(home, *args, "--json", PREFECT_API_URL=url, wait=False) for args in commands]
    for args, proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 5, (args, out, err)
        error = json.loads(out)["error"]
        assert (error["exit_code"], error["reason"]) == (5, "ServerUnreachable")
        assert f"at {url}" in error["message"]
    assert _shell(home, "scan", "--bogus").returncode == 2


def test_unknown_id_is_checked_locally_before_the_server(cp):
    """`emergency crt-nope` (and apply, renew --prefect, cancel --prefect) is exit 4 with a hint,
    without asking any server."""
    for args in (["emergency", "crt-nope"], ["apply", "crt-nope"], ["renew", "crt-nope", "--prefect"],
                 ["cancel", "crt-nope", "--prefect"]):
        r = cp(*args, "--json")
        assert (r.code, r.json["error"]["reason"]) == (4, "NotFound"), args
        assert r.json["error"]["instead"] == ["certpilot list"]
    human = cp("emergency", "crt-nope")
    assert human.code == 4 and "certpilot list" in human.err


def test_environment_failure_is_exit_1(cp, home, monkeypatch):
    """Exit 1: the database cannot be reached (the message says so)."""
    monkeypatch.setenv("CERTPILOT_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    from certpilot.settings import get_settings
    from certpilot.store.db import reset_engines

    get_settings.cache_clear()
    reset_engines()
    r = cp("list", "--json")
    assert (r.code, r.json["error"]["exit_code"]) == (1, 1)
    assert "database" in r.json["error"]["message"]


def test_a_bad_master_key_is_exit_1(cp, make_pem, monkeypatch):
    """Exit 1: the master key that seals private keys is not a valid key (the message says how to
    make one); nothing is imported."""
    from certpilot.settings import get_settings

    monkeypatch.setenv("CERTPILOT_MASTER_KEY", "not-a-key")
    get_settings.cache_clear()
    cert, key, chain = make_pem(["vault.example.com"], "2025-01-01", "2026-01-01")
    r = cp("import", "--cert", cert, "--key", key, "--chain", chain, "--json")
    assert (r.code, r.json["error"]["exit_code"]) == (1, 1)
    assert "CERTPILOT_MASTER_KEY is not valid base64" in r.json["error"]["message"]
    assert cp("list", "--json").json["total"] == 0


def test_renew_prefect_passes_approve_payment_to_the_run(cp, shop, monkeypatch):
    """`renew --prefect --approve-payment` starts the run with approve_payment=True (and False
    without the flag): the run then pays the shortfall without asking the payment form."""
    import prefect.deployments

    import certpilot.cli as cli

    started = []

    class Run:
        id, name = "0000", "shop"

    monkeypatch.setattr(cli, "_prefect_api", lambda: "http://prefect.invalid/api")
    monkeypatch.setattr(prefect.deployments, "run_deployment",
                        lambda name, parameters, timeout, idempotency_key: started.append(
                            (name, parameters, idempotency_key)) or Run())
    assert cp("renew", shop, "--prefect", "--approve-payment", "--years", "2", "--json").code == 0
    assert cp("renew", shop, "--prefect", "--json").code == 0
    # Both carry the scanner's key for this renewal (issue 15): Prefect hands the second command the
    # run the first one (or the scanner) started, never a second renewal.
    key = started[0][2]
    assert key.startswith(f"renewal:{shop}:") and started[1][2] == key
    assert [s[:2] for s in started] == [
        ("renewal/renewal", {"certificate_id": shop, "years": 2, "csr_mode": "system", "approve_payment": True}),
        ("renewal/renewal", {"certificate_id": shop, "years": 1, "csr_mode": "system", "approve_payment": False}),
    ]


def test_pay1_the_renewal_runs_payment_stage_approves_up_front_when_told(monkeypatch):
    """PAY-1: the renewal flow takes approve_payment; its payment stage then answers the shortfall
    itself (no form), exactly through the same task as the form's answer."""
    import inspect

    from certpilot.core.models import OrderState
    from certpilot.core.outcomes import RenewalStep
    from flows import renewal as flow
    from flows import stages

    assert inspect.signature(flow.renewal.fn).parameters["approve_payment"].default is False
    waiting = RenewalStep(certificate_id="crt-1", order_id="ord-1", state=OrderState.AWAITING_PAYMENT,
                          shortfall=100, message="charge 100")
    answered = []
    monkeypatch.setattr(stages.t, "payment", lambda cid, years, mode, csr_pem=None: waiting)
    monkeypatch.setattr(stages.t, "payment_answer",
                        lambda order_id, approve, who: answered.append((order_id, approve, who)) or "paid")
    monkeypatch.setattr(stages, "ask", lambda *a, **k: pytest.fail("no form when approved up front"))
    assert stages.pay("crt-1", 1, "system", True) == "paid"
    assert answered == [("ord-1", True, "run-parameter:approve_payment")]


# ---------------------------------------------------------------- brands, levels, quota remove


def test_up2_quota_add_maps_brand_and_level_to_the_canonical_spec(cp, clock):
    """UP-2, PAY-1: `--brand digicert --level dv` adds quota to DigiCert/DV/single, the spec
    DigiCert certificates use; an unknown brand is refused (exit 3) with the list."""
    clock(AT)
    r = cp("quota", "add", "--level", "dv", "--brand", "digicert", "--count", "2", "--json")
    assert r.code == 0, r.out
    assert r.json["balances"]["quota"] == {"DigiCert/DV/single": 2}
    r = cp("quota", "add", "--level", "OV", "--type", "Wildcard", "--brand", "alibaba-cloud", "--count", "1", "--json")
    assert r.json["entry"]["spec"] == "Alibaba Cloud/OV/wildcard"
    bad = cp("quota", "add", "--level", "DV", "--brand", "Sectigo", "--count", "1", "--json")
    assert (bad.code, bad.json["error"]["reason"], bad.json["error"]["rule"]) == (3, "UnknownBrand", "UP-2")
    assert "Alibaba Cloud, DigiCert, GlobalSign" in bad.json["error"]["message"]
    assert cp("quota", "add", "--level", "XV", "--count", "1").code == 2
    assert cp("quota", "--json").json["quota"] == {"DigiCert/DV/single": 2, "Alibaba Cloud/OV/wildcard": 1}


def test_up2_buy_refuses_unknown_brand_and_import_stores_canonical_brand(cp, make_pem, clock, home):
    clock(AT)
    cp("db", "upgrade")
    before = row_counts(home)
    r = cp("buy", "--name", "a.example.com", "--brand", "Sectigo", "--json")
    assert (r.code, r.json["error"]["reason"]) == (3, "UnknownBrand")
    assert row_counts(home) == before
    cert, key, chain = make_pem(["lower.example.com"], "2025-01-01", "2026-01-01")
    r = cp("import", "--cert", cert, "--key", key, "--chain", chain, "--origin", "official", "--brand", "digicert",
           "--level", "ov", "--json")
    assert r.code == 0, r.out
    assert (r.json["brand"], r.json["level"]) == ("DigiCert", "OV")


def test_pay4_quota_remove_retried_with_its_key_removes_once(cp, clock):
    """PAY-4: a `quota remove` retried with the same --idempotency-key writes one entry and answers
    with it again, even though the balance it took is now 0 (a fresh removal would be refused)."""
    clock(AT)
    cp("quota", "add", "--managed", "1")
    first = cp("quota", "remove", "--managed", "1", "--idempotency-key", "fix-1", "--json")
    again = cp("quota", "remove", "--managed", "1", "--idempotency-key", "fix-1", "--json")
    assert (first.code, again.code) == (0, 0)
    assert again.json["entry"] == first.json["entry"]
    assert again.json["balances"]["managed"] == 0


def test_pay3_quota_remove_never_goes_below_zero_and_explains(cp, home, clock):
    """PAY-3: quota added by mistake is removed (a negative ledger entry); removing more than remains,
    or what was never added, is refused (exit 3) saying how much is held and the exact command."""
    from certpilot.cli import app

    clock(AT)
    cp("quota", "add", "--level", "DV", "--brand", "DigiCert", "--count", "3")
    cp("quota", "add", "--managed", "1")
    r = cp("quota", "remove", "--level", "dv", "--brand", "digicert", "--count", "2", "--json")
    assert r.code == 0, r.out
    assert (r.json["entry"]["delta"], r.json["balances"]["quota"]["DigiCert/DV/single"]) == (-2, 1)
    before = row_counts(home)
    over = cp("quota", "remove", "--level", "DV", "--brand", "DigiCert", "--count", "5", "--json")
    assert (over.code, over.json["error"]["reason"], over.json["error"]["rule"]) == (3, "NotEnoughQuota", "PAY-3")
    assert "only 1 quota of DigiCert/DV/single remain" in over.json["error"]["message"]
    (suggested,) = over.json["error"]["instead"]
    assert suggested == "certpilot quota remove --level DV --type single --brand DigiCert --count 1"
    app.parse_args(shlex.split(suggested)[1:], exit_on_error=False, print_error=False)
    none = cp("quota", "remove", "--level", "EV", "--brand", "GlobalSign", "--count", "1", "--json")
    assert (none.code, none.json["error"]["reason"]) == (3, "NothingToRemove")
    assert "DigiCert/DV/single (1)" in none.json["error"]["message"]
    assert cp("quota", "remove", "--managed", "2", "--json").json["error"]["reason"] == "NotEnoughQuota"
    assert row_counts(home) == before
    assert cp("quota", "remove", "--managed", "1", "--json").json["balances"]["managed"] == 0
    assert cp("quota", "remove", "--managed", "1", "--json").json["error"]["reason"] == "NothingToRemove"
    assert cp("quota", "remove", "--count", "0", "--level", "DV").code == 4


def test_up3_a_chain_holding_only_the_root_says_so(cp, make_pem, clock):
    """UP-3, DEP-6: the test CA issues leaves directly, so a chain file holding only that root is
    complete: the warning says so, not "no intermediate certificates were given … pass --chain"."""
    clock(AT)
    cert, key, chain = make_pem(["root.example.com"], "2025-01-01", "2026-01-01")
    warnings = cp("import", "--cert", cert, "--key", key, "--chain", chain, "--json").json["warnings"]
    assert any("held only the root 'O=certpilot demo,CN=certpilot test CA'" in w and "no intermediate is needed" in w
               for w in warnings), warnings
    assert not any("pass --chain" in w for w in warnings)
    cert2, key2, _ = make_pem(["nochain.example.com"], "2025-01-01", "2026-01-01")
    warnings = cp("import", "--cert", cert2, "--key", key2, "--json").json["warnings"]
    assert any("no intermediate certificates were given" in w for w in warnings)


# ---------------------------------------------------------------- one JSON error shape

SHAPE = {"exit_code", "reason", "rule", "message", "instead"}


def test_one_error_shape_dry_run_or_not(cp, shop, clock):
    """Issue 17: a dry-run refusal and the same real refusal print the same document
    `{"error": {exit_code, reason, rule, message, instead}}`; usage and bad input use it too."""
    dry = cp("renew", shop, "--dry-run", "--at", EARLY, "--json")
    clock(EARLY)
    real = cp("renew", shop, "--json")
    assert dry.code == real.code == 3
    assert set(dry.json) == set(real.json) == {"error"}
    assert set(dry.json["error"]) == SHAPE
    assert dry.json == real.json
    assert (dry.json["error"]["reason"], dry.json["error"]["rule"]) == ("NotExpiringSoon", "EL-1")
    assert dry.json["error"]["instead"] == [f"certpilot renew {shop} --dry-run --at 2025-08-01T00:00:00Z",
                                            f"certpilot policy {shop} --auto-renew"]
    for args, code in ((["renew", shop, "--years", "4"], 2), (["show", "crt-nope"], 4),
                       (["renew", shop, "--at", AT], 2)):
        r = cp(*args, "--json")
        assert (r.code, set(r.json["error"])) == (code, SHAPE), args
    human = cp("renew", shop, "--dry-run", "--at", EARLY)
    assert human.code == 3 and "NotExpiringSoon" in human.out


# ---------------------------------------------------------------- views


def test_list_on_an_empty_inventory_says_what_it_read_and_what_to_do(cp, home):
    r = cp("list")
    assert r.code == 0
    text = " ".join(r.out.split())
    assert str(home / "certpilot.db") in text.replace(" ", "") or "certpilot.db" in text
    assert "certpilot import --cert" in text and "certpilot demo" in text
    data = cp("list", "--json").json
    assert (data["total"], data["certificates"]) == (0, [])
    assert data["database"].endswith("certpilot.db")


def test_list_with_a_filter_that_matches_nothing_says_so(cp, shop):
    r = cp("list", "--status", "cancelled", "--at", AT)
    assert "None of the 1 certificate(s)" in " ".join(r.out.split())


def test_lc2_after_renew_the_original_shows_renewed_and_the_next_step(cp, shop, clock):
    """LC-2: once renewed, the original's line says `renewed → <its renewal> <state>: <command>`
    (list, show, JSON), the command filled in with the new certificate's id."""
    clock(AT)
    cp("quota", "add", "--level", "DV", "--brand", "DigiCert", "--count", "1")
    r = cp("renew", shop, "--years", "1", "--json")
    assert r.code == 0, r.out
    (new,) = r.json["certificates"]
    marker = f"renewed → {new['id']} pending_application: `certpilot apply {new['id']}`"
    rows = {c["id"]: c for c in cp("list", "--json", "--at", AT).json["certificates"]}
    assert rows[shop]["renewal"] == marker
    assert rows[new["id"]]["renewal"] is None
    assert marker in cp("list", "--at", AT).out
    assert cp("show", shop, "--json", "--at", AT).json["certificate"]["renewal"] == marker


def test_table_folds_the_id_and_keeps_names_and_dates_whole_at_100_columns(cp, imported):
    """At 100 columns a row of `list` keeps its name and its date whole (rich used to cut them to
    `three…` / `2026-…` while the id kept its width); the id folds instead, and nothing is wider."""
    from rich.console import Console

    from certpilot.cli import _inventory_table
    from certpilot.operations.inventory import list_certificates
    from certpilot.runtime import local_services

    imported(["three.example.com", "a.example.com", "b.example.com"], "2025-09-01", "2026-09-30",
             origin="private-ca", brand="Alibaba Cloud")
    imported(["shop.example.com"], "2025-01-01", "2026-01-01")
    views = list_certificates(local_services(), now=None)
    console = Console(width=100, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(_inventory_table(views))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "three.example.com (+2)" in text and "shop.example.com" in text
    assert "2026-09-30" in text and "2026-01-01" in text and "…" not in text
    for v in views:
        assert v.id not in text  # folded over two lines …
        assert v.id[:8] in text  # … but all there


# ---------------------------------------------------------------- every refusal points somewhere real


def _ids_exist(cp, command: str) -> None:
    """Every certificate and order id a suggested command names is a real one."""
    for token in shlex.split(command):
        if token.startswith("crt-"):
            assert cp("show", token, "--json").code == 0, command
        elif token.startswith("ord-"):
            assert cp("order", "show", token, "--json").code == 0, command


def test_el5_every_refusal_through_the_cli_suggests_real_commands(cp, imported, clock):
    """EL-5 (issue 17): the refusals a newcomer meets on the tour — renewal not open yet, multi-domain,
    expired, already renewed, a shortfall, not cancellable, too much quota removed, unknown ids —
    each list in `instead` at least one command; each parses with the CLI's parser, and every id
    in it exists."""
    from certpilot.cli import app

    shop = imported(["shop.example.com"], "2024-10-01", "2025-09-30")
    multi = imported(["a.example.com", "b.example.com"], "2024-10-01", "2025-09-30")
    old = imported(["old.example.com"], "2023-10-01", "2024-09-30")
    clock(AT)
    cp("quota", "add", "--level", "DV", "--brand", "DigiCert", "--count", "3")
    cp("quota", "add", "--managed", "2")
    three = cp("renew", shop, "--years", "3", "--json").json
    pending = three["certificates"][0]["id"]
    refusals = {
        "not yet": cp("renew", shop, "--dry-run", "--at", EARLY, "--json"),
        "multi": cp("renew", multi, "--dry-run", "--at", AT, "--json"),
        "expired": cp("renew", old, "--dry-run", "--at", AT, "--json"),
        "renewed": cp("renew", shop, "--dry-run", "--at", AT, "--json"),
        "shortfall": cp("buy", "--name", "new.example.com", "--level", "OV", "--brand", "GlobalSign", "--json"),
        "not cancellable": cp("cancel", pending, "--json"),
        "quota": cp("quota", "remove", "--level", "DV", "--brand", "DigiCert", "--count", "9", "--json"),
        "no certificate": cp("show", "crt-nope", "--json"),
        "no order": cp("pay", "ord-nope", "--json"),
    }
    for what, r in refusals.items():
        assert r.code in (3, 4), (what, r.out)
        error = r.json["error"]
        assert error["instead"], (what, error["message"])
        for command in error["instead"]:
            app.parse_args(shlex.split(command)[1:], exit_on_error=False, print_error=False)
            _ids_exist(cp, command)
