"""VER-2 fact gathering: what is on the target, when the server last loaded it, what is served.

The decision is pure (`certpilot.core.verification.diagnose`); this module only reads: the
probe, the certificate file (or the deploy target's `deployed_fingerprint()`), and for nginx
the start time of the newest worker process (every reload starts new workers; the master keeps
its start time, so it says nothing about reloads).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certpilot.adapters.probe.tls import EndpointProber, Prober, Trust, fingerprint_der
from certpilot.core.verification import Diagnosis, DiagnosisFacts, Endpoint, ProbeResult, diagnose

# /proc start times and uptime have a 10 ms resolution each: a reload less than this before the
# file's mtime is still counted as "after" (a deploy writes, tests the config, then reloads).
PROC_CLOCK_SLACK = timedelta(milliseconds=30)


@runtime_checkable
class InspectableTarget(Protocol):
    """What a deploy target tells the diagnosis (the deploy part's targets implement it)."""

    def deployed_fingerprint(self) -> str | None:
        """SHA-256 hex of the leaf certificate currently in the target's files (None: unknown)."""
        ...


def file_fingerprint(path: str | Path) -> str | None:
    """Fingerprint of the first certificate in a PEM file (the leaf of a full chain); None when
    the file is missing or holds no certificate. Reads only certificates, never a key."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    start = data.find(b"-----BEGIN CERTIFICATE-----")
    if start < 0:
        return None
    end = data.find(b"-----END CERTIFICATE-----", start)
    try:
        cert = x509.load_pem_x509_certificate(data[start:end + 25])
    except ValueError:
        return None
    return fingerprint_der(cert.public_bytes(Encoding.DER))


def file_mtime(path: str | Path) -> datetime | None:
    """Modification time of `path` (UTC), None when missing: when the files were deployed."""
    try:
        return datetime.fromtimestamp(Path(path).stat().st_mtime, tz=UTC)
    except OSError:
        return None


def process_start_time(pid: int) -> datetime | None:
    """When process `pid` started (UTC, ~10 ms precision), from /proc; None if unknown.

    Computed from the process's age (uptime minus its start tick), not from /proc/stat's btime,
    which has a whole-second resolution.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError):
        return None
    wall = time.time()
    try:
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after "pid (comm)"
    except (IndexError, ValueError):
        return None
    age = uptime - ticks / os.sysconf("SC_CLK_TCK")
    return datetime.fromtimestamp(wall - age, tz=UTC)


def children_of(pid: int) -> set[int]:
    """PIDs whose parent is `pid` (scan of /proc)."""
    found: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def nginx_last_load(pid_file: str | Path) -> datetime | None:
    """When nginx last loaded its configuration: start of the master's newest worker (UTC).

    Args:
        pid_file: nginx's pid file (the master's PID).
    Returns None when nginx is not running or /proc is not readable.
    """
    try:
        master = int(Path(pid_file).read_text().strip())
    except (OSError, ValueError):
        return None
    times = [t for pid in children_of(master) if (t := process_start_time(pid)) is not None]
    return max(times) if times else process_start_time(master)


@dataclass(frozen=True)
class NginxSite:
    """Where to look on an nginx target: its certificate file and pid file, and how to reload it."""

    cert_file: Path
    pid_file: Path
    reload_command: str = "nginx -s reload"

    @property
    def reload_hint(self) -> str:
        """The advice sentence's action."""
        return f"run `{self.reload_command}`"


@dataclass
class Inspection:
    """Facts about the target besides the probe (any may be None = unknown)."""

    deployed_fingerprint: str | None = None
    deployed_at: datetime | None = None
    reloaded_at: datetime | None = None
    reload_hint: str = "reload the server"
    clock_slack: timedelta = timedelta(0)
    intermediaries: dict[str, str] = field(default_factory=dict)


def inspect_nginx(site: NginxSite) -> Inspection:
    """Read an nginx target's facts: the served-file fingerprint, its mtime, the last reload."""
    return Inspection(deployed_fingerprint=file_fingerprint(site.cert_file), deployed_at=file_mtime(site.cert_file),
                      reloaded_at=nginx_last_load(site.pid_file), reload_hint=site.reload_hint,
                      clock_slack=PROC_CLOCK_SLACK)


def inspect_target(target: InspectableTarget, *, deployed_at: datetime | None = None) -> Inspection:
    """Facts from a deploy target exposing `deployed_fingerprint()` (and optionally
    `last_reload() -> datetime | None`, `reload_hint: str`, `reload_clock_slack: timedelta`).

    The reload time is assumed to come from /proc (as `nginx_last_load`), so its resolution,
    `PROC_CLOCK_SLACK`, applies unless the target says otherwise.
    """
    last_reload = getattr(target, "last_reload", None)
    return Inspection(deployed_fingerprint=target.deployed_fingerprint(), deployed_at=deployed_at,
                      reloaded_at=last_reload() if callable(last_reload) else None,
                      reload_hint=getattr(target, "reload_hint", "reload the server"),
                      clock_slack=getattr(target, "reload_clock_slack", PROC_CLOCK_SLACK))


def facts(probe: ProbeResult, inspection: Inspection, *, new_fingerprint: str, old_fingerprint: str | None,
          target: str) -> DiagnosisFacts:
    """Combine a probe and an inspection into VER-2's facts."""
    return DiagnosisFacts(probe=probe, new_fingerprint=new_fingerprint, old_fingerprint=old_fingerprint,
                          target=target, deployed_fingerprint=inspection.deployed_fingerprint,
                          deployed_at=inspection.deployed_at, reloaded_at=inspection.reloaded_at,
                          reload_hint=inspection.reload_hint, clock_slack=inspection.clock_slack,
                          intermediaries=dict(inspection.intermediaries))


async def adiagnose_endpoint(endpoint: Endpoint, *, new_fingerprint: str, old_fingerprint: str | None,
                             target: str, inspection: Inspection, trust: Trust | EndpointProber = None,
                             timeout: float = 5.0, probe: ProbeResult | None = None) -> Diagnosis:
    """VER-2 for one endpoint: probe it (unless `probe` is given) and explain what it serves.

    Args:
        endpoint: the endpoint that did not pass VER-1.
        new_fingerprint, old_fingerprint: the certificates being swapped.
        target: what an operator calls the target ("nginx at 127.0.0.1:8443").
        inspection: the target's facts (`inspect_nginx`, `inspect_target`).
    Returns:
        the Diagnosis (SERVING_NEW when nothing is wrong). Never raises for network failures.
    """
    if probe is None:
        prober = trust if isinstance(trust, EndpointProber) else Prober(trust, timeout=timeout)
        probe = await prober.probe(endpoint)
    return diagnose(facts(probe, inspection, new_fingerprint=new_fingerprint, old_fingerprint=old_fingerprint,
                          target=target))


def diagnose_endpoint(endpoint: Endpoint, *, new_fingerprint: str, old_fingerprint: str | None, target: str,
                      inspection: Inspection, trust: Trust | EndpointProber = None, timeout: float = 5.0,
                      probe: ProbeResult | None = None) -> Diagnosis:
    """Blocking `adiagnose_endpoint` (VER-2)."""
    return asyncio.run(adiagnose_endpoint(endpoint, new_fingerprint=new_fingerprint,
                                          old_fingerprint=old_fingerprint, target=target,
                                          inspection=inspection, trust=trust, timeout=timeout, probe=probe))

