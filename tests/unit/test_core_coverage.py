"""The coverage term as the plan's contract (VA-1, VA-2, VA-5, PL-1, PAY-2, PL-7, DV-1..DV-4): pure rules,
fixed dates, exact values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certpilot.core.models import OrderKind, Policy, ValidationMethod
from certpilot.core.plans import (
    PlanVsIssued,
    after_cancel,
    auto_renew_due,
    check_start_days,
    expected_successor,
    plan_order,
    shortened_coverage,
    successor_window,
    year_ends,
)
from certpilot.core.validation import choose_method
from certpilot.core.validity import CabfSchedule, Window

P = Policy()
D = timedelta(days=1)
FLAT = CabfSchedule(((datetime(2020, 1, 1).date(), 398),))
REAL = CabfSchedule.from_mapping({"steps": [{"from": "2020-09-01", "max_days": 398}, {"from": "2026-03-15", "max_days": 200},
                                            {"from": "2027-03-15", "max_days": 100}, {"from": "2029-03-15", "max_days": 47}]})


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


def test_va5_year_ends_of_a_three_year_term():
    """VA-5/PL-2: the paid years end 365 days apart, the last at the term's end."""
    assert year_ends(at("2028-09-29"), 3, P) == [at("2026-09-30"), at("2027-09-30"), at("2028-09-29")]


def test_va2_va5_successor_of_a_certificate_that_reached_its_year_ends_365_days_later():
    """VA-2: issued 20 days before the old expiry A, the next year's certificate ends A + 365 d."""
    w = successor_window(at("2025-09-30"), at("2025-09-10"), coverage_end=at("2026-09-30"), years=1, policy=P,
                         schedule=FLAT)
    assert w == Window(at("2025-09-10"), at("2026-09-30"))


def test_va5_successor_of_a_short_certificate_completes_its_year_then_the_next_one_starts():
    """VA-5: a CA signed 90 days; the next certificate completes that year (a reissue), and the one
    after ends a year later; a term already covered needs nothing more."""
    end = at("2027-09-30")  # 2-year term after an old expiry of 2025-09-30
    short = successor_window(at("2025-12-09"), at("2025-11-09"), coverage_end=end, years=2, policy=P, schedule=FLAT)
    assert short == Window(at("2025-11-09"), at("2026-09-30"))
    nxt = successor_window(at("2026-09-30"), at("2026-08-31"), coverage_end=end, years=2, policy=P, schedule=FLAT)
    assert nxt == Window(at("2026-08-31"), at("2027-09-30"))
    assert successor_window(end, at("2027-09-01"), coverage_end=end, years=2, policy=P, schedule=FLAT) is None


def test_va5_successor_is_cut_at_its_issue_date_and_whole_seconds():
    """VA-5: cut to the CA/B maximum on its own issue date (100 days from 2027-03-15); X.509 holds
    whole seconds, so the window does too."""
    t = at("2027-04-01") + timedelta(microseconds=900)
    w = successor_window(at("2027-05-01"), t, coverage_end=at("2028-04-30"), years=1, policy=P, schedule=REAL)
    assert w == Window(at("2027-04-01"), at("2027-04-01") + 100 * D)
    assert successor_window(at("2027-05-01"), t, coverage_end=at("2028-04-30"), years=1, policy=P, schedule=REAL,
                            publicly_trusted=False) == Window(at("2027-04-01"), at("2028-04-30"))


def test_va5_plan_order_and_successor_windows_agree_when_the_ca_signs_the_plan():
    """VA-5: a CA that signs exactly what is asked reproduces the plan made at order time: each
    planned certificate's window is the successor window of the one before it."""
    plan = plan_order(OrderKind.RENEWAL, years=3, now=at("2025-09-10"), policy=P, schedule=REAL,
                      old_not_after=at("2025-09-30"))
    prev = at("2025-09-30")
    for c in plan.certificates:
        w = successor_window(prev, c.not_before, coverage_end=plan.coverage.not_after, years=3, policy=P, schedule=REAL)
        assert w == Window(c.not_before, c.not_after)
        prev = c.not_after
    assert expected_successor(prev, OrderKind.RENEWAL, coverage_end=plan.coverage.not_after, years=3, policy=P,
                              schedule=REAL) is None


