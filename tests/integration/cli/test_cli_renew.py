"""The issue's acceptance criteria, black-box through `certpilot ... --json` (fixed clocks, rule IDs)."""

from __future__ import annotations

import pytest

from tests.integration.cli.conftest import row_counts

AT = "2025-09-10T00:00:00Z"
SHOP = ["shop.example.com"]


@pytest.fixture
def shop(imported):
    """The seed's scenario: an official DV single-domain certificate valid 2024-10-01 .. 2025-09-30."""
    return imported(SHOP, "2024-10-01T00:00:00+00:00", "2025-09-30T00:00:00+00:00")


def test_va2_el1_dry_run_plans_one_certificate_of_385_days(cp, shop):
    """VA-2, EL-1, PL-1, PAY-1: renewed on 2025-09-10, valid 2025-09-10 .. 2026-09-30 (365 + 20 days)."""
    assert cp("quota", "add", "--level", "DV", "--type", "single", "--brand", "DigiCert", "--count", "1",
              "--json").code == 0
    r = cp("renew", shop, "--years", "1", "--dry-run", "--json", "--at", AT)
    assert r.code == 0, r.out + r.err
    p = r.json
    assert (p["eligible"], p["refusal"], p["dry_run"], p["kind"], p["years"]) == (True, None, True, "renewal", 1)
    assert p["plan"]["certificates"] == [{
        "index": 0, "state": "pending_application", "not_before": "2025-09-10T00:00:00Z",
        "not_after": "2026-09-30T00:00:00Z", "days": 385, "reissue": False,
    }]
    # PL-1: one certificate, no managed service; PAY-2: within the last 30 days, no managed fee.
    assert (p["plan"]["managed_services"], p["managed_fee"]) == (0, False)
    # PAY-1: the one quota of DigiCert/DV/single pays it; nothing to charge.
    assert [(x["kind"], x["spec"], x["needed"], x["from_balance"], x["shortfall"]) for x in p["payment"]] == [
        ("quota", "DigiCert/DV/single", 1, 1, 0)]
    assert (p["quota_used"], p["credits_used"], p["shortfall"], p["needs_approval"]) == (1, 0, 0, False)


def test_el1a_refused_at_2025_06_01_not_expiring_soon(cp, shop, clock):
    """EL-1(a), EL-5: 121 days left is outside the expiry window: exit 3, NotExpiringSoon, a sentence."""
    r = cp("renew", shop, "--years", "1", "--dry-run", "--json", "--at", "2025-06-01T00:00:00Z")
    assert r.code == 3
    # A dry-run refusal is the one error document, as a real renewal's refusal is.
    assert set(r.json) == {"error"}
    assert r.json["error"]["reason"] == "NotExpiringSoon"
    assert r.json["error"]["message"]
    # Without --dry-run the same refusal, and nothing is ordered.
    clock("2025-06-01T00:00:00Z")
    r = cp("renew", shop, "--years", "1", "--json")
    assert (r.code, r.json["error"]["reason"]) == (3, "NotExpiringSoon")


def test_el1b_multi_domain_refused(cp, imported):
    """EL-1(b), EL-5: a multi-domain certificate is not renewed; the refusal says MultiDomain."""
    multi = imported(["a.example.com", "b.example.com", "c.example.com"], "2024-10-01T00:00:00+00:00",
                     "2025-09-30T00:00:00+00:00")
    r = cp("renew", multi, "--years", "1", "--dry-run", "--json", "--at", AT)
    assert r.code == 3
    assert r.json["error"]["reason"] == "MultiDomain"
    assert r.json["error"]["message"]


def test_pay2_early_renewal_adds_managed_fee(cp, shop):
    """PAY-2: renewing with more than 30 days left (60 on 2025-08-01) adds the managed-service fee."""
    r = cp("renew", shop, "--years", "1", "--dry-run", "--json", "--at", "2025-08-01T00:00:00Z")
    assert r.code == 0, r.out
    assert r.json["managed_fee"] is True
    assert [x["kind"] for x in r.json["payment"]] == ["quota", "managed"]


