"""Pure decisions of the fleet probe: what an endpoint serving something means for the inventory.

The scan probes every endpoint of every deployment target (`operations.fleet`) and compares what
is served with what the inventory says the target serves. One finding per endpoint, most urgent
first; a finding is told once (its `key` is remembered; the same key is not told again, a new
key is, and an endpoint found fine clears it). No I/O; time is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from certpilot.core.verification import CONNECTION_FAILURES, ProbeResult, TrustFault


class Finding(StrEnum):
    """What the fleet probe found at one endpoint."""

    OK = "ok"
    """The inventory's certificate is served, verifies, and is not close to expiry."""
    UNREACHABLE = "unreachable"
    """No handshake: refused, timed out, name not resolving, TLS failure."""
    DRIFT = "drift"
    """Another certificate than the inventory's is served (replaced behind certpilot's back, or a
    load balancer / second server still serving an old one)."""
    BROKEN = "broken"
    """The expected certificate is served but its chain does not verify for the name (VER-1 strict)."""
    EXPIRING = "expiring"
    """What is served expires within the warning window (or has expired)."""


@dataclass(frozen=True)
class EndpointFinding:
    """One endpoint's finding, the key that makes telling it idempotent, and the sentence to tell."""

    finding: Finding
    key: str | None
    detail: str

    @property
    def reportable(self) -> bool:
        """True for anything but OK."""
        return self.finding is not Finding.OK


def _short(fp: str | None) -> str:
    return f"{fp[:16]}…" if fp else "nothing"


def judge_endpoint(probe: ProbeResult, *, expected_fingerprint: str | None, now: datetime,
                   warn_within: timedelta, deploying: frozenset[str] = frozenset()) -> EndpointFinding:
    """The finding for one probed endpoint.

    Args:
        probe: what the endpoint served (strictly verified against the target's trust bundle).
        expected_fingerprint: the leaf the inventory says this target serves (None: unknown, no drift check).
        deploying: fingerprints a deployment in progress is putting on the target: served, they are
            not drift (the target moves to the new certificate only once it is verified, DEP-1).
        now: the scan's time.
        warn_within: a served certificate expiring within this is EXPIRING.

    Order: unreachable, drift, broken chain, expiring. Keys carry the served fingerprint, so a
    second replacement (another certificate) is a new finding, told again.
    """
    ep = str(probe.endpoint)
    if probe.outcome in CONNECTION_FAILURES or not probe.handshake_done:
        return EndpointFinding(Finding.UNREACHABLE, f"unreachable:{probe.outcome.value}",
                               f"{ep} could not be probed: {probe.outcome.value} ({probe.error})")
    served = probe.fingerprint or ""
    if expected_fingerprint and served != expected_fingerprint.lower() and served not in deploying:
        names = ", ".join(probe.names) or "no names"
        until = f"{probe.not_after:%Y-%m-%d}" if probe.not_after else "?"
        return EndpointFinding(Finding.DRIFT, f"drift:{served}",
                               f"{ep} serves certificate {_short(served)} ({names}, valid until {until}), not the "
                               f"inventory's {_short(expected_fingerprint)}: it was replaced outside certpilot or "
                               "another server answers this name — import the served certificate "
                               "(`certpilot import`) or redeploy the inventory's one")
    if probe.fault not in (None, TrustFault.NONE, TrustFault.EXPIRED_LEAF):
        return EndpointFinding(Finding.BROKEN, f"broken:{probe.fault.value}:{served}",
                               f"{ep} serves {_short(served)} but it does not verify for "
                               f"{probe.endpoint.server_name}: {probe.fault.value}")
    if probe.not_after is not None and probe.not_after - now <= warn_within:
        left = (probe.not_after - now) // timedelta(days=1)
        when = f"expired {-left} day(s) ago" if left < 0 else f"expires in {left} day(s)"
        return EndpointFinding(Finding.EXPIRING, f"expiring:{served}",
                               f"{ep} serves {_short(served)} which {when} ({probe.not_after:%Y-%m-%d})")
    return EndpointFinding(Finding.OK, None, f"{ep} serves {_short(served)} as expected")


@dataclass(frozen=True)
class EndpointReport:
    """One probed endpoint: its target and certificate, the finding, and whether this scan told it."""

    endpoint: str
    target_id: str
    certificate_id: str
    finding: Finding
    detail: str
    told: bool


@dataclass(frozen=True)
class FleetReport:
    """What the fleet probe saw: counts per finding and every endpoint's line."""

    at: str
    probed: int
    counts: dict[str, int]
    endpoints: tuple[EndpointReport, ...]

    @property
    def told(self) -> tuple[EndpointReport, ...]:
        """The findings this probe told (new since the last probe)."""
        return tuple(e for e in self.endpoints if e.told)
