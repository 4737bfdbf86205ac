"""A settable clock for tests: the services, the private CA and the scanner read it; a test moves
it (a review delay or a payment days later is simulated, never slept)."""

from __future__ import annotations

from datetime import UTC, datetime


class Clock:
    """Returns `now` when called; `now` starts at the given instant (default the wall clock)."""

    def __init__(self, now: datetime | None = None):
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now
