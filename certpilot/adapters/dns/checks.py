"""DV-7 checks before the CA is told to validate: is the record visible, does CAA allow the CA.

Visibility is asked of each authoritative server directly (no recursive resolver, no cache):
the CA's resolver will ask one of them, so every one must already answer with the value.
CAA is looked up through a resolver (as a CA does), climbing from the name to its TLD; the
decision itself is the pure `certpilot.core.validation.check_caa`.

Servers are injected everywhere: production finds them with `authoritative_servers`; tests pass
the loopback BIND.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from certpilot.adapters.dns.base import Nameserver, normalize_fqdn
from certpilot.core.errors import Reason, Refusal, RefusedError, TransientError
from certpilot.core.validation import CaaRecord, caa_lookup_names, check_caa


def resolver_for(nameservers: Sequence[Nameserver], *, lifetime: float = 5.0) -> dns.resolver.Resolver:
    """A dnspython resolver that asks exactly `nameservers` (each with its own port).

    Args:
        nameservers: (address, port) pairs, e.g. ``[("127.0.0.1", 10053)]``.
        lifetime: total seconds a resolution may take.
    """
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in nameservers]
    r.lifetime = lifetime
    r.timeout = min(2.0, lifetime)
    return r


def find_zone(fqdn: str, resolver: dns.resolver.Resolver) -> str:
    """The zone (SOA owner) holding `fqdn`, without trailing dot.

    Raises:
        TransientError: the resolver did not answer.
    """
    try:
        return normalize_fqdn(dns.resolver.zone_for_name(fqdn, resolver=resolver).to_text())
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
        raise TransientError(f"could not find the zone of {fqdn}: the resolver did not answer ({exc})") from exc


def authoritative_servers(zone: str, resolver: dns.resolver.Resolver) -> list[Nameserver]:
    """The addresses (port 53) of the NS hosts of `zone`, as the resolver sees them.

    Raises:
        TransientError: the resolver did not answer.
    """
    try:
        ns_names = [rd.target.to_text() for rd in resolver.resolve(zone, "NS")]
        servers: list[Nameserver] = []
        for host in sorted(ns_names):
            for rdtype in ("A", "AAAA"):
                try:
                    servers += [(rd.address, 53) for rd in resolver.resolve(host, rdtype)]
                except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                    continue
        return servers
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
        raise TransientError(f"could not list the authoritative servers of {zone} ({exc})") from exc


def txt_values_at(fqdn: str, server: Nameserver, *, timeout: float = 2.0) -> set[str] | None:
    """TXT values at `fqdn` as `server` answers them (following an in-answer CNAME chain).

    Returns:
        The set of values (multi-string values joined), empty when none; None when the server
        did not answer or answered with an error other than NXDOMAIN.
    """
    query = dns.message.make_query(normalize_fqdn(fqdn) + ".", "TXT")
    query.flags &= ~dns.flags.RD  # ask the server what it holds, not what it could find out
    try:
        answer = dns.query.udp(query, server[0], port=server[1], timeout=timeout)
        if answer.flags & dns.flags.TC:
            answer = dns.query.tcp(query, server[0], port=server[1], timeout=timeout)
    except (dns.exception.DNSException, OSError):
        return None
    if answer.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return None
    return {b"".join(rd.strings).decode(errors="replace")
            for rrset in answer.answer if rrset.rdtype == dns.rdatatype.TXT for rd in rrset}


def missing_at(fqdn: str, value: str, nameservers: Sequence[Nameserver], *,
               timeout: float = 2.0) -> list[Nameserver]:
    """The servers of `nameservers` that do not (yet) serve `value` at `fqdn`."""
    return [ns for ns in nameservers if value not in (txt_values_at(fqdn, ns, timeout=timeout) or set())]


def record_visible(fqdn: str, value: str, nameservers: Sequence[Nameserver], *, timeout: float = 2.0) -> bool:
    """True when every server of `nameservers` serves the TXT `value` at `fqdn`."""
    return bool(nameservers) and not missing_at(fqdn, value, nameservers, timeout=timeout)


def _not_visible(fqdn: str, value: str, missing: Sequence[Nameserver], waited: float) -> Refusal:
    where = ", ".join(f"{h}:{p}" for h, p in missing) or "(no authoritative server known)"
    return Refusal(
        Reason.RECORD_NOT_VISIBLE,
        f'the TXT record {normalize_fqdn(fqdn)}. "{value}" is not served by {where} after {waited:.1f}s; '
        "check that it was added in the zone those servers hold (and that they are in sync), "
        "then retry the validation.",
        rule="DV-7",
    )


def check_visible(fqdn: str, value: str, nameservers: Sequence[Nameserver], *,
                  timeout: float = 2.0) -> Refusal | None:
    """One look: None when every authoritative server serves the value, else RECORD_NOT_VISIBLE."""
    missing = missing_at(fqdn, value, nameservers, timeout=timeout) if nameservers else []
    if nameservers and not missing:
        return None
    return _not_visible(fqdn, value, missing, 0.0)


def wait_until_visible(fqdn: str, value: str, nameservers: Sequence[Nameserver], timeout: float, *,
                       first_delay: float = 0.05, max_delay: float = 2.0,
                       clock: Callable[[], float] = time.monotonic,
                       sleep: Callable[[float], None] = time.sleep) -> float:
    """Poll the authoritative servers until all serve the TXT value, with a growing delay (DV-7).

    Args:
        fqdn: the record name (``_acme-challenge.www.example.com``).
        value: the TXT value expected.
        nameservers: the zone's authoritative servers (see `authoritative_servers`).
        timeout: the deadline in seconds; the last look happens no later than it.
        first_delay: the first pause; each next one is 1.5 times longer, up to `max_delay`.

    Returns:
        Seconds waited until visible.

    Raises:
        RefusedError: RECORD_NOT_VISIBLE, naming the servers that still lack the record.
    """
    start = clock()
    deadline = start + timeout
    delay = first_delay
    while True:
        # A dead server must not carry the wait past its deadline: bound each query by what is left.
        missing = missing_at(fqdn, value, nameservers, timeout=max(0.1, min(2.0, deadline - clock())))
        if nameservers and not missing:
            return clock() - start
        remaining = deadline - clock()
        if remaining <= 0:
            raise RefusedError(_not_visible(fqdn, value, missing, clock() - start))
        sleep(min(delay, remaining))
        delay = min(delay * 1.5, max_delay)


# --------------------------------------------------------------------------- CAA


def caa_rrset(name: str, resolver: dns.resolver.Resolver) -> tuple[str | None, list[CaaRecord]]:
    """Find the relevant CAA RRset of `name` (RFC 8659 section 3): climb until one is non-empty.

    Returns:
        (owner domain, records), or (None, []) when no CAA exists up to the TLD.

    Raises:
        TransientError: a lookup timed out (a CA would refuse to issue on a failed lookup too).
    """
    for domain in caa_lookup_names(name):
        try:
            answer = resolver.resolve(domain + ".", "CAA", raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            continue
        except dns.resolver.NoNameservers:
            continue  # no server answers for this domain (e.g. REFUSED above the zone): nothing there
        except dns.exception.Timeout as exc:
            raise TransientError(f"the CAA lookup of {domain} timed out; retry later") from exc
        if answer.rrset is None:
            continue
        records = [CaaRecord(rd.flags, rd.tag.decode(), rd.value.decode(errors="replace"))
                   for rd in answer.rrset]
        if records:
            return domain, records
    return None, []


def caa_refusal(names: Sequence[str], ca_identifiers: Sequence[str],
                resolver: dns.resolver.Resolver) -> Refusal | None:
    """DV-7: the first name whose CAA forbids the CA, as a CAA_FORBIDS refusal; None when all pass.

    Args:
        names: the certificate's names (wildcards as ``*.example.com``).
        ca_identifiers: issuer domain names of the CA (``letsencrypt.org``, ...).
        resolver: a resolver (production: the system's; tests: `resolver_for` the BIND).

    Raises:
        TransientError: a lookup timed out.
    """
    for name in names:
        owner, records = caa_rrset(name, resolver)
        refusal = check_caa(name, owner, records, ca_identifiers)
        if refusal is not None:
            return refusal
    return None
