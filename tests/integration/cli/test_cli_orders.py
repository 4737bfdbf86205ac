"""The ordering path on the command line (issue 17): `buy` → shortfall (exit 3) → `pay` →
certificates; `orders`, `order show`, `order cancel`; refusals that name real commands and ids;
`cancel` of a plan's certificate; `orders` at 10,000 orders."""

from __future__ import annotations

import shlex
import time
from datetime import timedelta

from sqlalchemy import create_engine, insert

from certpilot.store.tables import OrderRow
from tests.integration.cli.conftest import day, row_counts

BUY = ("buy", "--name", "a.example.com", "--name", "b.example.com", "--level", "DV", "--brand", "DigiCert",
       "--years", "1")


def _parses(command: str) -> None:
    """A suggested command is a real command line: the CLI's parser accepts it (`--help` appended
    so that nothing runs)."""
    from cyclopts import CycloptsError

    from certpilot.cli import app

    tokens = shlex.split(command)
    assert tokens[0] == "certpilot", command
    try:
        app.parse_args(tokens[1:], exit_on_error=False, print_error=False)
    except CycloptsError as exc:  # pragma: no cover - the failure message says which
        raise AssertionError(f"{command!r} does not parse: {exc}") from exc


def test_pay1_buy_shortfall_names_pay_with_the_real_order_id_then_pay_creates_the_certificate(cp, clock):
    """PAY-1: the shortfall refusal names `certpilot pay ORD` (never `renew None`); paying creates
    the order's certificate with the names bought; `order show` says what happens next."""
    clock("2025-09-10")
    r = cp(*BUY, "--json")
    assert r.code == 3
    err = r.json["error"]
    assert (err["reason"], err["rule"]) == ("ShortfallNotApproved", "PAY-1")
    assert "None" not in err["message"]
    order_id = cp("orders", "--json").json["orders"][0]["id"]
    assert f"certpilot pay {order_id}" in err["instead"]
    assert f"certpilot order cancel {order_id}" in err["instead"]
    assert f"{shlex.join(('certpilot',) + BUY)} --approve-payment" in err["instead"]
    for command in err["instead"]:
        _parses(command)
    # The same purchase asked again finds the waiting order: no second one is left behind.
    assert cp(*BUY, "--json").json["error"]["instead"] == err["instead"]
    assert cp("orders", "--json").json["total"] == 1

    listed = cp("orders", "--state", "awaiting_payment", "--json").json
    assert [(o["id"], o["names"], o["state"], o["certificates"]) for o in listed["orders"]] == [
        (order_id, ["a.example.com", "b.example.com"], "awaiting_payment", 0)]

    paid = cp("pay", order_id, "--json")
    assert paid.code == 0, paid.out + paid.err
    (cert,) = paid.json["certificates"]
    assert (cert["names"], cert["order_id"], cert["state"]) == (
        ["a.example.com", "b.example.com"], order_id, "pending_application")
    shown = cp("order", "show", order_id, "--json").json
    assert shown["order"]["state"] == "paid" and shown["charged"] == 100
    assert [c["id"] for c in shown["certificates"]] == [cert["id"]]
    assert f"certpilot apply {cert['id']}" in shown["next_step"]
    again = cp("pay", order_id, "--json")  # paying twice: the same certificate, charged once
    assert [c["id"] for c in again.json["certificates"]] == [cert["id"]]
    assert cp("order", "show", order_id, "--json").json["charged"] == 100
    human = cp("order", "show", order_id)
    assert human.code == 0 and order_id in human.out and "a.example.com, b.example.com" in human.out


def test_pay_unknown_order_points_at_certpilot_orders(cp, home):
    r = cp("pay", "ord-nope", "--json")
    assert r.code == 4
    assert r.json["error"]["reason"] == "NotFound" and "certpilot orders" in r.json["error"]["instead"]
    assert cp("order", "show", "ord-nope").code == 4
    assert cp("order", "cancel", "ord-nope").code == 4


def test_pay1_decline_of_a_paid_order_exits_3_with_reason_and_rule(cp, clock):
    clock("2025-09-10")
    r = cp(*BUY[:-1], "2", "--approve-payment", "--json")
    assert r.code == 0, r.out + r.err
    order_id = r.json["order"]["id"]
    second = next(c["id"] for c in r.json["certificates"] if c["plan_index"] == 1)
    declined = cp("pay", order_id, "--decline", "--json")
    assert declined.code == 3
    err = declined.json["error"]
    assert (err["reason"], err["rule"]) == ("OrderPaid", "PAY-1")
    assert err["instead"] == [f"certpilot cancel {second}"]
    _parses(err["instead"][0])
    refused = cp("order", "cancel", order_id, "--json")
    assert refused.code == 3 and (refused.json["error"]["reason"], refused.json["error"]["rule"]) == (
        "OrderPaid", "PL-7")


