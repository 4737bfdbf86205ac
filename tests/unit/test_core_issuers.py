"""Issuers per certificate, renewal timing, ARI windows and Retry-After (certpilot.core.issuers),
and the scanner's use of them. Fixed clock, exact values.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certpilot.core.errors import Refusal
from certpilot.core.issuers import (
    ChoiceSource,
    IssuerChoice,
    RenewalTiming,
    RenewalWindow,
    ari_due_at,
    choose_issuer,
    due_at,
    is_urgent,
    may_ask_ca,
    renewal_due_at,
    retry_decision,
)
from certpilot.core.models import Origin, Policy
from certpilot.core.scan import ScanRow, decide

D = timedelta(days=1)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("lifetime_days, due_day", [
    (45, 30),     # a 45-day certificate: due at day 30 (a third of its life left), not day 1
    (90, 60),     # 90 days: 30 days left and a third of its life coincide
    (398, 368),   # a long one: 30 days left
    (6, 4),       # short-lived: 2 days left
    (30, 20),     # 30 days: a third left (not "30 days left", which would be day 0)
])
def test_renewal_due_later_of_30_days_and_third_of_lifetime(lifetime_days, due_day):
    assert renewal_due_at(T0, T0 + lifetime_days * D) == T0 + due_day * D


def test_renewal_due_configurable():
    timing = RenewalTiming(days_left=10, lifetime_fraction=0.5)
    assert renewal_due_at(T0, T0 + 90 * D, timing) == T0 + 80 * D   # 10 days left is later than half
    assert renewal_due_at(T0, T0 + 12 * D, timing) == T0 + 6 * D     # half is later than 10 days left


def _row(not_before: datetime, not_after: datetime) -> ScanRow:
    return ScanRow("short", "short.example.test", "issued", "official", not_after, None, None, 0, None, None, True,
                   not_before=not_before)


@pytest.mark.parametrize("day, due", [(1, False), (29, False), (30, True), (44, True)])
def test_scan_45_day_certificate_due_at_day_30_not_day_1(day, due):
    """The scanner opens the automatic renewal of a 45-day certificate at day 30 (it is "expiring
    soon" by the 60-day window from its first day)."""
    rows = [_row(T0, T0 + 45 * D)]
    decision = decide(rows, T0 + day * D, Policy())
    assert [r.certificate_id for r in decision.renewals_due] == (["short"] if due else [])


def test_scan_without_not_before_keeps_the_window_rule():
    """Rows without a validity start (older callers) are decided by the expiry window alone."""
    rows = [ScanRow("old", "old.example.test", "issued", "official", T0 + 20 * D, None, None, 0, None, None, True)]
    assert [r.certificate_id for r in decide(rows, T0, Policy()).renewals_due] == ["old"]


def test_scan_leaves_an_application_waiting_for_the_ca_alone():
    rows = [ScanRow("p", "p.example.test", "pending_application", "official", None, "o1", "renewal", 0, None, False,
                    True, retry_at=T0 + 3600 * timedelta(seconds=1))]
    assert decide(rows, T0, Policy()).resume_applications == []
    assert decide(rows, T0 + timedelta(hours=1), Policy()).resume_applications == ["p"]


CONFIGURED = ["acme/le", "private-ca", "aws-pca/corp"]


@pytest.mark.parametrize("own, inherited, origin, expected", [
    (IssuerChoice("aws-pca/corp", ("acme/le",)), None, Origin.OFFICIAL,
     IssuerChoice("aws-pca/corp", ("acme/le",), ChoiceSource.SET)),
    (None, IssuerChoice("private-ca"), Origin.OFFICIAL, IssuerChoice("private-ca", (), ChoiceSource.INHERITED)),
    (None, None, Origin.PRIVATE_CA, IssuerChoice("private-ca", (), ChoiceSource.ORIGIN)),
    (None, None, Origin.UPLOADED, IssuerChoice("acme/le", (), ChoiceSource.DEFAULT)),
    (IssuerChoice("acme/le", ("acme/le", "private-ca")), None, Origin.OFFICIAL,
     IssuerChoice("acme/le", ("private-ca",), ChoiceSource.SET)),  # itself is no fallback of itself
])
def test_choose_issuer(own, inherited, origin, expected):
    assert choose_issuer(own=own, inherited=inherited, origin=origin, configured=CONFIGURED, default="acme/le",
                         certificate_id="c1") == expected


def test_choose_issuer_refusals():
    gone = choose_issuer(own=IssuerChoice("acme/old"), inherited=None, origin=Origin.OFFICIAL, configured=CONFIGURED,
                         default="acme/le", certificate_id="c1")
    assert isinstance(gone, Refusal) and gone.reason.value == "UnknownIssuer"
    assert "acme/old" in gone.message and "certpilot policy c1 --issuer NAME" in gone.message
    private = choose_issuer(own=None, inherited=None, origin=Origin.PRIVATE_CA, configured=["acme/le"],
                            default="acme/le", certificate_id="c2")
    assert isinstance(private, Refusal) and "not sent to a public CA" in private.message


def test_ari_window_inside_past_and_override():
    window = RenewalWindow(T0 + 10 * D, T0 + 12 * D)
    assert ari_due_at(window, T0, fraction=0.0) == T0 + 10 * D
    assert ari_due_at(window, T0, fraction=0.5) == T0 + 11 * D
    assert not is_urgent(window, T0)
    past = RenewalWindow(T0 - 2 * D, T0 - D)  # the CA moved the window into the past: revocation ahead
    assert is_urgent(past, T0) and ari_due_at(past, T0) == T0
    # ARI overrides the lifetime rule (a 90-day certificate would be due at day 60)
    assert due_at(T0, T0 + 90 * D, T0, window=window) == T0 + 10 * D
    assert due_at(T0, T0 + 90 * D, T0) == T0 + 60 * D


@pytest.mark.parametrize("retry_after, parked, at", [
    (3600, True, T0 + timedelta(hours=1)),
    (61, True, T0 + timedelta(seconds=61)),
    (60, False, None),   # a minute is waited in the task's retry
    (None, False, None),
])
def test_retry_after_parked_when_long(retry_after, parked, at):
    d = retry_decision(T0, retry_after, "rateLimited")
    assert (d.park, d.at) == (parked, at)


def test_may_ask_ca_never_early():
    at = T0 + timedelta(hours=1)
    assert not may_ask_ca(at, at - timedelta(seconds=1))
    assert may_ask_ca(at, at) and may_ask_ca(None, T0)


def test_renewal_timing_read_from_the_defaults_file(tmp_path):
    from certpilot.config import load_timing

    assert load_timing() == RenewalTiming()  # config/defaults.toml: the 30 days / one third
    f = tmp_path / "defaults.toml"
    f.write_text("[renewal_timing]\ndays_left = 10\nlifetime_fraction = 0.5\n")
    assert load_timing(f) == RenewalTiming(days_left=10, lifetime_fraction=0.5)
    f.write_text("[renewal_timing]\nlifetime_fraction = 2\n")
    with pytest.raises(ValueError, match="renewal_timing"):
        load_timing(f)
    rows = [_row(T0, T0 + 45 * D)]
    assert decide(rows, T0 + 20 * D, Policy()).renewals_due == []
    assert [r.certificate_id for r in decide(rows, T0 + 20 * D, Policy(),
                                             timing=RenewalTiming(lifetime_fraction=0.6)).renewals_due] == ["short"]
