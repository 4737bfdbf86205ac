"""Manual DNS validation (DV-3): the system has no write access; a human adds the record.

`ManualDns.present` never writes. When the value is not yet served by the authoritative
servers it raises `ManualActionRequired` carrying the exact record to add (a `ManualRecord`
with a one-line zone-file instruction); when a human already added it, it returns quietly, so
a re-run flow goes on. `cleanup` likewise asks a human to remove a value still served, and is a
no-op otherwise. `wait_visible` polls the authoritative servers until the record shows up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from certpilot.adapters.dns.base import Nameserver, longest_zone, normalize_fqdn
from certpilot.adapters.dns.checks import record_visible, wait_until_visible
from certpilot.core.errors import CertpilotError, PermanentError


@dataclass(frozen=True)
class ManualRecord:
    """One TXT record a human must add (or remove) at their DNS host."""

    fqdn: str
    type: str
    value: str
    ttl: int
    action: str = "add"
    """``add`` or ``remove``."""

    @property
    def zone_line(self) -> str:
        """The record as one zone-file line, e.g. ``_acme-challenge.www.example.com. 300 IN TXT "v"``."""
        return f'{normalize_fqdn(self.fqdn)}. {self.ttl} IN {self.type} "{self.value}"'

    @property
    def instruction(self) -> str:
        """A sentence for the operator."""
        verb = "Add this record at your DNS host" if self.action == "add" else \
            "Remove this record at your DNS host (validation is over)"
        return f"{verb}: {self.zone_line}"


class ManualActionRequired(CertpilotError):
    """A human must change a DNS record before the flow can go on (DV-3); not retried."""

    def __init__(self, records: Sequence[ManualRecord]):
        self.records = tuple(records)
        super().__init__("; ".join(r.instruction for r in self.records))


class ManualDns:
    """The DnsProvider of DV-3: produces the records for a human, then checks they are served."""

    name = "manual"
    needs_human = True

    def __init__(self, nameservers: Sequence[Nameserver] | Callable[[str], Sequence[Nameserver]], *,
                 zones: Sequence[str] = (), ttl: int = 300, query_timeout: float = 2.0):
        """Args:
            nameservers: the authoritative servers to check, or a function of the record name
                returning them (production: ``authoritative_servers(find_zone(...))``).
            zones: the zones the operator manages by hand (empty: any zone).
            ttl: the TTL suggested in the instruction.
        """
        self._nameservers = nameservers
        self.zones = tuple(normalize_fqdn(z) for z in zones)
        self.ttl, self.query_timeout = ttl, query_timeout

    def nameservers_for(self, fqdn: str) -> list[Nameserver]:
        """The authoritative servers asked about `fqdn`."""
        ns = self._nameservers(fqdn) if callable(self._nameservers) else self._nameservers
        return list(ns)

    def zone_for(self, fqdn: str) -> str | None:
        """The configured zone holding `fqdn` (with no zones configured: its parent domain)."""
        if self.zones:
            return longest_zone(fqdn, self.zones)
        name = normalize_fqdn(fqdn)
        return name.split(".", 1)[1] if "." in name else name

    def record(self, fqdn: str, value: str, action: str = "add") -> ManualRecord:
        """The record a human must add (or remove) for `value` at `fqdn`."""
        return ManualRecord(normalize_fqdn(fqdn), "TXT", value, self.ttl, action)

    def visible(self, fqdn: str, value: str) -> bool:
        """True when every authoritative server serves the value."""
        return record_visible(fqdn, value, self.nameservers_for(fqdn), timeout=self.query_timeout)

    def present(self, fqdn: str, value: str) -> None:
        """Return when the value is already served; otherwise ask a human to add it.

        Raises:
            ManualActionRequired: with the record to add.
        """
        if self.visible(fqdn, value):
            return
        raise ManualActionRequired([self.record(fqdn, value)])

    def cleanup(self, fqdn: str, value: str) -> None:
        """No-op when the value is gone; otherwise ask a human to remove it.

        Raises:
            ManualActionRequired: with the record to remove.
        """
        if not any(value in (s or set()) for s in self._served(fqdn)):
            return
        raise ManualActionRequired([self.record(fqdn, value, "remove")])

    def _served(self, fqdn: str):
        from certpilot.adapters.dns.checks import txt_values_at

        return [txt_values_at(fqdn, ns, timeout=self.query_timeout) for ns in self.nameservers_for(fqdn)]

    def wait_visible(self, fqdn: str, value: str, timeout: float, *, first_delay: float = 0.05) -> float:
        """Poll the authoritative servers until the human's record is served (DV-7).

        Returns:
            Seconds waited.

        Raises:
            RefusedError: RECORD_NOT_VISIBLE when the deadline passes.
            PermanentError: no authoritative server is known for the name.
        """
        servers = self.nameservers_for(fqdn)
        if not servers:
            raise PermanentError(f"no authoritative server is known for {normalize_fqdn(fqdn)}; "
                                 "check that its zone is delegated")
        return wait_until_visible(fqdn, value, servers, timeout, first_delay=first_delay)
