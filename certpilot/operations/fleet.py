"""Use case: probe the whole fleet and tell what differs from the inventory (the scan's probe step).

Every endpoint of every deployment target is probed (bounded concurrency, strict verification
against the target's trust bundle) and compared with the certificate the inventory says the
target serves (`core.fleet.judge_endpoint`): drift (another certificate served), a chain that does
not verify, a served certificate about to expire, an endpoint that does not answer. Each finding
is recorded (`probe_observations`) and told once: an inbox message, a notice through the
configured channels, and a Prefect event (`certpilot.certificate.drift` / `endpoint-problem`).
The probe never changes a served site.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from certpilot.adapters.probe.scale import probe_many
from certpilot.core.fleet import EndpointFinding, EndpointReport, Finding, FleetReport, judge_endpoint
from certpilot.core.verification import Endpoint, ProbeResult
from certpilot.operations import notices
from certpilot.operations.common import iso
from certpilot.store import fleet_queries as q

if TYPE_CHECKING:
    from certpilot.runtime import Services

DEFAULT_WARN_DAYS = 14
"""A served certificate expiring within this many days is a finding (the inventory's own
renewal opens at 60 days: a site still serving one this close was not renewed or not deployed)."""


def _trust_for(svc: Services, spec: str | None) -> Any:
    """The bundle a target's endpoints are verified against (`ProbeVerifier.trust_for_spec`);
    None (the system's) when the services' verifier is not a probe verifier."""
    resolve = getattr(svc.verifier, "trust_for_spec", None)
    return resolve(spec) if callable(resolve) else None


def _probe(svc: Services, targets: list[q.ProbeTarget], concurrency: int,
           timeout: float) -> dict[tuple[str, str], ProbeResult]:
    """Probe every endpoint once per trust setting; results by (target id, endpoint key)."""
    by_trust: dict[str | None, list[tuple[str, Endpoint]]] = {}
    for t in targets:
        for host, port, sni in t.endpoints:
            by_trust.setdefault(t.trust, []).append((t.target_id, Endpoint(host, port, sni)))
    results: dict[tuple[str, str], ProbeResult] = {}
    for spec, items in by_trust.items():
        probed = probe_many([ep for _, ep in items], concurrency=concurrency, timeout=timeout,
                            trust=_trust_for(svc, spec))
        for (tid, ep), result in zip(items, probed, strict=True):
            results[(tid, q.endpoint_key(ep.host, ep.port, ep.sni))] = result
    return results


def probe_fleet(svc: Services, at: datetime | None = None, *, concurrency: int = 50, timeout: float = 5.0,
                warn_days: int = DEFAULT_WARN_DAYS) -> FleetReport:
    """Probe every target's endpoints, record what each serves, and tell each new finding once.

    Args:
        svc: the services (their verifier's trust bundles, the store, the channels, the events).
        at: the time findings are judged at (default: the services' clock).
        concurrency: connections in flight at most.
        timeout: seconds per connection (connect + handshake).
        warn_days: a served certificate expiring within this many days is a finding.
    Returns:
        the FleetReport (counts per finding, each endpoint, which were told now).
    """
    now = at or svc.now()
    with svc.session(readonly=True) as s:
        targets = q.probe_targets(s)
    results = _probe(svc, targets, concurrency, timeout)  # outside any transaction: network time
    lines: list[EndpointReport] = []
    with svc.session() as s:
        for t in targets:
            for host, port, sni in t.endpoints:
                key = q.endpoint_key(host, port, sni)
                probe = results[(t.target_id, key)]
                found = judge_endpoint(probe, expected_fingerprint=t.fingerprint, now=now,
                                       warn_within=timedelta(days=warn_days), deploying=t.deploying)
                q.record_observation(s, _values(key, host, port, sni, t, probe, found, now))
                told = q.claim_report(s, key, found.key) if found.reportable else q.claim_report(s, key, None)
                if told:
                    event = notices.fleet_finding(s, t.certificate_id, found.finding.value, str(probe.endpoint),
                                                  found.detail, target=t.name or t.target_id, now=now)
                    notices.send(svc, event, session=s)
                lines.append(EndpointReport(str(probe.endpoint), t.target_id, t.certificate_id, found.finding,
                                            found.detail, told))
    counts = Counter(line.finding.value for line in lines)
    return FleetReport(at=iso(now), probed=len(lines), counts={f.value: counts.get(f.value, 0) for f in Finding},
                       endpoints=tuple(lines))


def _values(key: str, host: str, port: int, sni: str | None, t: q.ProbeTarget, probe: ProbeResult,
            found: EndpointFinding, now: datetime) -> dict[str, Any]:
    return {"endpoint": key, "host": host, "port": port, "sni": sni, "target_id": t.target_id,
            "certificate_id": t.certificate_id, "expected_fingerprint": t.fingerprint,
            "served_fingerprint": probe.fingerprint, "served_not_after": probe.not_after,
            "earliest_expiry": probe.earliest_not_after, "outcome": probe.outcome.value,
            "fault": probe.fault.value if probe.fault else None, "finding": found.finding.value,
            "detail": found.detail[:2000], "observed_at": now}
