"""RFC 2136 dynamic updates signed with TSIG (BIND, Knot, PowerDNS, ...) over TCP."""

from __future__ import annotations

from collections.abc import Sequence

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.tsig
import dns.tsigkeyring
import dns.update

from certpilot.adapters.dns.base import longest_zone, normalize_fqdn
from certpilot.core.errors import PermanentError, TransientError

_ALGORITHMS = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-md5": dns.tsig.HMAC_MD5,
}


def txt_rdata(value: str) -> dns.rdtypes.ANY.TXT.TXT:
    """A TXT rdata holding `value` as one string (no zone-file quoting to get wrong)."""
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [value.encode()])


class RedactedTsigKey(dns.tsig.Key):
    """dnspython's TSIG key whose `repr` omits the secret (the library's prints it in base64).

    The keyring, an update message or a traceback's locals may be rendered into a log line or an
    exception; the secret never is.
    """

    def __repr__(self) -> str:
        return f"<DNS key name='{self.name}', algorithm='{self.algorithm}', secret=****>"

    __str__ = __repr__


class Rfc2136Provider:
    """Writes TXT values with signed dynamic updates to one primary server.

    The TSIG secret lives only in the keyring: it is never logged or put in an error message.
    """

    name = "rfc2136"

    def __init__(self, server: str, port: int = 53, *, zones: Sequence[str] | str, keyname: str,
                 secret: str, algorithm: str = "hmac-sha256", timeout: float = 5.0, ttl: int = 60):
        """Args:
            server: the primary's IP address.
            port: its DNS port.
            zones: the zone(s) this key may update.
            keyname: TSIG key name.
            secret: TSIG secret, base64.
            algorithm: TSIG algorithm (``hmac-sha256`` ...).
            timeout: seconds per update.
            ttl: TTL of the TXT records written.

        Raises:
            PermanentError: unknown algorithm or a secret that is not base64.
        """
        self.server, self.port, self.timeout, self.ttl = server, port, timeout, ttl
        self.zones = tuple(normalize_fqdn(z) for z in ([zones] if isinstance(zones, str) else zones))
        alg = _ALGORITHMS.get(algorithm.lower().rstrip("."))
        if alg is None:
            raise PermanentError(f"unknown TSIG algorithm {algorithm!r}; use one of {', '.join(_ALGORITHMS)}")
        self.keyname = dns.name.from_text(keyname)
        try:
            self._keyring = {self.keyname: RedactedTsigKey(self.keyname, secret, alg)}
        except Exception:  # noqa: BLE001 - never echo the secret itself
            raise PermanentError(f"the TSIG secret of key {keyname} is not valid base64; "
                                 "paste it exactly as tsig-keygen printed it") from None

    def __repr__(self) -> str:
        return f"Rfc2136Provider({self.server}:{self.port}, zones={self.zones}, key={self.keyname})"

    def zone_for(self, fqdn: str) -> str | None:
        """The configured zone holding `fqdn`, or None."""
        return longest_zone(fqdn, self.zones)

    def present(self, fqdn: str, value: str) -> None:
        """Add `value` to the TXT RRset at `fqdn` (adding an existing value changes nothing)."""
        msg = self._message(fqdn)
        msg.add(normalize_fqdn(fqdn) + ".", self.ttl, txt_rdata(value))
        self._send(msg, fqdn, "add")

    def cleanup(self, fqdn: str, value: str) -> None:
        """Delete exactly `value` from the TXT RRset at `fqdn` (an absent value is a no-op)."""
        msg = self._message(fqdn)
        msg.delete(normalize_fqdn(fqdn) + ".", txt_rdata(value))
        self._send(msg, fqdn, "delete")

    def _message(self, fqdn: str) -> dns.update.UpdateMessage:
        zone = self.zone_for(fqdn)
        if zone is None:
            raise PermanentError(f"{normalize_fqdn(fqdn)} is in none of the zones this RFC 2136 provider "
                                 f"updates ({', '.join(self.zones)}); add its zone to the provider or use "
                                 "another validation method.")
        return dns.update.UpdateMessage(zone + ".", keyring=self._keyring, keyname=self.keyname)

    def _send(self, msg: dns.update.UpdateMessage, fqdn: str, what: str) -> None:
        target = f"{self.server}:{self.port}"
        name = normalize_fqdn(fqdn)
        try:
            answer = dns.query.tcp(msg, self.server, port=self.port, timeout=self.timeout)
        except dns.exception.Timeout as exc:
            raise TransientError(f"the DNS server {target} did not answer the update of {name} "
                                 f"within {self.timeout}s; retrying") from exc
        except (dns.tsig.PeerBadKey, dns.tsig.PeerBadSignature, dns.tsig.PeerBadTime,
                dns.tsig.BadSignature, dns.tsig.PeerError) as exc:
            raise PermanentError(
                f"the DNS server {target} rejected the TSIG signature of the update of {name} "
                f"({exc.__class__.__name__}): check the TSIG key name {self.keyname}, its secret and "
                "algorithm, and the clock of both hosts") from None
        except (ConnectionError, OSError, EOFError) as exc:
            raise TransientError(f"could not reach the DNS server {target} to update {name} ({exc}); "
                                 "retrying") from exc
        rcode = answer.rcode()
        if rcode == dns.rcode.NOERROR:
            return
        text = dns.rcode.to_text(rcode)
        if rcode in (dns.rcode.SERVFAIL,):
            raise TransientError(f"the DNS server {target} failed the {what} of TXT {name} (SERVFAIL); retrying")
        if rcode in (dns.rcode.REFUSED, dns.rcode.NOTAUTH):
            raise PermanentError(
                f"the DNS server {target} refused the {what} of TXT {name} ({text}): check the TSIG key "
                f"name {self.keyname} and the zone's update-policy (it must grant this key TXT "
                "records under the zone)")
        if rcode == dns.rcode.NOTZONE:
            raise PermanentError(f"the DNS server {target} says {name} is not in zone "
                                 f"{msg.origin.to_text() if msg.origin else '?'} (NOTZONE): fix the zone "
                                 "configured for this provider")
        raise PermanentError(f"the DNS server {target} answered {text} to the {what} of TXT {name}")
