"""DNS-01 providers (RFC 2136, Route 53, manual, delegation) and the DV-7 checks."""

from certpilot.adapters.dns.base import DnsProvider, Nameserver, challenge_name, provider_for

__all__ = ["DnsProvider", "Nameserver", "challenge_name", "provider_for"]
