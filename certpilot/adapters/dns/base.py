"""The DNS provider Protocol every DNS-01 writer implements, and what they share.

A provider writes and removes TXT values at ``_acme-challenge`` names. ``cleanup`` removes exactly
the value it is given and leaves the others: a wildcard and its base name put two values on
the same name at once. Errors say whether to retry: `TransientError` (network, timeouts,
throttling) or `PermanentError` (bad key, refused update, unknown zone) with a sentence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

Nameserver = tuple[str, int]
"""An authoritative server as (IP address, port)."""

ACME_CHALLENGE = "_acme-challenge"


@runtime_checkable
class DnsProvider(Protocol):
    """Writes TXT values for DNS-01 validation."""

    name: str
    """A short label for logs and refusals (``rfc2136``, ``route53``, ``manual``, ...)."""

    def present(self, fqdn: str, value: str) -> None:
        """Add `value` to the TXT RRset at `fqdn` (idempotent; other values stay)."""
        ...

    def cleanup(self, fqdn: str, value: str) -> None:
        """Remove exactly `value` from the TXT RRset at `fqdn` (absent value: no-op)."""
        ...

    def zone_for(self, fqdn: str) -> str | None:
        """The zone this provider writes that holds `fqdn`, or None when it holds none."""
        ...


def normalize_fqdn(fqdn: str) -> str:
    """Lower-case, no trailing dot: the form providers compare names in."""
    return fqdn.strip().rstrip(".").lower()


def challenge_name(name: str) -> str:
    """The DNS-01 record name of a certificate name (``*.a.example`` → ``_acme-challenge.a.example``)."""
    base = normalize_fqdn(name)
    if base.startswith("*."):
        base = base[2:]
    return f"{ACME_CHALLENGE}.{base}"


def longest_zone(fqdn: str, zones: Iterable[str]) -> str | None:
    """The longest zone of `zones` that is `fqdn` or one of its parents, or None."""
    name = normalize_fqdn(fqdn)
    best: str | None = None
    for zone in zones:
        z = normalize_fqdn(zone)
        if (name == z or name.endswith("." + z)) and (best is None or len(z) > len(best)):
            best = z
    return best


def provider_for(fqdn: str, providers: Sequence[DnsProvider]) -> DnsProvider | None:
    """The provider holding the most specific zone for `fqdn`, or None when none holds it."""
    best: tuple[int, DnsProvider] | None = None
    for p in providers:
        zone = p.zone_for(fqdn)
        if zone is not None and (best is None or len(zone) > best[0]):
            best = (len(zone), p)
    return best[1] if best else None
