"""LC-4: status derived from dates at the time asked (certpilot.core.status)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from certpilot.core.errors import BadInputError
from certpilot.core.models import Certificate, CertType, Origin, Policy, Status
from certpilot.core.status import days_left, derive_status, renewal_opens

NOT_AFTER = datetime(2025, 9, 30, tzinfo=UTC)


def at(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


def cert(state: Status = Status.ISSUED, not_after: datetime | None = NOT_AFTER) -> Certificate:
    return Certificate(id="c1", common_name="example.com", names=["example.com"], cert_type=CertType.SINGLE,
                       origin=Origin.OFFICIAL, state=state, not_before=at("2024-10-01"), not_after=not_after)


@pytest.mark.parametrize("now, expected", [
    ("2025-07-31T23:59:59", Status.VALID),          # 60 days and 1 second left
    ("2025-08-01T00:00:00", Status.EXPIRING_SOON),  # exactly 60 days left: expiring soon
    ("2025-09-29T12:00:00", Status.EXPIRING_SOON),
    ("2025-09-30T00:00:00", Status.EXPIRING_SOON),  # at not_after: still valid (inclusive), not expired
    ("2025-09-30T00:00:01", Status.EXPIRED),        # once not_after has passed
    ("2024-09-01T00:00:00", Status.VALID),          # before not_before: issued, valid later
])
def test_lc4_status_boundaries(now, expected):
    """LC-4: expiring soon at <= 60 days left, expired when now > not_after."""
    assert derive_status(cert(), at(now), Policy()) is expected


@pytest.mark.parametrize("window, now, expected", [
    (30, "2025-08-01T00:00:00", Status.VALID),
    (30, "2025-08-31T00:00:00", Status.EXPIRING_SOON),
    (90, "2025-07-02T00:00:00", Status.EXPIRING_SOON),
    (90, "2025-07-01T23:59:59", Status.VALID),
])
def test_lc4_window_is_configurable(window, now, expected):
    assert derive_status(cert(), at(now), Policy(expiry_window_days=window)) is expected


def test_lc4_uploaded_certificates_get_a_date_status_too():
    assert derive_status(cert(Status.UPLOADED), at("2025-09-01"), Policy()) is Status.EXPIRING_SOON


@pytest.mark.parametrize("state", [Status.NOT_ACTIVATED, Status.PENDING_APPLICATION, Status.UNDER_REVIEW,
                                   Status.REJECTED, Status.CANCELLED, Status.REVOKED])
def test_lc4_other_lifecycle_states_are_returned_as_is(state):
    """LC-4: only issued/uploaded certificates are dated; a revoked one is revoked even when expired."""
    assert derive_status(cert(state), at("2026-01-01"), Policy()) is state


def test_lc4_issued_without_expiry_keeps_its_state():
    assert derive_status(cert(not_after=None), at("2025-01-01"), Policy()) is Status.ISSUED


@pytest.mark.parametrize("now, left", [
    ("2025-08-01T00:00:00", 60),
    ("2025-09-29T12:00:00", 0),
    ("2025-09-30T00:00:00", 0),
    ("2025-09-30T12:00:00", -1),
    ("2025-10-10T00:00:00", -10),
])
def test_lc4_days_left(now, left):
    assert days_left(cert(), at(now)) == left


def test_lc4_days_left_needs_an_expiry():
    with pytest.raises(BadInputError, match="has no expiry date"):
        days_left(cert(Status.PENDING_APPLICATION, not_after=None), at("2025-01-01"))


def test_lc4_renewal_opens_window_days_before_expiry():
    assert renewal_opens(NOT_AFTER, Policy()) == at("2025-08-01")