def test_va5_plan_vs_issued_says_how_much_shorter():
    """VA-5: plan vs issued, exact or short by a number of seconds, in one sentence."""
    planned = Window(at("2025-09-10"), at("2026-09-30"))
    assert PlanVsIssued(planned, planned).exact and PlanVsIssued(planned, planned).short_seconds == 0
    short = PlanVsIssued(planned, Window(at("2025-09-10"), at("2025-12-09")))
    assert short.short_seconds == (at("2026-09-30") - at("2025-12-09")).total_seconds()
    assert short.describe().startswith("the CA signed 295.0 days less than planned")


@pytest.mark.parametrize("left, days, due", [(30 * D, 30, True), (30 * D + timedelta(seconds=1), 30, False),
                                             (45 * D, 45, True), (46 * D, 45, False)])
def test_pl1_pay2_auto_renew_due_at_its_start_point(left, days, due):
    """PL-1/PAY-2: automatic renewal is due once at most `start_days` are left (30 by default)."""
    assert auto_renew_due(at("2026-01-01") + left, at("2026-01-01"), start_days=days) is due
    assert P.auto_renew_start_days == 30


def test_pl1_start_days_within_the_expiry_window():
    """PL-1/EL-1: 1..60 days; outside is refused with what the default does."""
    assert check_start_days(45, P) is None and check_start_days(60, P) is None
    refusal = check_start_days(61, P)
    assert refusal.rule == "PL-1" and "avoids the managed-service fee (PAY-2)" in refusal.message


def test_pl7_cancel_shortens_the_term_and_says_what_the_plan_becomes():
    """PL-7: two years given back shorten the term by 730 days; the sentence names the certificate the
    plan ends with and that the quota and credit came back instead of the next one starting."""
    assert shortened_coverage(at("2028-09-29"), 2, P) == at("2026-09-30")
    text = after_cancel("crt-1", at("2026-09-30"), True)
    assert text.startswith("the plan now ends with crt-1 (valid until 2026-09-30T00:00:00+00:00)")
    assert "automatic renewal places a new order" in text
    assert "`certpilot renew crt-1`" in after_cancel("crt-1", None, False)


@pytest.mark.parametrize("kw, method", [
    (dict(original=ValidationMethod.DNS_AUTO, dns_writable=True), ValidationMethod.DNS_AUTO),           # DV-1
    (dict(original=ValidationMethod.DNS_AUTO), ValidationMethod.DNS_MANUAL),                            # DV-3
    (dict(original=ValidationMethod.HTTP_FILE, http_responder=True), ValidationMethod.HTTP_FILE),       # DV-1
    (dict(original=ValidationMethod.HTTP_FILE, dns_writable=True), ValidationMethod.DNS_AUTO),          # DV-2
    (dict(delegated=True, dns_writable=True), ValidationMethod.DELEGATED),                              # PL-5
    (dict(chosen=ValidationMethod.HTTP_MANUAL, dns_writable=True), ValidationMethod.HTTP_MANUAL),       # override
])
def test_dv1_dv2_dv3_choose_method(kw, method):
    """DV-1..DV-3: the operator's choice, else the original's method while usable, else a delegation,
    else automatic DNS when writable, else manual DNS."""
    assert choose_method(["www.example.test"], **kw) is method


def test_dv4_choose_method_never_picks_file_validation_for_a_wildcard():
    """DV-4: a wildcard's original file validation is not kept."""
    assert choose_method(["*.example.test"], original=ValidationMethod.HTTP_FILE,
                         http_responder=True) is ValidationMethod.DNS_MANUAL
