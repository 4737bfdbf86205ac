"""Alibaba Cloud DNS (AliDNS, API 2015-01-09) TXT records for DNS-01, through the official SDK.

AliDNS stores each value of a name as its own record (``RR`` relative to the domain, ``Type``,
``Value``, a ``RecordId``), so one value is added or removed without touching the others: a
wildcard and its base name keep two TXT values on one name at once. Calls go through
`certpilot.adapters.alibaba.client.AlibabaApi`, which maps throttling and 5xx answers to
`TransientError` (retried by the tasks) and other refusals to `PermanentError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from certpilot.adapters.dns.base import longest_zone, normalize_fqdn
from certpilot.core.errors import PermanentError

DUPLICATE = "DomainRecordDuplicate"
"""AliDNS's code for a record identical to one that exists (RR, Type and Value)."""

_PAGE_SIZE = 100


class AliDnsProvider:
    """Adds and removes single TXT values in the AliDNS domains (zones) of one account.

    The zones written are the configured ones or, when none are configured, every domain the
    account holds (``DescribeDomains``, listed once per provider). A name belongs to the longest
    zone that is it or one of its parents.
    """

    name = "alidns"

    def __init__(self, api: Any, *, zones: Sequence[str] = (), ttl: int = 600) -> None:
        """Args:
            api: the AliDNS `AlibabaApi` (``AlibabaConnection.alidns()``).
            zones: the AliDNS domains this provider may write; all of the account's when empty.
            ttl: TTL of the TXT records written (AliDNS's free edition allows 600 and more).
        """
        self._api = api
        self._zones: tuple[str, ...] | None = tuple(normalize_fqdn(z) for z in zones) or None
        self.ttl = ttl

    def __repr__(self) -> str:
        zones = ", ".join(self._zones) if self._zones else "<account's domains>"
        return f"AliDnsProvider({self._api!r}, zones={zones}, ttl={self.ttl})"

    # ---------------------------------------------------------------- zones
    def zones(self) -> tuple[str, ...]:
        """The zones this provider writes (the account's domains are listed on first use).

        Raises:
            TransientError: AliDNS is throttling or unreachable.
            PermanentError: AliDNS refused the listing (e.g. the key lacks ``alidns:DescribeDomains``).
        """
        if self._zones is None:
            from alibabacloud_alidns20150109.models import DescribeDomainsRequest

            found: list[str] = []
            page = 1
            while True:
                body = self._api.call("listing the AliDNS domains of the account", "describe_domains",
                                      DescribeDomainsRequest(page_number=page, page_size=_PAGE_SIZE))
                domains = (body.domains.domain if body.domains else None) or []
                found += [normalize_fqdn(d.domain_name) for d in domains if d.domain_name]
                if not domains or page * _PAGE_SIZE >= (body.total_count or 0):
                    break
                page += 1
            self._zones = tuple(dict.fromkeys(found))
        return self._zones

    def zone_for(self, fqdn: str) -> str | None:
        """The AliDNS domain holding `fqdn` (longest match), or None when none does."""
        return longest_zone(fqdn, self.zones())

    def _split(self, fqdn: str) -> tuple[str, str]:
        """(zone, RR) of `fqdn`: RR is the host record relative to the zone (``@`` at the apex)."""
        name = normalize_fqdn(fqdn)
        zone = self.zone_for(name)
        if zone is None:
            raise PermanentError(f"{name} is in none of the AliDNS domains this provider writes "
                                 f"({', '.join(self.zones()) or 'none'}); add the domain to AliDNS (or to the "
                                 "provider's zones) or use another validation method.")
        rr = name[: -len(zone)].rstrip(".") or "@"
        return zone, rr

    # ---------------------------------------------------------------- records
    def records(self, fqdn: str) -> list[Any]:
        """The TXT records at `fqdn` as AliDNS holds them (SDK record models: RecordId, RR, Value...).

        Raises:
            TransientError: AliDNS is throttling or unreachable.
            PermanentError: the name is in no zone of this provider, or AliDNS refused the read.
        """
        from alibabacloud_alidns20150109.models import DescribeSubDomainRecordsRequest

        zone, rr = self._split(fqdn)
        name = normalize_fqdn(fqdn)
        out: list[Any] = []
        page = 1
        while True:
            body = self._api.call(f"reading the TXT records of {name}", "describe_sub_domain_records",
                                  DescribeSubDomainRecordsRequest(sub_domain=name, domain_name=zone, type="TXT",
                                                                  page_number=page, page_size=_PAGE_SIZE))
            batch = (body.domain_records.record if body.domain_records else None) or []
            out += [r for r in batch if (r.type or "").upper() == "TXT" and (r.rr or "").lower() == rr.lower()]
            if not batch or page * _PAGE_SIZE >= (body.total_count or 0):
                return out
            page += 1

    def values(self, fqdn: str) -> list[str]:
        """The TXT values at `fqdn` (see `records`)."""
        return [r.value for r in self.records(fqdn)]

    def present(self, fqdn: str, value: str) -> None:
        """Add `value` to the TXT values at `fqdn`; a value already there is not added twice.

        Raises:
            TransientError: AliDNS is throttling or unreachable (retry).
            PermanentError: the name is in no zone of this provider, or AliDNS refused the record.
        """
        from alibabacloud_alidns20150109.models import AddDomainRecordRequest

        if value in self.values(fqdn):
            return
        zone, rr = self._split(fqdn)
        try:
            self._api.call(f"adding the TXT record {normalize_fqdn(fqdn)}", "add_domain_record",
                           AddDomainRecordRequest(domain_name=zone, rr=rr, type="TXT", value=value, ttl=self.ttl))
        except PermanentError as exc:
            if getattr(exc, "service_code", "") == DUPLICATE:
                return  # added meanwhile (a concurrent order, or a retried call that had succeeded)
            raise

    def cleanup(self, fqdn: str, value: str) -> None:
        """Remove exactly the TXT record(s) holding `value` at `fqdn`; others stay, an absent value is a no-op.

        Raises:
            TransientError: AliDNS is throttling or unreachable (retry).
            PermanentError: the name is in no zone of this provider, or AliDNS refused the deletion.
        """
        from alibabacloud_alidns20150109.models import DeleteDomainRecordRequest

        for record in self.records(fqdn):
            if record.value != value:
                continue
            try:
                self._api.call(f"removing a TXT record of {normalize_fqdn(fqdn)}", "delete_domain_record",
                               DeleteDomainRecordRequest(record_id=record.record_id))
            except PermanentError as exc:
                if "DomainRecordNotBelongToUser" in str(exc) or "RecordNotExist" in str(exc):
                    continue  # removed meanwhile
                raise