def test_pay1_unpaid_orders_expire_after_30_days_and_are_visible(cp, clock, home):
    """Abandoned orders do not pile up as awaiting payment: after 30 days `orders` shows them
    expired; `pay` refuses with the buy command to run again; `order cancel` clears one."""
    clock("2025-09-10")
    assert cp(*BUY).code == 3
    assert cp("buy", "--name", "c.example.com", "--level", "DV", "--brand", "DigiCert").code == 3
    by_names = {tuple(o["names"]): o["id"] for o in cp("orders", "--json").json["orders"]}
    ids = [by_names[("a.example.com", "b.example.com")], by_names[("c.example.com",)]]
    assert cp("orders", "--at", "2025-10-09T23:59:59Z", "--json").json["counts"] == {"awaiting_payment": 2}
    clock("2025-10-10")
    book = cp("orders", "--json").json
    assert book["counts"] == {"expired": 2} and {o["state"] for o in book["orders"]} == {"expired"}
    assert cp("orders", "--state", "awaiting_payment", "--json").json["orders"] == []
    human = cp("orders")
    assert "expired 2" in human.out and "expire after 30 days" in human.out
    refused = cp("pay", ids[0], "--json")
    assert refused.code == 3 and refused.json["error"]["reason"] == "OrderClosed"
    assert refused.json["error"]["instead"] == [
        "certpilot buy --name a.example.com --name b.example.com --level DV --brand DigiCert --years 1"]
    before = row_counts(home)
    cancelled = cp("order", "cancel", ids[0], "--json")
    assert cancelled.code == 0 and cancelled.json["cancelled"] is True
    assert cancelled.json["order"]["state"] == "cancelled"
    assert row_counts(home)["ledger_entries"] == before["ledger_entries"]
    assert cp("orders", "--json").json["counts"] == {"cancelled": 1, "expired": 1}
    assert cp("order", "cancel", ids[0], "--at", "2025-10-10T00:00:00Z").code == 2  # an action: no --at


def test_pl7_cancel_of_a_reissue_is_refused_and_a_year_goes_with_its_follow_ups(cp, clock):
    """PL-7/VA-5: `cancel` never prints a blank "restored", never leaves a hole: a reissue alone is
    refused naming the next year; the year is cancelled with its follow-ups."""
    clock("2026-06-01")
    assert cp("quota", "add", "--level", "DV", "--type", "multi", "--brand", "DigiCert", "--count", "3").code == 0
    assert cp("quota", "add", "--managed", "2").code == 0
    r = cp(*BUY[:-1], "3", "--json")
    assert r.code == 0, r.out + r.err
    planned = {p["index"]: p["reissue"] for p in r.json["order"]["planned"]}
    certs = [(c["id"], planned[c["plan_index"]]) for c in r.json["certificates"]]
    reissue = next(cid for cid, is_reissue in certs if is_reissue)
    after = [cid for cid, _ in certs][[cid for cid, _ in certs].index(reissue):]
    next_year = next(cid for cid, is_reissue in certs if not is_reissue and cid in after)
    refused = cp("cancel", reissue, "--json")
    assert refused.code == 3 and (refused.json["error"]["reason"], refused.json["error"]["rule"]) == (
        "NotCancellable", "VA-5")
    assert refused.json["error"]["instead"] == [f"certpilot cancel {next_year}"]
    done = cp("cancel", next_year)
    assert done.code == 0 and "restored " in done.out and "restored ;" not in done.out
    follow = [cid for cid, _ in certs][[cid for cid, _ in certs].index(next_year) + 1:]
    out = " ".join(done.out.split())
    assert f"cancelled {next_year} and its {len(follow)} follow-up(s) {', '.join(follow)};" in out
    assert "restored +2 quota DigiCert/DV/multi, +2 managed the plan now ends with" in out  # years 2 and 3
    assert "came back instead of their certificates starting (PL-7)" in out


def test_orders_at_10000_orders_answers_within_a_second(cp, home, clock):
    """`certpilot orders` (the default page, and `--state paid`) with 10,000 orders: ≤ 1 s each."""
    clock("2025-09-10")
    assert cp("orders").code == 0  # creates the schema
    engine = create_engine(f"sqlite:///{home / 'certpilot.db'}")
    base = day("2025-01-01")
    with engine.begin() as conn:
        conn.execute(insert(OrderRow), [
            {"id": f"ord-{i:016x}", "kind": "purchase", "certificate_id": None, "spec_key": "DigiCert/DV/single",
             "brand": "DigiCert", "level": "DV", "cert_type": "single", "years": 1, "csr_mode": "system",
             "managed_services": 0, "managed_fee": False, "state": ("paid", "awaiting_payment")[i % 2],
             "payment": [], "planned": [], "names": [f"n{i}.example.com"],
             "created_at": base + timedelta(minutes=i), "updated_at": base + timedelta(minutes=i)}
            for i in range(10_000)])
    engine.dispose()
    for args in (("orders", "--json"), ("orders", "--state", "paid", "--json"), ("orders",)):
        t0 = time.perf_counter()
        r = cp(*args)
        elapsed = time.perf_counter() - t0
        assert r.code == 0 and elapsed <= 1.0, (args, elapsed)
    page = cp("orders", "--json").json
    assert (page["total"], page["shown"], page["counts"]) == (10_000, 50, {"paid": 5000, "expired": 5000})
