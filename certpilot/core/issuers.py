"""Issuers per certificate, renewal timing, Retry-After and ARI windows: pure rules (issue 13).

- Which issuer a certificate is applied to (`choose_issuer`): its own choice
  (`certpilot policy ID --issuer NAME`), else the one it inherited from the certificate it
  renews, else one by origin (a private-CA certificate from a private CA, never silently from a
  public ACME CA; anything else from the default issuer).
- When a certificate is due for renewal (`renewal_due_at`): the later of "N days left" (30) and
  "a fraction of its lifetime left" (one third), so a 45-day certificate is due at day 30 and
  not on the day it was issued; a CA's renewal window (ARI, RFC 9773) overrides both
  (`ari_due_at`), a window already past making the renewal urgent.
- When the CA may be asked again after it said "not before" (`retry_at`, `may_ask_ca`).

Every function takes `now` (or the instant it judges) as an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from certpilot.core.errors import Reason, Refusal
from certpilot.core.models import Origin, utc


class ChoiceSource(StrEnum):
    """Where a certificate's issuer came from."""

    SET = "set"
    """Named for this certificate (`certpilot policy ID --issuer NAME`)."""
    INHERITED = "inherited"
    """Named for the certificate it renews (its lineage, LC-2)."""
    ORIGIN = "origin"
    """By origin: a private-CA certificate from a configured private CA."""
    DEFAULT = "default"
    """The configuration's default issuer."""


@dataclass(frozen=True)
class IssuerChoice:
    """The issuer a certificate is applied to and the fallbacks tried, in order, when it cannot
    take the order (the CA is down or rate-limits)."""

    name: str
    fallbacks: tuple[str, ...] = ()
    source: ChoiceSource = ChoiceSource.DEFAULT

    @property
    def chain(self) -> tuple[str, ...]:
        """The issuer first, then its fallbacks (each once)."""
        return tuple(dict.fromkeys((self.name, *self.fallbacks)))


def is_private_ca_ref(name: str) -> bool:
    """Whether an issuer reference names an embedded private CA (``private-ca`` or ``private-ca/NAME``)."""
    return name == "private-ca" or name.startswith("private-ca/")


def unknown_issuer(names: Sequence[str], configured: Sequence[str], certificate_id: str = "") -> Refusal | None:
    """A refusal naming the first of `names` that is not a configured issuer, or None."""
    for name in names:
        if name not in configured:
            have = ", ".join(configured) or "none"
            target = f"certificate {certificate_id}" if certificate_id else "the certificate"
            return Refusal(Reason.UNKNOWN_ISSUER,
                           f"issuer {name!r} is not configured (configured: {have}); name one of them for {target} "
                           f"(`certpilot policy {certificate_id or 'ID'} --issuer NAME`), or add its block to the "
                           "certpilot-config block's issuers", "")
    return None


def choose_issuer(*, own: IssuerChoice | None, inherited: IssuerChoice | None, origin: Origin,
                  configured: Sequence[str], default: str, certificate_id: str = "") -> IssuerChoice | Refusal:
    """The issuer a certificate is applied to.

    Args:
        own: the choice recorded for this certificate, if any.
        inherited: the choice of the nearest certificate of its lineage that has one, if any.
        origin: where the certificate came from.
        configured: the issuer references configured (e.g. ``private-ca``, ``acme/pebble``).
        default: the default issuer's reference.
        certificate_id: for the refusal's message.

    Returns:
        The choice, or a refusal: a recorded issuer that is no longer configured, or a
        private-CA certificate with no private CA configured (it is never sent to a public CA).
    """
    for choice, source in ((own, ChoiceSource.SET), (inherited, ChoiceSource.INHERITED)):
        if choice is not None:
            refusal = unknown_issuer(choice.chain, configured, certificate_id)
            return refusal or IssuerChoice(choice.name, tuple(f for f in choice.fallbacks if f != choice.name),
                                           source)
    if origin is Origin.PRIVATE_CA:
        private = next((n for n in configured if is_private_ca_ref(n)), None)
        if private is None:
            return Refusal(Reason.UNKNOWN_ISSUER,
                           f"certificate {certificate_id} comes from a private CA, and no private CA issuer is "
                           "configured: it is not sent to a public CA; add a private-ca block to the "
                           "certpilot-config block's issuers, or name an issuer for it "
                           f"(`certpilot policy {certificate_id or 'ID'} --issuer NAME`)", "EL-4")
        return IssuerChoice(private, (), ChoiceSource.ORIGIN)
    refusal = unknown_issuer([default], configured, certificate_id)
    return refusal or IssuerChoice(default, (), ChoiceSource.DEFAULT)


# ---------------------------------------------------------------- renewal timing


@dataclass(frozen=True)
class RenewalTiming:
    """When a certificate becomes due for renewal: the later of `days_left` days before expiry
    and `lifetime_fraction` of its lifetime before expiry."""

    days_left: int = 30
    lifetime_fraction: float = 1 / 3


