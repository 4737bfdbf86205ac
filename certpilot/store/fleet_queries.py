"""The fleet probe's persistence: what to probe (every target's endpoints and the certificate the
inventory says it serves) and the last observation of each endpoint, told once.

Every function works in the caller's session (its transaction); none commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from certpilot.store.tables import CertificateRow
from certpilot.store.tables_deploy import DeploymentTargetRow, DeploymentTaskRow
from certpilot.store.tables_probe import ProbeObservationRow


@dataclass(frozen=True)
class ProbeTarget:
    """One target to probe: its endpoints, its trust setting and the certificate it should serve."""

    target_id: str
    name: str
    certificate_id: str
    common_name: str
    fingerprint: str | None
    endpoints: tuple[tuple[str, int, str | None], ...]
    trust: str | None
    deploying: frozenset[str] = frozenset()
    """Fingerprints of certificates a deployment task is putting on this target right now
    (pending or running): served mid-deployment, they are not drift."""


def probe_targets(session: Session) -> list[ProbeTarget]:
    """Every deployment target with at least one endpoint, joined with its certificate, and the
    certificates being deployed to it (two queries)."""
    t = DeploymentTargetRow.__table__.c
    c = CertificateRow.__table__.c
    rows = session.execute(select(t.id, t.name, t.certificate_id, c.common_name, c.fingerprint_sha256, t.endpoints,
                                  t.config)
                           .join(CertificateRow.__table__, c.id == t.certificate_id).order_by(t.id)).tuples()
    k = DeploymentTaskRow.__table__.c
    deploying: dict[str, set[str]] = {}
    for tid, fp_new in session.execute(
            select(k.target_id, c.fingerprint_sha256).join(CertificateRow.__table__, c.id == k.certificate_id)
            .where(k.state.in_(("pending", "running")))).tuples():
        if fp_new:
            deploying.setdefault(tid, set()).add(fp_new)
    found = []
    for tid, name, cid, cn, fp, endpoints, config in rows:
        eps = tuple((str(h), int(p), s) for h, p, s in (endpoints or []))
        if eps:
            found.append(ProbeTarget(tid, name or "", cid, cn, fp, eps, (config or {}).get("trust"),
                                     frozenset(deploying.get(tid, ()))))
    return found


def endpoint_key(host: str, port: int, sni: str | None) -> str:
    """The observation's key: `host:port/sni`."""
    return f"{host}:{port}/{sni or host}"


def record_observation(session: Session, values: dict) -> None:
    """Insert or update the observation of `values["endpoint"]` (keeps its `reported` key)."""
    table = ProbeObservationRow.__table__
    dialect = session.get_bind().dialect.name
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).values(**values)
    changed = {k: insert.excluded[k] for k in values if k not in ("endpoint", "reported")}
    session.execute(insert.on_conflict_do_update(index_elements=["endpoint"], set_=changed))


def claim_report(session: Session, endpoint: str, key: str | None) -> bool:
    """Set the endpoint's reported finding to `key`; True when it was another one (so this caller
    tells it, exactly once even with two scans at once). `key` None clears it (found fine)."""
    table = ProbeObservationRow.__table__
    if key is None:
        session.execute(update(table).where(table.c.endpoint == endpoint).values(reported=None))
        return False
    done = session.execute(update(table).where(table.c.endpoint == endpoint,
                                               or_(table.c.reported.is_(None), table.c.reported != key))
                           .values(reported=key))
    return done.rowcount == 1


def observations(session: Session) -> list[tuple[str, str | None, str | None, str, datetime | None, str]]:
    """(endpoint, target id, certificate id, finding, earliest expiry, outcome) of every observation."""
    t = ProbeObservationRow.__table__.c
    return list(session.execute(select(t.endpoint, t.target_id, t.certificate_id, t.finding, t.earliest_expiry,
                                       t.outcome).order_by(t.endpoint)).tuples())


def deployment_lines(session: Session) -> list[tuple]:
    """Every target with its certificate, its newest deployment task and its endpoints' findings:
    (target id, name, kind, certificate id, common name, endpoint count, task state, progress,
    finished_at, findings "finding:count,…"), by target name. Three queries, no ORM objects."""
    from certpilot.store.metrics_queries import last_tasks

    t = DeploymentTargetRow.__table__.c
    c = CertificateRow.__table__.c
    o = ProbeObservationRow.__table__.c
    tasks = last_tasks(session)
    findings: dict[str, dict[str, int]] = {}
    for tid, finding in session.execute(select(o.target_id, o.finding)).tuples():
        per = findings.setdefault(tid or "", {})
        per[finding] = per.get(finding, 0) + 1
    rows = session.execute(select(t.id, t.name, t.kind, t.certificate_id, c.common_name, t.endpoints)
                           .join(CertificateRow.__table__, c.id == t.certificate_id).order_by(t.name, t.id)).tuples()
    lines = []
    for tid, name, kind, cid, cn, endpoints in rows:
        state, progress, finished = tasks.get(tid, (None, None, None))
        found = ",".join(f"{k}:{n}" for k, n in sorted(findings.get(tid, {}).items()))
        lines.append((tid, name or "", kind, cid, cn, len(endpoints or []), state, progress, finished, found))
    return lines
