"""Deployment targets for the demo inventory: each demo site is a files bundle served by SNI.

`certpilot up` serves these bundles with its demo TLS endpoint, so the demo renewals are
deployed (DEP-1), reloaded (DEP-5) and verified by a real TLS probe (VER-1) like any site.
"""

from __future__ import annotations

from pathlib import Path

from certpilot.core.models import Status

_SERVED = (Status.ISSUED, Status.UPLOADED)


def install_demo_targets(svc, root: Path, *, port: int, host: str = "127.0.0.1",
                         ids: list[str] | None = None) -> int:
    """Give every demo certificate (single name, key held; expired ones too, for the emergency
    flow) a files target under `root/<name>` probed at host:port with its name as SNI, and put
    its current bundle there. Idempotent: a certificate that has a target already is left alone.

    Args:
        svc: the `certpilot.runtime.Services` `certpilot up` serves with: their store, and their
            vault opens the keys (inside the files target only, CSR-5).
        root: the directory the demo TLS endpoint serves bundles from.
        port, host: where the demo TLS endpoint listens.
        ids: the demo's certificates (`DemoLoad.ids`): only these are looked at, so start-up
            does not grow with the inventory; None looks at every certificate.

    Returns:
        How many demo sites are served.
    """
    from certpilot.adapters.deploy.files import FilesTarget
    from certpilot.core.deployment import TargetKind
    from certpilot.operations import deployments
    from certpilot.store.repository import Repository

    served = 0
    with svc.session() as s:
        repo = Repository(s)
        opener = svc.key_opener()
        for cert_id in ids if ids is not None else [row[0] for row in repo.status_rows()]:
            cert = repo.certificate_model(cert_id)
            if cert.state not in _SERVED or len(cert.names) != 1 or cert.names[0].startswith("*") or not cert.key_held:
                continue
            if repo.children(cert.id) or deployments.targets_of(s, cert.id):
                served += bool(deployments.targets_of(s, cert.id))
                continue
            name = cert.names[0]
            record = deployments.add_target(s, cert.id, TargetKind.FILES, config={"directory": str(root / name)},
                                            endpoints=[(host, port, name)], name=f"demo site {name}")
            target = FilesTarget(record.id, root / name)
            target.stage(deployments.material_for(s, cert.id, opener))
            target.validate()
            target.commit()
            target.finalize()
            served += 1
    return served
