"""VA-1, VA-2, VA-3, VA-5: validity windows and the CA/B schedule (certpilot.core.validity)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from certpilot.core.errors import BadInputError
from certpilot.core.models import OrderKind, Policy
from certpilot.core.validity import (
    CabfSchedule,
    Window,
    cap_validity,
    coverage_term,
    fresh_validity,
    renewed_validity,
)

P = Policy()
SCHEDULE = CabfSchedule(((date(2020, 9, 1), 398), (date(2026, 3, 15), 200), (date(2027, 3, 15), 100),
                         (date(2029, 3, 15), 47)))


def at(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


@pytest.mark.parametrize("old_not_after, issued, not_after, days", [
    ("2025-09-30", "2025-09-10", "2026-09-30", 385),   # the seed's scenario: 365 + 20 days
    ("2025-09-30", "2025-09-15", "2026-09-30", 380),   # any day of the last 30: same expiry
    ("2025-09-30", "2025-08-31", "2026-09-30", 395),   # exactly 30 days left: still fixed
    ("2025-09-30", "2025-09-30", "2026-09-30", 365),   # issued on the expiry day: nothing to carry
    ("2025-09-30", "2025-09-10T13:45:00", "2026-09-30", 384),  # time of day changes nothing (VA-2)
])
def test_va2_expiry_fixed_within_last_30_days(old_not_after, issued, not_after, days):
    """VA-2: issued within 30 days of the old expiry → old not_after + 365 days."""
    w = renewed_validity(at(old_not_after), at(issued), P)
    assert w == Window(at(issued), at(not_after))
    assert w.days == days


@pytest.mark.parametrize("old_not_after, issued, not_after", [
    ("2025-09-30", "2025-08-01", "2026-08-31"),            # 60 days left: carry-over capped at 30
    ("2025-09-30", "2025-08-30T23:59:59", "2026-09-29T23:59:59"),  # 30 d 1 s left: cap, 395 days
    ("2025-09-30", "2025-03-01", "2026-03-31"),
    ("2025-09-30", "2025-10-05", "2026-10-05"),            # already expired: nothing carries over
])
def test_va1_carry_over_capped_at_30_days(old_not_after, issued, not_after):
    """VA-1: 365 days + min(remaining, 30 days)."""
    assert renewed_validity(at(old_not_after), at(issued), P).not_after == at(not_after)


def test_va1_cap_and_year_come_from_policy():
    w = renewed_validity(at("2025-09-30"), at("2025-08-01"), Policy(carry_over_cap_days=10, standard_validity_days=360))
    assert w.not_after == at("2026-08-06")  # 360 + 10 days


@pytest.mark.parametrize("issued, not_after", [
    ("2025-09-10", "2026-09-10"),
    ("2027-12-31T08:00:00", "2028-12-30T08:00:00"),  # leap year: 365 days, not "same date"
])
def test_va3_purchase_is_365_days_without_carry_over(issued, not_after):
    """VA-3: a purchase or uploaded replacement is valid 12 months from its own issue date."""
    w = fresh_validity(at(issued), P)
    assert w == Window(at(issued), at(not_after)) and w.days == 365


@pytest.mark.parametrize("issued, max_days", [
    ("2019-01-01T00:00:00", 398),   # before the first step: the first step's maximum
    ("2025-09-10T00:00:00", 398),
    ("2026-03-14T23:59:59", 398),
    ("2026-03-15T00:00:00", 200),
    ("2027-03-14T23:59:59", 200),
    ("2027-03-15T00:00:00", 100),
    ("2029-03-14T23:59:59", 100),
    ("2029-03-15T00:00:00", 47),
    ("2035-01-01T00:00:00", 47),
])
def test_va5_cabf_maximum_by_issue_date(issued, max_days):
    """VA-5: 398 days before 2026-03-15, 200 from it, 100 from 2027-03-15, 47 from 2029-03-15."""
    assert SCHEDULE.max_days(at(issued)) == max_days


def test_va5_issue_date_is_taken_in_utc():
    """VA-5: 2026-03-15T01:00+02:00 is 2026-03-14T23:00Z: the 398-day step still applies."""
    plus2 = datetime(2026, 3, 15, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    assert SCHEDULE.max_days(plus2) == 398
    assert SCHEDULE.max_days(datetime(2026, 3, 14, 23, 0, tzinfo=timezone(timedelta(hours=-1)))) == 200


@pytest.mark.parametrize("issued, publicly_trusted, not_after", [
    ("2025-09-10T00:00:00", True, "2026-09-30T00:00:00"),   # 385 <= 398: unchanged
    ("2026-03-14T23:59:59", True, "2027-03-14T23:59:59"),   # 365 <= 398
    ("2026-03-15T00:00:00", True, "2026-10-01T00:00:00"),   # cut to 200 days
    ("2027-03-15T00:00:00", True, "2027-06-23T00:00:00"),   # cut to 100 days
    ("2029-03-15T00:00:00", True, "2029-05-01T00:00:00"),   # cut to 47 days
    ("2029-03-15T00:00:00", False, "2030-03-15T00:00:00"),  # private CA: its own policy, no cut
])
def test_va5_cap_validity(issued, publicly_trusted, not_after):
    """VA-5: the window is cut to the maximum in force on its issue date (publicly trusted only)."""
    start = at(issued)
    end = at("2026-09-30") if issued.startswith("2025") else start + timedelta(days=365)
    capped = cap_validity(Window(start, end), SCHEDULE, publicly_trusted)
    assert capped == Window(start, at(not_after))


@pytest.mark.parametrize("kind, issued, old, years, end", [
    (OrderKind.RENEWAL, "2025-09-10", "2025-09-30", 1, "2026-09-30"),
    (OrderKind.RENEWAL, "2025-09-10", "2025-09-30", 3, "2028-09-29"),   # 3 × 365 days (2028 is leap)
    (OrderKind.RENEWAL, "2025-10-10", "2025-09-30", 1, "2026-10-10"),   # old already expired: from issue
    (OrderKind.PURCHASE, "2025-09-10", None, 2, "2027-09-10"),
    (OrderKind.EMERGENCY, "2025-09-10", None, 1, "2026-09-10"),
])
def test_va5_coverage_term(kind, issued, old, years, end):
    """VA-5: renewal → old not_after + 365 d × years; purchase → issue date + 365 d × years."""
    w = coverage_term(kind, at(issued), at(old) if old else None, years, P)
    assert w == Window(at(issued), at(end))


def test_va5_renewal_coverage_needs_the_old_expiry():
    with pytest.raises(BadInputError, match="expiry date"):
        coverage_term(OrderKind.RENEWAL, at("2025-09-10"), None, 1, P)


def test_va5_schedule_from_mapping_accepts_toml_shapes():
    """VA-5: the schedule is data: TOML dates, ISO strings or datetimes."""
    s = CabfSchedule.from_mapping({"steps": [
        {"from": date(2020, 9, 1), "max_days": 398},
        {"from": "2026-03-15", "max_days": 200},
        {"from": datetime(2027, 3, 15, tzinfo=UTC), "max_days": "100"},
    ]})
    assert s.steps == ((date(2020, 9, 1), 398), (date(2026, 3, 15), 200), (date(2027, 3, 15), 100))


@pytest.mark.parametrize("data, message", [
    ({"steps": []}, "at least one step"),
    ({"steps": [{"from": "2026-03-15"}]}, "step 1"),
    ({"steps": [{"from": "15/03/2026", "max_days": 200}]}, "step 1"),
    ({"steps": [{"from": "2027-03-15", "max_days": 100}, {"from": "2026-03-15", "max_days": 200}]}, "ascending"),
    ({"steps": [{"from": "2026-03-15", "max_days": 0}]}, "positive"),
])
def test_va5_schedule_rejects_bad_data(data, message):
    with pytest.raises(ValueError, match=message):
        CabfSchedule.from_mapping(data)


def test_window_days_rounds_down():
    assert Window(at("2025-01-01"), at("2025-01-31T23:00:00")).days == 30
