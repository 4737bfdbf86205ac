"""Use case: the Prometheus metrics of the inventory, deployments, fleet probe and quota.

`exposition(svc)` reads the store in one read-only transaction (the certificates in ONE query,
as plain rows; deployments, probe observations and balances one query each) and writes the
Prometheus text format (0.0.4). The names follow what Grafana dashboards for certificate
exporters use:

- `certpilot_certificate_expiration_timestamp_seconds{id,name,origin,level}`: notAfter (POSIX s)
  of every issued or uploaded certificate (x509-certificate-exporter's meaning);
- `certpilot_certificate_renewal_due_timestamp_seconds{id,name}`: when renewal opens (LC-4:
  notAfter − the expiry window);
- `certpilot_certificate_status{status}`: how many certificates are in each status (LC-4, derived
  at scrape time);
- `certpilot_deployment_last_status{target,name,status}`: 1 for the state of each target's newest
  deployment task;
- `certpilot_probe_ssl_earliest_cert_expiry{endpoint}`: the earliest notAfter of the chain each
  endpoint served at the last fleet probe (blackbox_exporter's meaning);
- `certpilot_quota_remaining{spec}`: PAY-3 balances (`spec="managed"`: managed-service credits).

The text is formatted by hand, not through prometheus_client's registry: at 100,000 certificates
its per-sample objects cost more than the query (bench/metrics.py). Tests parse it with
prometheus_client's parser and a real Prometheus scrapes it.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING

from certpilot.core.models import Status
from certpilot.core.status import DATED_STATES
from certpilot.store import fleet_queries, metrics_queries
from certpilot.store.repository import Repository

if TYPE_CHECKING:
    from certpilot.runtime import Services

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_DATED = frozenset(s.value for s in DATED_STATES)
_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})


def _label(value: object) -> str:
    return str(value).translate(_ESCAPES)


def _head(lines: list[str], name: str, help_text: str) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} gauge")


def exposition(svc: Services, at: datetime | None = None) -> bytes:
    """The metrics page (Prometheus text format 0.0.4) as of `at` (default: the services' clock).

    Raises:
        the store's errors (a scrape of a store that does not answer fails, it is not an empty page).
    """
    now = (at or svc.now()).timestamp()
    window = svc.policy.expiry_window.total_seconds()
    with svc.session(readonly=True) as s:
        certs = metrics_queries.certificate_rows(s)
        deployments = metrics_queries.last_deployment_states(s)
        probes = fleet_queries.observations(s)
        balances = Repository(s).balances()
    lines: list[str] = []
    expiry, due = [], []
    statuses: Counter[str] = Counter()
    for cid, cn, origin, level, state, not_after in certs:
        if state in _DATED and not_after is not None:
            left = not_after - now
            statuses["expired" if left < 0 else "expiring_soon" if left <= window else "valid"] += 1
            ident = f'id="{cid}",name="{_label(cn)}"'
            expiry.append(f'certpilot_certificate_expiration_timestamp_seconds{{{ident},origin="{origin}",'
                          f'level="{level}"}} {not_after:.3f}')
            due.append(f"certpilot_certificate_renewal_due_timestamp_seconds{{{ident}}} {not_after - window:.3f}")
        else:
            statuses[state] += 1
    _head(lines, "certpilot_certificate_expiration_timestamp_seconds",
          "Expiry (notAfter) of each issued or uploaded certificate, in seconds since the epoch.")
    lines += expiry
    _head(lines, "certpilot_certificate_renewal_due_timestamp_seconds",
          "When renewal opens for each certificate (notAfter minus the expiry window), seconds since the epoch.")
    lines += due
    _head(lines, "certpilot_certificate_status", "Certificates per status (LC-4, derived at scrape time).")
    lines += [f'certpilot_certificate_status{{status="{st.value}"}} {statuses.get(st.value, 0)}' for st in Status if st.value not in _DATED]
    _head(lines, "certpilot_deployment_last_status",
          "1 for the state of each target's newest deployment task (pending, running, succeeded, rolled_back, failed).")
    lines += [f'certpilot_deployment_last_status{{target="{_label(tid)}",name="{_label(name)}",status="{state}"}} 1'
              for tid, name, state in deployments]
    _head(lines, "certpilot_probe_ssl_earliest_cert_expiry",
          "Earliest notAfter of the chain each endpoint served at the last fleet probe, seconds since the epoch.")
    lines += [f'certpilot_probe_ssl_earliest_cert_expiry{{endpoint="{_label(ep)}"}} {earliest.timestamp():.3f}'
              for ep, _tid, _cid, _finding, earliest, _outcome in probes if earliest is not None]
    _head(lines, "certpilot_quota_remaining", "Remaining quota per specification (PAY-3); spec=managed: managed credits.")
    lines += [f'certpilot_quota_remaining{{spec="{_label(spec)}"}} {n}' for spec, n in sorted(balances.quota.items())]
    lines.append(f'certpilot_quota_remaining{{spec="managed"}} {balances.managed}')
    return ("\n".join(lines) + "\n").encode()
