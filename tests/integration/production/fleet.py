"""A fleet of due certificates with live sites, for the scale-out test and `bench/renew_batch.py`.

`load_fleet` imports N official DV certificates due in 20 days of real time (quota bought), each
with a files target whose directory a local TLS endpoint (`certpilot.serve.DemoTlsServer`)
serves by SNI — so a renewal deploys, reloads and is verified by a real TLS probe. `counts`
reads the store's exactly-once evidence: orders, quota debits, CA issuances, deployment tasks.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization


def _due_bundle(name: str, ca) -> tuple[bytes, bytes, bytes]:
    from certpilot.demo import issue_leaf

    now = datetime.now(UTC)
    key, cert = issue_leaf(ca[0], ca[1], [name], now - timedelta(days=345), now + timedelta(days=20))
    pem = serialization.Encoding.PEM
    return (cert.public_bytes(pem), key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()), ca[1].public_bytes(pem))


def load_fleet(svc, n: int, deploy_root: Path, port: int, *, prefix: str = "site") -> dict[str, str]:
    """Import `n` due official DV DigiCert certificates, each served from `deploy_root/<name>` at
    127.0.0.1:`port` by SNI, with `n` DV quota bought. Returns {certificate id: name}."""
    from certpilot.adapters.deploy.files import FilesTarget
    from certpilot.core.deployment import TargetKind
    from certpilot.core.models import CertType, Level, Origin, Spec
    from certpilot.demo import make_ca
    from certpilot.operations import deployments, orders
    from certpilot.operations.importing import import_bundle

    orders.top_up(svc, count=n, spec=Spec(brand="DigiCert", level=Level.DV, cert_type=CertType.SINGLE))
    ca = make_ca("fleet test CA", datetime.now(UTC) - timedelta(days=400), 3650)
    ids: dict[str, str] = {}
    for i in range(n):
        name = f"{prefix}{i:03d}.fleet.test"
        cert, key, chain = _due_bundle(name, ca)
        res = import_bundle(svc, cert_pem=cert, key_pem=key, chain_pem=chain, origin=Origin.OFFICIAL,
                            level=Level.DV, brand="DigiCert", owner="ops@example.com", actor="test")
        cid = res.certificate.id
        ids[cid] = name
        with svc.session() as s:  # the site as it is served today: its bundle in the target's directory
            record = deployments.add_target(s, cid, TargetKind.FILES, config={"directory": str(deploy_root / name),
                                                                                 "trust": "private-ca"},
                                            endpoints=[("127.0.0.1", port, name)], name=f"site {name}")
            target = FilesTarget(record.id, deploy_root / name)
            target.stage(deployments.material_for(s, cid, svc.key_opener()))
            target.validate()
            target.commit()
            target.finalize()
            target.close()
    return ids


def renewed(svc, ids: dict[str, str]) -> dict[str, str]:
    """{name: fingerprint of its renewal's first certificate} for the renewals issued so far."""
    from certpilot.operations.inventory import show_certificate

    out = {}
    for cid, name in ids.items():
        children = sorted(show_certificate(svc, cid).children, key=lambda c: c.plan_index or 0)
        if children and children[0].fingerprint_sha256 and children[0].state.value == "issued":
            out[name] = children[0].fingerprint_sha256
    return out


def counts(svc) -> dict[str, int]:
    """The store's exactly-once evidence: renewal orders, quota debits, private-CA issuances,
    deployment tasks (all / succeeded) and how many deployment attempts were made."""
    from sqlalchemy import func, select

    from certpilot.store.tables import LedgerRow, OrderRow
    from certpilot.store.tables_deploy import DeploymentTaskRow
    from certpilot.store.tables_issuance import PrivateCaIssuedRow

    def count(stmt) -> int:
        return s.execute(stmt).scalar_one() or 0

    with svc.session(readonly=True) as s:
        return {
            "orders": count(select(func.count()).select_from(OrderRow)),
            "debits": count(select(func.count()).select_from(LedgerRow).where(LedgerRow.delta < 0)),
            "issued_by_ca": count(select(func.count()).select_from(PrivateCaIssuedRow)),
            "deployment_tasks": count(select(func.count()).select_from(DeploymentTaskRow)),
            "deployed": count(select(func.count()).select_from(DeploymentTaskRow)
                              .where(DeploymentTaskRow.state == "succeeded")),
            "deploy_attempts": count(select(func.sum(DeploymentTaskRow.attempts))),
        }


def served(ids: dict[str, str], port: int) -> dict[str, str]:
    """{name: fingerprint served at 127.0.0.1:`port` for SNI name} (empty string: nothing valid)."""
    import asyncio

    from certpilot.adapters.probe.scale import aprobe_many
    from certpilot.adapters.probe.tls import Prober
    from certpilot.core.verification import Endpoint

    endpoints = [Endpoint("127.0.0.1", port, name) for name in ids.values()]
    results = asyncio.run(aprobe_many(endpoints, concurrency=50, trust=Prober(None, timeout=2.0)))
    return {r.endpoint.sni: r.fingerprint or "" for r in results}
