"""Amazon Route 53 TXT records through boto3 (the client is passed in; blocks build it)."""

from __future__ import annotations

import time
from collections.abc import Callable

from certpilot.adapters.dns.base import longest_zone, normalize_fqdn
from certpilot.core.errors import PermanentError, TransientError

_TRANSIENT_CODES = {"Throttling", "ThrottlingException", "PriorRequestNotComplete", "ServiceUnavailable",
                    "InternalError", "RequestTimeout"}


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(value: str) -> str:
    """Route 53 returns each TXT value quoted, long ones split as "..." "...": join the strings."""
    parts: list[str] = []
    cur: list[str] = []
    inq = False
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            cur.append(value[i + 1])
            i += 2
            continue
        if ch == '"':
            if inq:
                parts.append("".join(cur))
                cur = []
            inq = not inq
        elif inq:
            cur.append(ch)
        i += 1
    return "".join(parts) if parts else value


class Route53Provider:
    """Adds and removes single values of TXT RRsets in a Route 53 hosted zone.

    Route 53 stores an RRset whole. A value is added or removed by one change batch that
    DELETEs the set exactly as read and CREATEs it with the value added (or the rest): Route 53
    applies a batch atomically and refuses a DELETE that does not match the stored set, so a
    concurrent change of the same name (another order's value) fails the batch instead of being
    overwritten; the set is then read again and the change retried (compare-and-swap, bounded).
    Changes are waited for until INSYNC.
    """

    cas_attempts = 8
    """How many times a single-value change is retried when another writer changed the set."""

    name = "route53"

    def __init__(self, client, *, hosted_zone_id: str | None = None, zone_name: str | None = None,
                 ttl: int = 60, wait_timeout: float = 120.0, first_delay: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep):
        """Args:
            client: a boto3 ``route53`` client.
            hosted_zone_id: the hosted zone to write; found by `zone_name` (or by each name's
                longest matching public zone) when omitted.
            zone_name: the zone's name, used to find its ID when no ID is given.
            ttl: TTL of the TXT records written.
            wait_timeout: seconds to wait for a change to become INSYNC.
        """
        self.client, self.ttl, self.wait_timeout = client, ttl, wait_timeout
        self.first_delay, self._sleep = first_delay, sleep
        self._zone_id = hosted_zone_id.split("/")[-1] if hosted_zone_id else None
        self._zone_name = normalize_fqdn(zone_name) if zone_name else None
        self._zones: dict[str, str] | None = None  # zone name -> id, listed once

    def __repr__(self) -> str:
        return f"Route53Provider(zone_id={self._zone_id}, zone={self._zone_name})"

    # ---------------------------------------------------------------- zones
    def _call(self, what: str, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            msg = exc.response.get("Error", {}).get("Message", "")
            if code in _TRANSIENT_CODES:
                raise TransientError(f"Route 53 is busy ({code}) during {what}; retrying") from exc
            raise PermanentError(f"Route 53 refused {what} ({code}: {msg}); check the hosted zone and "
                                 "that the credentials allow route53:ChangeResourceRecordSets") from exc
        except (EndpointConnectionError, BotoCoreError) as exc:
            raise TransientError(f"could not reach Route 53 during {what} ({exc}); retrying") from exc

    def _all_zones(self) -> dict[str, str]:
        if self._zones is None:
            zones: dict[str, str] = {}
            kwargs: dict = {}
            while True:
                page = self._call("listing hosted zones", self.client.list_hosted_zones, **kwargs)
                for z in page["HostedZones"]:
                    if not z.get("Config", {}).get("PrivateZone", False):
                        zones.setdefault(normalize_fqdn(z["Name"]), z["Id"].split("/")[-1])
                if not page.get("IsTruncated"):
                    break
                kwargs = {"Marker": page["NextMarker"]}
            self._zones = zones
        return self._zones

    def _zone(self, fqdn: str) -> tuple[str, str] | None:
        """(zone name, zone id) holding `fqdn`, or None."""
        if self._zone_id:
            if self._zone_name is None:
                hz = self._call("reading the hosted zone", self.client.get_hosted_zone, Id=self._zone_id)
                self._zone_name = normalize_fqdn(hz["HostedZone"]["Name"])
            return (self._zone_name, self._zone_id) if longest_zone(fqdn, [self._zone_name]) else None
        zones = self._all_zones()
        candidates = [self._zone_name] if self._zone_name else list(zones)
        zone = longest_zone(fqdn, [z for z in candidates if z in zones])
        return (zone, zones[zone]) if zone else None

    def zone_for(self, fqdn: str) -> str | None:
        """The hosted zone's name holding `fqdn`, or None."""
        z = self._zone(fqdn)
        return z[0] if z else None

    # ---------------------------------------------------------------- records
    def values(self, fqdn: str) -> list[str]:
        """The TXT values at `fqdn` as Route 53 holds them (unquoted)."""
        zone = self._require_zone(fqdn)
        return [_unquote(r["Value"]) for r in self._rrset(zone[1], fqdn).get("ResourceRecords", [])]

    def _require_zone(self, fqdn: str) -> tuple[str, str]:
        z = self._zone(fqdn)
        if z is None:
            raise PermanentError(f"no Route 53 hosted zone of this account holds {normalize_fqdn(fqdn)}; "
                                 "create the zone or use another validation method.")
        return z

    def _rrset(self, zone_id: str, fqdn: str) -> dict:
        name = normalize_fqdn(fqdn) + "."
        page = self._call("reading TXT records", self.client.list_resource_record_sets, HostedZoneId=zone_id,
                          StartRecordName=name, StartRecordType="TXT", MaxItems="1")
        for rrset in page.get("ResourceRecordSets", []):
            if normalize_fqdn(rrset["Name"]) == normalize_fqdn(fqdn) and rrset["Type"] == "TXT":
                return rrset
        return {}

    def present(self, fqdn: str, value: str) -> None:
        """Add `value` to the TXT RRset at `fqdn` (an existing value changes nothing; others are kept)."""
        self._swap(fqdn, lambda values: values if value in values else [*values, value],
                   f"adding TXT {normalize_fqdn(fqdn)}")

    def cleanup(self, fqdn: str, value: str) -> None:
        """Remove exactly `value` from the TXT RRset at `fqdn` (an absent value is a no-op)."""
        self._swap(fqdn, lambda values: [v for v in values if v != value],
                   f"removing one TXT value of {normalize_fqdn(fqdn)}")

    def _swap(self, fqdn: str, edit: Callable[[list[str]], list[str]], what: str) -> None:
        """Read the set, apply `edit` to its values, write it back atomically unless it changed meanwhile.

        Raises:
            TransientError: other writers kept changing the set (`cas_attempts` exhausted), or Route 53 is busy.
            PermanentError: Route 53 refused the change for another reason.
        """
        _, zone_id = self._require_zone(fqdn)
        name = normalize_fqdn(fqdn) + "."
        for _attempt in range(self.cas_attempts):
            current = self._rrset(zone_id, fqdn)
            records = current.get("ResourceRecords", [])
            values = [_unquote(r["Value"]) for r in records]
            wanted = edit(values)
            if wanted == values:
                return
            changes = []
            if current:
                changes.append({"Action": "DELETE", "ResourceRecordSet": current})
            if wanted:
                changes.append({"Action": "CREATE", "ResourceRecordSet": {
                    "Name": name, "Type": "TXT", "TTL": current.get("TTL", self.ttl),
                    "ResourceRecords": [{"Value": _quote(v)} for v in wanted]}})
            if self._change_batch(zone_id, changes, what):
                return
        raise TransientError(f"the TXT set of {normalize_fqdn(fqdn)} kept changing under {what} "
                             f"({self.cas_attempts} attempts); retrying")

    def _change_batch(self, zone_id: str, changes: list[dict], what: str) -> bool:
        """Submit one atomic batch and wait for it; False when it lost a race (the set changed)."""
        from botocore.exceptions import ClientError

        try:
            resp = self._call(what, self.client.change_resource_record_sets, HostedZoneId=zone_id,
                              ChangeBatch={"Changes": changes})
        except PermanentError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") == "InvalidChangeBatch":
                return False  # the DELETE no longer matched, or the CREATE found a set: read again
            raise
        self._wait_insync(resp["ChangeInfo"], what)
        return True

    def _wait_insync(self, info: dict, what: str) -> None:
        deadline = time.monotonic() + self.wait_timeout
        delay = self.first_delay
        while info.get("Status") != "INSYNC":
            if time.monotonic() >= deadline:
                raise TransientError(f"Route 53 change {info.get('Id')} ({what}) is still {info.get('Status')} "
                                     f"after {self.wait_timeout:.0f}s; retrying")
            self._sleep(delay)
            delay = min(delay * 1.5, 5.0)
            info = self._call("waiting for the change", self.client.get_change, Id=info["Id"])["ChangeInfo"]
