"""certpilot.config: the policy and the CA/B schedule are data files (VA-5: "the schedule is data")."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from certpilot.config import load_policy, load_schedule
from certpilot.core.models import OrderKind, Policy
from certpilot.core.validity import CabfSchedule


def test_va5_shipped_schedule_is_the_sc081_steps():
    """VA-5: config/cabf_validity.toml holds 398 → 200 (2026-03-15) → 100 (2027-03-15) → 47 (2029-03-15)."""
    assert load_schedule() == CabfSchedule(((date(2020, 9, 1), 398), (date(2026, 3, 15), 200),
                                            (date(2027, 3, 15), 100), (date(2029, 3, 15), 47)))


def test_shipped_defaults_are_the_seed_policy():
    """LC-4 (60 days), VA-1 (365 + 30), PL-4 (30/15), PAY-2 (30), UP-1 (5): defaults.toml equals Policy()."""
    assert load_policy() == Policy()


def test_policy_file_overrides_and_keeps_missing_defaults(tmp_path):
    f = tmp_path / "defaults.toml"
    f.write_text("[policy]\nexpiry_window_days = 45\nnotice_days = [7, 1]\n\n"
                 "[policy.managed_start_days]\npurchase = 20\n")
    p = load_policy(f)
    assert p.expiry_window_days == 45 and p.notice_days == (7, 1)
    assert p.managed_start_days == {OrderKind.RENEWAL: 30, OrderKind.PURCHASE: 20, OrderKind.EMERGENCY: 30}
    assert p.standard_validity_days == 365


@pytest.mark.parametrize("text, error, match", [
    ("[policy.managed_start_days]\nrefund = 3\n", ValueError, "refund"),
    ("[policy\n", ValueError, "not valid TOML"),
    ("[policy]\nexpiry_window_days = 'soon'\n", ValueError, "expiry_window_days"),
])
def test_bad_policy_files_are_refused(tmp_path, text, error, match):
    f = tmp_path / "defaults.toml"
    f.write_text(text)
    with pytest.raises(error, match=match):
        load_policy(f)


def test_va5_schedule_file_can_be_replaced(tmp_path):
    f = tmp_path / "cabf.toml"
    f.write_text('[[steps]]\nfrom = 2020-09-01\nmax_days = 398\n[[steps]]\nfrom = "2026-03-15"\nmax_days = 180\n')
    assert load_schedule(f).max_days(datetime(2026, 3, 15, tzinfo=UTC)) == 180


def test_missing_file_says_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="cabf.toml is missing"):
        load_schedule(tmp_path / "cabf.toml")