def renewal_due_at(not_before: datetime, not_after: datetime, timing: RenewalTiming = RenewalTiming()) -> datetime:
    """The instant a certificate becomes due for renewal.

    The later of "`timing.days_left` days left" and "`timing.lifetime_fraction` of the lifetime
    left": a 398-day certificate is due 30 days before expiry, a 90-day one 30 days before, a
    45-day one 15 days before (day 30), a 6-day one 2 days before.

    Args:
        not_before, not_after: the certificate's validity (aware).
        timing: the two limits.
    """
    not_before, not_after = utc(not_before), utc(not_after)
    lifetime = max(not_after - not_before, timedelta(0))
    by_days = not_after - timedelta(days=timing.days_left)
    by_fraction = not_after - lifetime * timing.lifetime_fraction
    return max(by_days, by_fraction)


@dataclass(frozen=True)
class RenewalWindow:
    """A CA's suggested renewal window (ARI, RFC 9773 section 4.2)."""

    start: datetime
    end: datetime
    explanation_url: str = ""


def ari_due_at(window: RenewalWindow, now: datetime, *, fraction: float = 0.0) -> datetime:
    """When to renew inside a CA's suggested window: `fraction` of the way through it (0: at its
    start, the earliest the CA suggests). A window whose end is past (the CA plans to revoke,
    say) makes the renewal due now (urgent).

    Args:
        window: the CA's window.
        now: the time asked.
        fraction: 0..1, where in the window (RFC 9773 suggests a random point; callers pass one
            derived from the certificate id so each scan picks the same point).
    """
    start, end, now = utc(window.start), utc(window.end), utc(now)
    if end <= now:
        return now
    return start + (end - start) * min(max(fraction, 0.0), 1.0)


def window_fraction(certificate_id: str) -> float:
    """Where in a CA's window a certificate is renewed: a fixed point per certificate in [0, 1)
    (RFC 9773 section 4.2 asks for a point spread across the window; fixed, so every scan agrees)."""
    import zlib

    return (zlib.crc32(certificate_id.encode()) % 1000) / 1000


def is_urgent(window: RenewalWindow, now: datetime) -> bool:
    """Whether a CA's window is already over: renew now, whatever the due point said (RFC 9773)."""
    return utc(window.end) <= utc(now)


def due_at(not_before: datetime, not_after: datetime, now: datetime, *, window: RenewalWindow | None = None,
           timing: RenewalTiming = RenewalTiming(), fraction: float = 0.0) -> datetime:
    """The due point: the CA's window when it gives one (ARI overrides), else `renewal_due_at`."""
    if window is not None:
        return ari_due_at(window, now, fraction=fraction)
    return renewal_due_at(not_before, not_after, timing)


# ---------------------------------------------------------------- Retry-After

PARK_AFTER_SECONDS = 60.0
"""A Retry-After longer than this is not waited for in a worker: the application records
"retry at" and the scanner resumes it then."""


@dataclass(frozen=True)
class RetryDecision:
    """What to do with a CA's "not before": `park` it (record `at`) or let the caller retry."""

    park: bool
    at: datetime | None = None
    reason: str = ""


def retry_decision(now: datetime, retry_after: float | None, why: str,
                   park_after: float = PARK_AFTER_SECONDS) -> RetryDecision:
    """A long Retry-After is parked (recorded as "retry at"); a short one (or none) is left to
    the task's ordinary retries.

    Args:
        now: when the CA answered.
        retry_after: the CA's Retry-After in seconds (None: none given).
        why: the CA's words, kept with the record.
        park_after: the longest wait a worker may sleep.
    """
    if retry_after is None or retry_after <= park_after:
        return RetryDecision(False)
    return RetryDecision(True, utc(now) + timedelta(seconds=retry_after), why)


def may_ask_ca(retry_at: datetime | None, now: datetime) -> bool:
    """Whether the CA may be asked now: no "retry at" recorded, or it has come."""
    return retry_at is None or utc(now) >= utc(retry_at)


# ---------------------------------------------------------------- revocation


class RevokeOutcome(BaseModel):
    """A revocation as the `revoke` flow hands it on: which certificate, at which issuer, why;
    `replaced_by` is the certificate deployed in its place first (`--replace`), if any."""

    model_config = ConfigDict(frozen=True)

    certificate_id: str
    issuer: str
    reason: str
    serial: str = ""
    already: bool = False
    replaced_by: str | None = None
    served_at: tuple[str, ...] = ()


class IssuerInForce(BaseModel):
    """A certificate's issuer as the `issuer` flow hands it on (see `operations.issuers.IssuerSettings`)."""

    model_config = ConfigDict(frozen=True)

    certificate_id: str
    issuer: str
    fallbacks: tuple[str, ...] = ()
    source: ChoiceSource
    paid: bool