def test_dry_run_changes_nothing(cp, home, shop):
    """A dry run writes nothing: every table has the same row count before and after."""
    cp("quota", "add", "--managed", "1", "--json")
    before = row_counts(home)
    for years in ("1", "2", "3"):
        assert cp("renew", shop, "--years", years, "--dry-run", "--json", "--at", AT).code == 0
    assert cp("renew", shop, "--years", "1", "--dry-run", "--json", "--at", "2025-06-01T00:00:00Z").code == 3
    assert row_counts(home) == before


def test_pl2_pl3_pay1_lc2_three_years(clock, cp, home, shop):
    """PL-2, PL-3, PAY-1, LC-2, LC-1: 3 years = three certificates (one pending application, two not
    activated) and two managed services; quota is used before any shortfall is charged; a shortfall
    without --approve-payment is refused (exit 3) with no debit; `show` lists the children."""
    from certpilot.config import load_policy

    policy = load_policy()
    assert cp("quota", "add", "--level", "DV", "--brand", "DigiCert", "--count", "2", "--json").code == 0

    dry = cp("renew", shop, "--years", "3", "--dry-run", "--json", "--at", AT).json
    bought = [c for c in dry["plan"]["certificates"] if not c["reissue"]]
    assert [c["state"] for c in bought] == ["pending_application", "not_activated", "not_activated"]
    assert all(c["state"] == "not_activated" for c in dry["plan"]["certificates"][1:])
    assert dry["plan"]["certificates"][0]["not_after"] == "2026-09-30T00:00:00Z"
    assert dry["plan"]["managed_services"] == 2
    assert dry["plan"]["coverage"]["not_after"] == "2028-09-29T00:00:00Z"  # VA-5: old expiry + 3 x 365 days
    assert [(x["kind"], x["needed"], x["from_balance"], x["shortfall"]) for x in dry["payment"]] == [
        ("quota", 3, 2, 1), ("managed", 2, 0, 2)]
    expected_charge = 1 * policy.quota_price + 2 * policy.managed_price
    assert dry["shortfall"] == expected_charge

    # Without approval: exit 3, ShortfallNotApproved, the balance untouched.
    ledger_before = row_counts(home)["ledger_entries"]
    clock(AT)
    r = cp("renew", shop, "--years", "3", "--json")
    assert (r.code, r.json["error"]["reason"]) == (3, "ShortfallNotApproved")
    assert "--approve-payment" in r.json["error"]["message"]
    assert row_counts(home)["ledger_entries"] == ledger_before
    assert cp("quota", "--json").json == {"quota": {"DigiCert/DV/single": 2}, "managed": 0}

    # With approval: paid, the certificates created under the original.
    r = cp("renew", shop, "--years", "3", "--approve-payment", "--json")
    assert r.code == 0, r.out + r.err
    order = r.json["order"]
    assert order["state"] == "paid"
    ledger = {e["idempotency_key"].rsplit(":", 2)[-2] + ":" + e["idempotency_key"].rsplit(":", 1)[-1]: e
              for e in r.json["ledger"]}
    # PAY-1: the 2 quota of the balance are used first, then only the missing 1 is bought and charged.
    assert ledger["quota:0"]["delta"] == -2
    assert (ledger["quota:1"]["delta"], ledger["quota:2"]["delta"]) == (1, -1)
    assert (ledger["managed:1"]["delta"], ledger["managed:2"]["delta"]) == (2, -2)
    assert "managed:0" not in ledger
    assert sum(e["amount"] for e in r.json["ledger"] if e["kind"] == "charge") == expected_charge
    assert cp("quota", "--json").json == {"quota": {"DigiCert/DV/single": 0}, "managed": 0}

    # LC-2: the children are listed under the original; LC-1: the original is untouched.
    show = cp("show", shop, "--json", "--at", AT).json
    children = show["children"]
    assert len(children) == len(dry["plan"]["certificates"])
    assert [c["state"] for c in children][:3] == ["pending_application", "not_activated", "not_activated"]
    assert {c["parent_id"] for c in children} == {shop}
    assert {c["order_id"] for c in children} == {order["id"]}
    assert [(c["not_before"], c["not_after"]) for c in children] == [
        (c["not_before"], c["not_after"]) for c in dry["plan"]["certificates"]]
    assert (show["certificate"]["state"], show["certificate"]["not_after"]) == ("issued", "2025-09-30T00:00:00Z")
    assert [o["id"] for o in show["renewal_orders"]] == [order["id"]]
    child = cp("show", children[0]["id"], "--json", "--at", AT).json
    assert child["parent"]["id"] == shop

    # A second renewal of the same certificate is refused.
    r = cp("renew", shop, "--years", "1", "--json")
    assert (r.code, r.json["error"]["reason"]) == (3, "AlreadyRenewed")


