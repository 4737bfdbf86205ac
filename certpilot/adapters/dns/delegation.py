"""Validation-free authorization (PL-5): ``_acme-challenge.NAME`` CNAME'd into a zone we write.

The domain owner sets up, once, ``_acme-challenge.www.example.com. CNAME
www.example.com.acme.ops.net.``; a configured provider writes ``acme.ops.net``. CAs follow the
CNAME, so the system validates names whose own zone it cannot write. `DelegatingProvider`
follows the CNAME for present/cleanup and hands the write to the provider of the target zone.
"""

from __future__ import annotations

from collections.abc import Sequence

import dns.exception
import dns.resolver

from certpilot.adapters.dns.base import DnsProvider, normalize_fqdn, provider_for
from certpilot.core.errors import PermanentError, TransientError


def delegation_target(fqdn: str, resolver: dns.resolver.Resolver) -> str | None:
    """The CNAME target of `fqdn` (no trailing dot), or None when `fqdn` is no CNAME.

    Raises:
        TransientError: the resolver did not answer.
    """
    try:
        answer = resolver.resolve(normalize_fqdn(fqdn) + ".", "CNAME", raise_on_no_answer=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers):
        return None
    except dns.exception.Timeout as exc:
        raise TransientError(f"the CNAME lookup of {normalize_fqdn(fqdn)} timed out; retrying") from exc
    if answer.rrset is None:
        return None
    return normalize_fqdn(answer.rrset[0].target.to_text())


class DelegatingProvider:
    """A DnsProvider that writes where ``_acme-challenge`` CNAMEs point, through other providers."""

    name = "delegated"

    def __init__(self, providers: Sequence[DnsProvider], resolver: dns.resolver.Resolver, *,
                 allow_direct: bool = True):
        """Args:
            providers: the providers that write the delegation target zones.
            resolver: the resolver that reads the CNAMEs.
            allow_direct: when a name has no CNAME, write it directly if a provider holds its zone.
        """
        self.providers = tuple(providers)
        self.resolver = resolver
        self.allow_direct = allow_direct

    def __repr__(self) -> str:
        return f"DelegatingProvider({', '.join(p.name for p in self.providers)})"

    def record_name(self, fqdn: str) -> str:
        """Where the TXT value actually lives: the CNAME target, or `fqdn` itself."""
        return delegation_target(fqdn, self.resolver) or normalize_fqdn(fqdn)

    def is_delegated(self, fqdn: str) -> bool:
        """True when `fqdn` is a CNAME into a zone one of the providers writes (PL-5)."""
        target = delegation_target(fqdn, self.resolver)
        return target is not None and provider_for(target, self.providers) is not None

    def _route(self, fqdn: str) -> tuple[str, DnsProvider]:
        target = delegation_target(fqdn, self.resolver)
        name = target or normalize_fqdn(fqdn)
        provider = provider_for(name, self.providers) if (target or self.allow_direct) else None
        if provider is None:
            if target:
                raise PermanentError(
                    f"{normalize_fqdn(fqdn)} is delegated by CNAME to {target}, but no configured DNS "
                    "provider writes that zone; configure one for it or fix the CNAME.")
            raise PermanentError(
                f"{normalize_fqdn(fqdn)} has no _acme-challenge CNAME delegation and no configured DNS "
                "provider holds its zone; add the CNAME or use manual DNS validation.")
        return name, provider

    def zone_for(self, fqdn: str) -> str | None:
        """The zone written for `fqdn` (the delegation target's), or None."""
        try:
            name, provider = self._route(fqdn)
        except PermanentError:
            return None
        return provider.zone_for(name)

    def present(self, fqdn: str, value: str) -> None:
        """Add `value` where `fqdn` points."""
        name, provider = self._route(fqdn)
        provider.present(name, value)

    def cleanup(self, fqdn: str, value: str) -> None:
        """Remove exactly `value` where `fqdn` points (absent: no-op)."""
        name, provider = self._route(fqdn)
        provider.cleanup(name, value)
