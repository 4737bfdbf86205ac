"""PL-1..PL-7, PAY-2, VA-4, VA-5, LC-1: plans, managed services, expected windows (certpilot.core.plans)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from certpilot.core.errors import BadInputError, Reason, RefusedError
from certpilot.core.models import (
    Certificate,
    CertType,
    Contact,
    LedgerKind,
    Level,
    OrderKind,
    Origin,
    Policy,
    Spec,
    Status,
)
from certpilot.core.plans import (
    AutoStartInput,
    cancel_refund,
    check_cancel,
    check_managed_credit,
    check_years,
    managed_start_due,
    may_start_itself,
    plan_order,
)
from certpilot.core.validity import CabfSchedule, Window

P = Policy()
REAL = CabfSchedule(((date(2020, 9, 1), 398), (date(2026, 3, 15), 200), (date(2027, 3, 15), 100),
                     (date(2029, 3, 15), 47)))
FLAT = CabfSchedule(((date(2020, 9, 1), 398),))
"""A schedule that never tightens: isolates the plan rules from VA-5's reissues."""
R, PU, EM = OrderKind.RENEWAL, OrderKind.PURCHASE, OrderKind.EMERGENCY


def at(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


def windows(plan) -> list[tuple[str, str, bool]]:
    return [(c.not_before.isoformat()[:10], c.not_after.isoformat()[:10], c.reissue) for c in plan.certificates]


def renewal(years: int, now: str = "2025-09-10", old: str = "2025-09-30", schedule=FLAT, **kw):
    return plan_order(R, years=years, now=at(now), policy=P, schedule=schedule, old_not_after=at(old), **kw)


@pytest.mark.parametrize("years, certificates, managed", [(1, 1, 0), (2, 2, 1), (3, 3, 2)])
def test_pl1_pl2_certificates_and_managed_services_per_years(years, certificates, managed):
    """PL-1: 1 year → 1 certificate, no managed service; PL-2: 2 → 2 + 1, 3 → 3 + 2."""
    for plan in (renewal(years), plan_order(PU, years=years, now=at("2025-06-01"), policy=P, schedule=FLAT)):
        assert len(plan.certificates) == certificates and plan.yearly == certificates
        assert plan.managed_services == managed and plan.managed_fee is False and plan.reissues == 0


@pytest.mark.parametrize("years", [1, 2, 3])
def test_pl3_first_pending_application_others_not_activated(years):
    """PL-3: the first new certificate is pending application, the rest not activated."""
    plan = renewal(years, schedule=REAL)
    assert [c.state for c in plan.certificates] == (
        [Status.PENDING_APPLICATION] + [Status.NOT_ACTIVATED] * (len(plan.certificates) - 1))
    assert [c.index for c in plan.certificates] == list(range(len(plan.certificates)))


@pytest.mark.parametrize("kind, now, old, years, expected", [
    # PL-6: certificate k+1 starts 30 days before k ends and carries them over: k's end + 365 days.
    (R, "2025-09-10", "2025-09-30", 3, [("2025-09-10", "2026-09-30", False), ("2026-08-31", "2027-09-30", False),
                                        ("2027-08-31", "2028-09-29", False)]),
    # Purchase: 365 days from now (VA-3), next started 15 days before the end (PL-4) and carried over.
    (PU, "2025-06-01", None, 2, [("2025-06-01", "2026-06-01", False), ("2026-05-17", "2027-06-01", False)]),
    (EM, "2025-06-01", None, 2, [("2025-06-01", "2026-06-01", False), ("2026-05-02", "2027-06-01", False)]),
])
def test_pl6_managed_start_carries_over_remaining_validity(kind, now, old, years, expected):
    """PL-6 (with PL-4, VA-1/VA-2/VA-3): expected windows of a multi-year plan."""
    plan = plan_order(kind, years=years, now=at(now), policy=P, schedule=FLAT, old_not_after=at(old) if old else None)
    assert windows(plan) == expected
    assert plan.coverage.not_after == plan.certificates[-1].not_after


def test_va2_plan_of_the_seed_scenario():
    """VA-2: old 2024-10-01..2025-09-30 renewed on 2025-09-10 → 2025-09-10..2026-09-30 (385 days)."""
    plan = renewal(1)
    c = plan.certificates[0]
    assert (c.not_before, c.not_after, c.days) == (at("2025-09-10"), at("2026-09-30"), 385)
    assert plan.coverage == Window(at("2025-09-10"), at("2026-09-30"))


@pytest.mark.parametrize("now, years, fee, managed, first", [
    ("2025-08-30T23:59:59", 1, True, 1, ("2025-08-31", "2026-09-30")),  # 30 d 1 s left: fee, starts at 30 left
    ("2025-06-01", 1, True, 1, ("2025-08-31", "2026-09-30")),
    ("2025-06-01", 3, True, 3, ("2025-08-31", "2026-09-30")),
    ("2025-08-31", 1, False, 0, ("2025-08-31", "2026-09-30")),           # exactly 30 days left: no fee
    ("2025-09-10", 2, False, 1, ("2025-09-10", "2026-09-30")),
])
def test_pay2_managed_fee_when_renewing_with_more_than_30_days_left(now, years, fee, managed, first):
    """PAY-2: with > 30 days left the order carries one more managed service, which starts the first
    certificate's request once 30 days remain (so it ends old not_after + 365 days)."""
    plan = renewal(years, now=now)
    assert plan.managed_fee is fee and plan.managed_services == managed
    assert windows(plan)[0][:2] == first
    assert plan.coverage.not_after == at("2025-09-30") + (at("2026-09-30") - at("2025-09-30")) * years


def test_pay2_no_fee_for_purchases():
    plan = plan_order(PU, years=1, now=at("2025-06-01"), policy=P, schedule=FLAT)
    assert plan.managed_fee is False and plan.managed_services == 0


def test_va4_multi_year_plan_is_several_one_year_certificates():
    """VA-4: a 3-year plan is three certificates of at most 398 days (the maximum until 2026-03-15),
    never one long certificate."""
    plan = renewal(3, now="2024-09-10", old="2024-09-30", schedule=FLAT)
    assert [c.days for c in plan.certificates] == [385, 395, 395]
    assert all(c.days <= 398 for c in plan.certificates)


def test_va5_cap_adds_reissues_until_the_coverage_term_is_covered():
    """VA-5: each certificate is cut to the maximum on its own issue date; reissues (no quota, no credit)
    follow when 30 days remain, until the renewal's term (old not_after + 3 × 365 days) is covered."""
    plan = renewal(3, schedule=REAL)
    assert windows(plan) == [
        ("2025-09-10", "2026-09-30", False),   # 385 days, under 398
        ("2026-08-31", "2027-03-19", False),   # year 2 issued under the 200-day maximum
        ("2027-02-17", "2027-09-05", True),    # still 200 days (issued before 2027-03-15)
        ("2027-08-06", "2027-09-30", True),    # 100-day maximum, only 55 days needed
        ("2027-08-31", "2027-12-09", False),   # year 3
        ("2027-11-09", "2028-02-17", True),
        ("2028-01-18", "2028-04-27", True),
        ("2028-03-28", "2028-07-06", True),
        ("2028-06-06", "2028-09-14", True),
        ("2028-08-15", "2028-09-29", True),
    ]
    assert plan.reissues == 7 and plan.yearly == 3 and plan.managed_services == 2
    assert plan.coverage == Window(at("2025-09-10"), at("2028-09-29"))


@pytest.mark.parametrize("now, expected", [
    ("2025-06-01", [("2025-06-01", "2026-06-01", False), ("2026-05-17", "2026-12-03", False),
                    ("2026-11-18", "2027-06-01", True)]),
    ("2026-03-14T23:59:59", [("2026-03-14", "2027-03-14", False), ("2027-02-27", "2027-09-15", False),
                             ("2027-08-31", "2027-12-09", True), ("2027-11-24", "2028-03-03", True),
                             ("2028-02-17", "2028-03-13", True)]),
    # One second later the first certificate is cut to 200 days and a reissue completes year 1.
    ("2026-03-15", [("2026-03-15", "2026-10-01", False), ("2026-09-16", "2027-03-15", True),
                    ("2027-02-28", "2027-09-16", False), ("2027-09-01", "2027-12-10", True),
                    ("2027-11-25", "2028-03-04", True), ("2028-02-18", "2028-03-14", True)]),
])
def test_va5_purchase_boundaries_of_the_schedule(now, expected):
    """VA-5: a 2-year purchase placed just before and on 2026-03-15 (purchase threshold 15 days)."""
    plan = plan_order(PU, years=2, now=at(now), policy=P, schedule=REAL)
    assert windows(plan) == expected
    assert plan.certificates[-1].not_after == plan.coverage.not_after


def test_va5_private_ca_is_not_capped():
    """VA-5: private-CA certificates follow the private CA's policy: no cut, no reissue."""
    plan = plan_order(PU, years=1, now=at("2029-06-01"), policy=P, schedule=REAL, publicly_trusted=False)
    assert windows(plan) == [("2029-06-01", "2030-06-01", False)] and plan.reissues == 0


def test_va5_47_day_maximum_plans_a_reissue_every_32_days():
    plan = plan_order(PU, years=1, now=at("2029-06-01"), policy=P, schedule=REAL)
    assert len(plan.certificates) == 11 and plan.reissues == 10
    assert all(c.days <= 47 for c in plan.certificates)
    assert plan.certificates[-1].not_after == at("2030-06-01")


def test_va5_schedule_shorter_than_threshold_is_refused():
    tight = CabfSchedule(((date(2020, 9, 1), 20),))
    with pytest.raises(ValueError, match="managed-start threshold of 30 days"):
        renewal(1, schedule=tight)


def test_lc1_renewal_plans_new_certificates_and_leaves_the_original_alone():
    """LC-1: a renewal issues new certificates; the original keeps its own window untouched."""
    old = Certificate(id="c1", common_name="example.com", names=["example.com"], cert_type=CertType.SINGLE,
                      origin=Origin.OFFICIAL, state=Status.ISSUED, not_before=at("2024-10-01"),
                      not_after=at("2025-09-30"))
    before = old.model_copy(deep=True)
    plan = plan_order(R, years=2, now=at("2025-09-10"), policy=P, schedule=FLAT, old_not_after=old.not_after)
    assert old == before
    assert all(c.not_before >= at("2025-09-10") for c in plan.certificates)
    assert plan.certificates[0].not_before != old.not_before


@pytest.mark.parametrize("years, ok", [(0, False), (1, True), (2, True), (3, True), (4, False), (-1, False)])
def test_pl2_years_offered(years, ok):
    refusal = check_years(years)
    assert (refusal is None) is ok
    if not ok:
        assert refusal.reason is Reason.INVALID_YEARS and refusal.rule == "PL-2"
        assert f"a plan of {years} year(s) is not offered; choose 1, 2 or 3 years" in refusal.message
        with pytest.raises(RefusedError):
            renewal(years)


def test_pl1_renewal_plan_needs_the_old_expiry():
    with pytest.raises(BadInputError, match="expiry date"):
        plan_order(R, years=1, now=at("2025-09-10"), policy=P, schedule=FLAT)


@pytest.mark.parametrize("kind, current_not_after, now, due_at", [
    (R, "2026-09-30", "2026-08-31T00:00:00", None),                  # exactly 30 days left: due
    (R, "2026-09-30", "2026-09-29T00:00:00", None),
    (R, "2026-09-30", "2026-10-05T00:00:00", None),                  # already expired: overdue, still due
    (R, "2026-09-30", "2026-08-30T23:59:59", "2026-08-31T00:00:00+00:00"),
    (PU, "2026-06-01", "2026-05-17T00:00:00", None),                 # purchase: 15 days
    (PU, "2026-06-01", "2026-05-16T23:59:59", "2026-05-17T00:00:00+00:00"),
    (EM, "2026-06-01", "2026-05-02T00:00:00", None),
])
def test_pl4_managed_start_due_at_threshold(kind, current_not_after, now, due_at):
    """PL-4: the next certificate starts when the current one has 30 (renewal) / 15 (purchase) days left."""
    refusal = managed_start_due(at(current_not_after), kind, at(now), P)
    if due_at is None:
        assert refusal is None
    else:
        assert refusal.reason is Reason.MANAGED_NOT_DUE and refusal.rule == "PL-4"
        assert refusal.message.startswith(f"the next certificate starts by itself on {due_at}")


def test_pl4_threshold_is_configurable_per_kind():
    policy = Policy(managed_start_days={R: 20, PU: 10})
    assert managed_start_due(at("2026-09-30"), R, at("2026-09-10"), policy) is None
    assert managed_start_due(at("2026-09-30"), R, at("2026-09-09"), policy) is not None
    assert managed_start_due(at("2026-09-30"), PU, at("2026-09-20"), policy) is None
    plan = plan_order(PU, years=2, now=at("2025-06-01"), policy=policy, schedule=FLAT)
    assert windows(plan)[1] == ("2026-05-22", "2027-06-01", False)


@pytest.mark.parametrize("credits, ok", [(0, False), (1, True), (2, True)])
def test_pl4_managed_start_consumes_a_credit(credits, ok):
    refusal = check_managed_credit(credits)
    assert (refusal is None) is ok
    if not ok:
        assert refusal.reason is Reason.NO_MANAGED_CREDIT


FULL = Contact(name="Ann Ops", email="ann@example.com", phone="+81-3-0000-0000")


@pytest.mark.parametrize("level, dns, delegated, valid, problems, contact, reason", [
    (Level.DV, True, False, True, [], None, None),
    (Level.DV, False, True, True, [], None, None),
    (Level.DV, False, False, True, [], None, Reason.DNS_NOT_WRITABLE),
    (Level.DV, True, False, False, ["the CSR names differ"], None, Reason.APPLICATION_INVALID),
    (Level.OV, True, False, True, [], FULL, None),
    (Level.OV, True, False, True, [], None, Reason.CONTACT_REQUIRED),
    (Level.EV, True, False, True, [], Contact(email="ann@example.com"), Reason.CONTACT_REQUIRED),
    (Level.EV, False, False, False, ["x"], None, Reason.DNS_NOT_WRITABLE),  # DNS is checked first
])
def test_pl5_automatic_start_needs_writable_dns_and_valid_data(level, dns, delegated, valid, problems, contact,
                                                               reason):
    """PL-5: DNS writable or delegated, valid application data, and a contact for OV/EV (DV-6)."""
    refusal = may_start_itself(AutoStartInput(level=level, names=["example.com"], dns_writable=dns,
                                              delegated=delegated, application_valid=valid, problems=problems,
                                              contact=contact))
    assert (refusal.reason if refusal else None) is reason
    if refusal:
        assert refusal.rule == "PL-5" and "example.com" in refusal.message


def test_pl5_messages_say_what_to_do():
    dns = may_start_itself(AutoStartInput(Level.DV, ["a.example.com"], False, False, True))
    assert dns.message == (
        "the application for a.example.com cannot start by itself: no configured DNS provider holds the zone and no "
        "delegation exists; configure a DNS provider for the zone or a delegation of _acme-challenge, or submit the "
        "application manually")
    bad = may_start_itself(AutoStartInput(Level.DV, ["a.example.com"], True, False, False,
                                          ["contact email missing", "CSR names differ"]))
    assert "contact email missing; CSR names differ; fix the application data or submit it manually" in bad.message
    ev = may_start_itself(AutoStartInput(Level.EV, ["a.example.com"], True, False, True, [],
                                         Contact(email="a@example.com")))
    assert "the contact has no name, phone" in ev.message


@pytest.mark.parametrize("state, ok", [
    (Status.NOT_ACTIVATED, True),
    *((s, False) for s in (Status.PENDING_APPLICATION, Status.UNDER_REVIEW, Status.ISSUED, Status.UPLOADED,
                           Status.REJECTED, Status.CANCELLED, Status.REVOKED)),
])
def test_pl7_only_not_activated_can_be_cancelled(state, ok):
    """PL-7: cancelling is for not-activated certificates only."""
    refusal = check_cancel(state)
    assert (refusal is None) is ok
    if not ok:
        assert refusal.reason is Reason.NOT_CANCELLABLE and refusal.rule == "PL-7"
        assert refusal.message.startswith(f"a certificate in state {state.value} cannot be cancelled")


def test_pl7_cancel_restores_one_quota_and_one_managed_credit():
    """PL-7: one quota of the specification and one managed-service credit come back; a VA-5 reissue
    consumed neither, so it gives nothing back; a private-CA certificate (EL-4) cost no quota but its
    plan paid the managed service that would have started it: that credit comes back."""
    spec = Spec(brand="DigiCert", level=Level.OV, cert_type=CertType.SINGLE)
    assert cancel_refund(spec) == [(LedgerKind.QUOTA, "DigiCert/OV/single", 1), (LedgerKind.MANAGED, None, 1)]
    assert cancel_refund(spec, origin=Origin.UPLOADED) == cancel_refund(spec)
    assert cancel_refund(spec, reissue=True) == []
    assert cancel_refund(spec, origin=Origin.PRIVATE_CA) == [(LedgerKind.MANAGED, None, 1)]