def test_pl7_cancel_restores_one_quota_and_one_credit(clock, cp, shop):
    """PL-7: cancelling a not-activated certificate gives back one quota of its spec and one managed
    credit; a second cancel is refused, and a pending certificate cannot be cancelled."""
    cp("quota", "add", "--level", "DV", "--brand", "DigiCert", "--count", "2", "--json")
    cp("quota", "add", "--managed", "1", "--json")
    clock(AT)
    r = cp("renew", shop, "--years", "2", "--approve-payment", "--json")
    assert r.code == 0, r.out
    assert cp("quota", "--json").json == {"quota": {"DigiCert/DV/single": 0}, "managed": 0}
    pending, later = r.json["certificates"][0], r.json["certificates"][1]
    assert (pending["state"], later["state"]) == ("pending_application", "not_activated")

    c = cp("cancel", later["id"], "--json")
    assert c.code == 0, c.out
    assert c.json["state"] == "cancelled"
    assert sorted((e["kind"], e["spec"], e["delta"]) for e in c.json["restored"]) == [
        ("managed", None, 1), ("quota", "DigiCert/DV/single", 1)]
    assert c.json["balances"] == {"quota": {"DigiCert/DV/single": 1}, "managed": 1}

    again = cp("cancel", later["id"], "--json")
    assert (again.code, again.json["error"]["reason"]) == (3, "NotCancellable")
    assert cp("quota", "--json").json == {"quota": {"DigiCert/DV/single": 1}, "managed": 1}
    assert cp("cancel", pending["id"], "--json").code == 3


def test_pay4_idempotency_key_returns_the_same_order(clock, cp, shop):
    """PAY-4: a retried `renew` with the same idempotency key returns the same order, charged once."""
    cp("quota", "add", "--level", "DV", "--brand", "DigiCert", "--count", "1", "--json")
    clock(AT)
    first = cp("renew", shop, "--years", "1", "--idempotency-key", "k-1", "--json")
    second = cp("renew", shop, "--years", "1", "--idempotency-key", "k-1", "--json")
    assert (first.code, second.code) == (0, 0), second.out
    assert first.json["order"]["id"] == second.json["order"]["id"]
    assert cp("quota", "--json").json["quota"] == {"DigiCert/DV/single": 0}
    assert len(cp("show", shop, "--json", "--at", AT).json["children"]) == 1


def test_pay1_shortfall_order_waits_then_pay_approves(clock, cp, shop):
    """PAY-1: an unapproved shortfall leaves the order awaiting payment; `pay` approves it later."""
    clock(AT)
    r = cp("renew", shop, "--years", "1", "--json")
    assert (r.code, r.json["error"]["reason"]) == (3, "ShortfallNotApproved")
    show = cp("show", shop, "--json", "--at", AT).json
    (order,) = show["renewal_orders"]
    assert (order["state"], show["children"]) == ("awaiting_payment", [])
    paid = cp("pay", order["id"], "--json")
    assert (paid.code, paid.json["order"]["state"]) == (0, "paid")
    assert len(cp("show", shop, "--json", "--at", AT).json["children"]) == 1


