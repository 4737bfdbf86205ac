"""Status derived from dates (LC-4). Pure; `now` is always an argument.

Boundaries, precisely (X.509 `notAfter` is inclusive: the certificate is valid *at* not_after):
- EXPIRED when ``now > not_after``;
- EXPIRING_SOON when ``not_after - now <= window`` (and not expired): at exactly 60 days left it
  is expiring soon, at 60 days and one second left it is still VALID;
- VALID otherwise (also before not_before: the certificate is issued, just not yet in force).
Only ISSUED and UPLOADED certificates get a date status; every other lifecycle state is
returned as is.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from certpilot.core.errors import BadInputError, Reason
from certpilot.core.models import Certificate, Policy, Status, utc

DATED_STATES = frozenset({Status.ISSUED, Status.UPLOADED})
"""Lifecycle states whose status is derived from the validity dates."""


_ZERO = timedelta(0)


def status_of_remaining(left: timedelta, window: timedelta) -> Status:
    """LC-4 on the validity left (``not_after - now``): the one place the boundaries live.

    Args:
        left: time from now to not_after (negative once expired).
        window: the expiry window (`Policy.expiry_window`, default 60 days).
    """
    if left < _ZERO:
        return Status.EXPIRED
    if left <= window:
        return Status.EXPIRING_SOON
    return Status.VALID


def status_at(not_after: datetime, now: datetime, policy: Policy) -> Status:
    """LC-4 for a bare expiry date: VALID, EXPIRING_SOON or EXPIRED at `now` (see module)."""
    return status_of_remaining(utc(not_after) - utc(now), policy.expiry_window)


def derive_status(cert: Certificate, now: datetime, policy: Policy) -> Status:
    """LC-4: the status of `cert` at `now`.

    Args:
        cert: the certificate (its `state` and `not_after` are read).
        now: timezone-aware time asked about.
        policy: supplies the expiry window (default 60 days).

    Returns:
        VALID / EXPIRING_SOON / EXPIRED for ISSUED and UPLOADED certificates with a `not_after`;
        the lifecycle state for every other certificate.
    """
    if cert.state not in DATED_STATES or cert.not_after is None:
        return cert.state
    return status_at(cert.not_after, now, policy)


def days_left(cert: Certificate, now: datetime) -> int:
    """Whole days of validity left at `now`, rounded down; negative once expired.

    12 hours left → 0; expired 12 hours ago → -1.

    Raises:
        BadInputError: the certificate has no `not_after` (not issued yet).
    """
    if cert.not_after is None:
        raise BadInputError(f"certificate {cert.id} ({cert.common_name}) has no expiry date yet: it is "
                            f"{cert.state.value}, not issued", Reason.BAD_INPUT)
    return (cert.not_after - utc(now)) // timedelta(days=1)


def renewal_opens(not_after: datetime, policy: Policy) -> datetime:
    """LC-4/EL-1a: when a certificate becomes expiring soon (renewal opens): not_after − window."""
    return utc(not_after) - policy.expiry_window
