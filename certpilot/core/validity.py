"""Validity windows (VA-1..VA-5). Pure; exact datetime arithmetic, no rounding to days.

Dates given as dates (the seed's "2025-09-30") mean 00:00:00Z of that day. With that convention
the seed's example comes out exactly: old 2024-10-01 .. 2025-09-30, renewed and issued
2025-09-10 → 2025-09-10 .. 2026-09-30, 385 days (VA-2).

- VA-1/VA-2 (renewal of an official certificate issued at t, old expiry A):
  ``carry = min(max(0, A - t), cap)``; ``not_after = t + 365 d + carry``. Inside the last 30
  days this is always ``A + 365 d`` (VA-2: fixed, whenever in those days it is issued); earlier
  the carry is capped, so ``t + 395 d``. After A nothing carries: ``t + 365 d``.
- VA-3 (purchase, uploaded replacement): ``t .. t + 365 d``.
- VA-5: a publicly trusted certificate issued at t lasts at most `CabfSchedule.max_days(t)`
  whole days (``not_after <= not_before + max_days``); the schedule is data
  (config/cabf_validity.toml). A step applies from 00:00:00Z of its date.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from certpilot.core.errors import BadInputError, Reason
from certpilot.core.models import OrderKind, Policy, utc

DAY = timedelta(days=1)


@dataclass(frozen=True)
class Window:
    """A validity window [not_before, not_after], timezone-aware UTC."""

    not_before: datetime
    not_after: datetime

    @property
    def days(self) -> int:
        """Length in whole days, rounded down."""
        return (self.not_after - self.not_before) // DAY

    def __str__(self) -> str:
        return f"{self.not_before.isoformat()} .. {self.not_after.isoformat()} ({self.days} days)"


@dataclass(frozen=True)
class CabfSchedule:
    """VA-5: the CA/Browser Forum's maximum validity by issue date (ballot SC-081).

    `steps` are ``(from_date, max_days)`` in ascending date order; a step is in force from
    00:00:00Z of its date until the next step's date. An issue date before the first step gets
    the first step's maximum.
    """

    steps: tuple[tuple[date, int], ...]

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("a CA/B validity schedule needs at least one step")
        dates = [d for d, _ in self.steps]
        if dates != sorted(dates) or len(set(dates)) != len(dates):
            raise ValueError(f"CA/B schedule steps must have distinct ascending dates, got {dates}")
        if any(days <= 0 for _, days in self.steps):
            raise ValueError("CA/B schedule maxima must be positive numbers of days")

    def max_days(self, issued_at: datetime) -> int:
        """The maximum validity in days for a certificate issued at `issued_at` (UTC date)."""
        day = utc(issued_at).date()
        allowed = self.steps[0][1]
        for start, days in self.steps:
            if day >= start:
                allowed = days
            else:
                break
        return allowed

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CabfSchedule:
        """Build from ``{"steps": [{"from": date|"YYYY-MM-DD", "max_days": int}, ...]}`` (the TOML shape).

        Raises:
            ValueError: a step lacks a field, has a bad date, or the steps are not ascending.
        """
        steps: list[tuple[date, int]] = []
        for i, step in enumerate(data.get("steps", [])):
            try:
                start = step["from"]
                if isinstance(start, datetime):
                    start = utc(start).date()
                elif not isinstance(start, date):
                    start = date.fromisoformat(str(start))
                steps.append((start, int(step["max_days"])))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"CA/B schedule step {i + 1} ({step!r}) is invalid: {exc}") from None
        return cls(tuple(steps))


def renewed_validity(old_not_after: datetime, issued_at: datetime, policy: Policy) -> Window:
    """VA-1/VA-2: the window of a renewal of an official certificate (before any VA-5 cap).

    Args:
        old_not_after: the renewed certificate's expiry (A).
        issued_at: when the new certificate is (expected to be) issued (t).
        policy: standard validity (365 d) and carry-over cap (30 d).

    Returns:
        ``Window(t, t + 365 d + min(max(0, A - t), 30 d))``.
    """
    t, a = utc(issued_at), utc(old_not_after)
    carry = min(max(timedelta(0), a - t), timedelta(days=policy.carry_over_cap_days))
    return Window(t, t + timedelta(days=policy.standard_validity_days) + carry)


def fresh_validity(issued_at: datetime, policy: Policy) -> Window:
    """VA-3: a purchase or an uploaded certificate's replacement: 365 days from issue, no carry-over."""
    t = utc(issued_at)
    return Window(t, t + timedelta(days=policy.standard_validity_days))


def cap_validity(window: Window, schedule: CabfSchedule, publicly_trusted: bool) -> Window:
    """VA-5: cut `window` to the CA/B maximum in force on its issue date (`not_before`).

    Private-CA certificates (``publicly_trusted=False``) follow their CA's own policy and are
    returned unchanged.
    """
    if not publicly_trusted:
        return window
    limit = window.not_before + timedelta(days=schedule.max_days(window.not_before))
    return window if window.not_after <= limit else Window(window.not_before, limit)


def coverage_term(kind: OrderKind, issued_at: datetime, old_not_after: datetime | None, years: int,
                  policy: Policy) -> Window:
    """VA-5: what the customer bought: the term the plan's certificates must cover together.

    Renewal: ``old_not_after + 365 d × years`` (when the old certificate has already expired,
    from `issued_at`, as nothing carries over). Purchase and emergency: ``issued_at + 365 d × years``.
    The window starts at `issued_at`.

    Raises:
        BadInputError: a renewal without `old_not_after`.
    """
    t = utc(issued_at)
    year = timedelta(days=policy.standard_validity_days)
    if kind is OrderKind.RENEWAL:
        if old_not_after is None:
            raise BadInputError("a renewal's coverage term needs the renewed certificate's expiry date",
                                Reason.BAD_INPUT)
        base = max(utc(old_not_after), t)
    else:
        base = t
    return Window(t, base + year * years)