def _csr(tmp_path, names, curve_or_rsa):
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from certpilot.crypto.csr import build_csr

    key = (ec.generate_private_key(ec.SECP256R1()) if curve_or_rsa == "ec"
           else rsa.generate_private_key(public_exponent=65537, key_size=2048))
    path = tmp_path / f"req-{curve_or_rsa}-{len(names)}.csr"
    path.write_bytes(build_csr(key, names))
    return path


@pytest.mark.parametrize("names, alg, reason", [
    (SHOP, "rsa", "CsrAlgorithm"),                              # CSR-2: the original key is EC P-256
    (["other.example.com"], "ec", "CsrNames"),                  # CSR-4: names must match the order
])
def test_csr2_manual_csr_is_checked_before_ordering(cp, shop, tmp_path, names, alg, reason):
    """CSR-2, CSR-4: a manual CSR with another key algorithm or other names is refused (exit 3)."""
    r = cp("renew", shop, "--csr", "manual", "--csr-file", _csr(tmp_path, names, alg), "--dry-run", "--json",
           "--at", AT)
    assert (r.code, r.json["error"]["reason"]) == (3, reason)


def test_csr2_csr3_manual_and_reuse_are_allowed_with_warnings(cp, shop, make_pem, tmp_path, clock):
    """CSR-2: a matching manual CSR is accepted, warning that the key is not held; CSR-3: reusing the
    original key is allowed with a warning, and refused when certpilot does not hold that key."""
    r = cp("renew", shop, "--csr", "manual", "--csr-file", _csr(tmp_path, SHOP, "ec"), "--dry-run", "--json",
           "--at", AT)
    assert r.code == 0, r.out
    assert any("CSR-2" in w for w in r.json["warnings"])
    r = cp("renew", shop, "--csr", "reuse", "--dry-run", "--json", "--at", AT)
    assert r.code == 0, r.out
    assert any("CSR-3" in w for w in r.json["warnings"])

    cert, _key, chain = make_pem(["nokey.example.com"], "2024-10-01", "2025-09-30")
    clock("2025-09-01T00:00:00Z")
    no_key = cp("import", "--cert", cert, "--chain", chain, "--origin", "official", "--json").json["id"]
    r = cp("renew", no_key, "--csr", "reuse", "--dry-run", "--json", "--at", AT)
    assert (r.code, r.json["error"]["reason"]) == (3, "KeyNotHeld")
    # --csr manual without a file, or a file without --csr manual, is a usage error.
    assert cp("renew", shop, "--csr", "manual", "--dry-run", "--at", AT).code == 2
    assert cp("renew", shop, "--csr-file", tmp_path / "x.csr", "--dry-run", "--at", AT).code == 2


def test_va3_buy_a_new_certificate(cp, clock):
    """VA-3, UP-1, PAY-1: `buy` orders a fresh certificate (12 months from issue, no parent); the
    type comes from the names; a shortfall needs --approve-payment."""
    clock(AT)
    r = cp("buy", "--name", "a.example.com", "--name", "b.example.com", "--brand", "DigiCert", "--json")
    assert (r.code, r.json["error"]["reason"]) == (3, "ShortfallNotApproved")
    cp("quota", "add", "--level", "DV", "--type", "multi", "--brand", "DigiCert", "--count", "1", "--json")
    r = cp("buy", "--name", "a.example.com", "--name", "b.example.com", "--brand", "DigiCert", "--json",
           "--idempotency-key", "buy-1")
    assert r.code == 0, r.out + r.err
    assert (r.json["order"]["kind"], r.json["order"]["state"], r.json["order"]["spec"]) == (
        "purchase", "paid", "DigiCert/DV/multi")
    (cert,) = r.json["certificates"]
    assert (cert["names"], cert["parent_id"], cert["state"]) == (
        ["a.example.com", "b.example.com"], None, "pending_application")
    assert (cert["not_before"], cert["not_after"]) == ("2025-09-10T00:00:00Z", "2026-09-10T00:00:00Z")
    bad = cp("buy", "--name", "*.*.example.com", "--json")
    assert (bad.code, bad.json["error"]["reason"], bad.json["error"]["rule"]) == (3, "WildcardDepth", "UP-1")
