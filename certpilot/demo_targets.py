"""Deployment targets for the demo inventory: each demo site is a files bundle served by SNI.

`certpilot up` serves these bundles with its demo TLS endpoint, so the demo renewals are
deployed (DEP-1), reloaded (DEP-5) and verified by a real TLS probe (VER-1) like any site.

Only the demo's own certificates get one: those signed by the demo CA `certpilot up` loaded
(its certificate is kept in `CERTPILOT_HOME/demo-ca.json`). A certificate an operator imported
or bought is never given a target here, so no real key is written under `CERTPILOT_HOME` and no
real certificate is renewed through the demo's private CA because of the demo.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certpilot.core.models import Status

_SERVED = (Status.ISSUED, Status.UPLOADED)
SITE_PREFIX = "demo site "
"""How a demo site's target is named (`serve_site`)."""


def demo_ca(home: Path) -> x509.Certificate | None:
    """The demo CA's certificate recorded by the demo load under `home` (None: no demo loaded)."""
    from certpilot.demo import CA_FILE

    try:
        meta = json.loads((Path(home) / CA_FILE).read_text())
        return x509.load_pem_x509_certificate(meta["cert_pem"].encode())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_demo_certificate(leaf_pem: str | None, ca: x509.Certificate | None) -> bool:
    """True when `leaf_pem` was issued (and signed) by the demo CA `ca`."""
    if not leaf_pem or ca is None:
        return False
    try:
        x509.load_pem_x509_certificate(leaf_pem.encode()).verify_directly_issued_by(ca)
    except Exception:  # noqa: BLE001 - InvalidSignature, a parse error, another key type: not the demo's
        return False
    return True


def install_demo_targets(svc, root: Path, *, port: int, home: Path, host: str = "127.0.0.1",
                         ids: list[str] | None = None) -> int:
    """Give every demo certificate (signed by the demo CA; single name, key held; expired ones
    too, for the emergency flow) a files target under `root/<name>` probed at host:port with its
    name as SNI, and put its current bundle there. Idempotent: a certificate that has a target
    already is left alone; a certificate the demo did not load is never touched.

    Args:
        svc: the `certpilot.runtime.Services` `certpilot up` serves with: their store, and their
            vault opens the keys (inside the files target only, CSR-5).
        root: the directory the demo TLS endpoint serves bundles from.
        port, host: where the demo TLS endpoint listens.
        home: `CERTPILOT_HOME`, where the demo load recorded its CA (`demo_ca`).
        ids: the demo's certificates (`DemoLoad.ids`): only these are looked at, so start-up
            does not grow with the inventory; None looks at every certificate.
        The sites' probes trust certpilot's private CA (which issues their renewals) and the demo CA
        (written to `root/demo-ca.pem`): VER-1 is strict.

    Returns:
        How many demo sites are served.
    """
    from certpilot.operations import deployments
    from certpilot.store.repository import Repository

    ca = demo_ca(home)
    trust = _demo_trust(root, ca.public_bytes(serialization.Encoding.PEM) if ca is not None else None)
    served = 0
    with svc.session() as s:
        repo = Repository(s)
        opener = svc.key_opener()
        for cert_id in ids if ids is not None else [row[0] for row in repo.status_rows()]:
            cert = repo.certificate_model(cert_id)
            if cert.state not in _SERVED or len(cert.names) != 1 or cert.names[0].startswith("*") or not cert.key_held:
                continue
            targets = deployments.targets_of(s, cert.id)
            if cert.parent_id is not None:  # a renewal: it serves the demo site its target moved to (DEP-1)
                served += any(t.name.startswith(SITE_PREFIX) for t in targets)
                continue
            if not is_demo_certificate(repo.get_certificate(cert.id).leaf_pem, ca):
                continue  # not the demo's: an operator's certificate gets targets from the operator
            if repo.children(cert.id) or targets:
                served += bool(targets)
                continue
            serve_site(svc, s, cert.id, cert.names[0], root, port=port, host=host, opener=opener, trust=trust)
            served += 1
    return served


def serve_site(svc, session, certificate_id: str, name: str, root: Path, *, port: int, host: str = "127.0.0.1",
               opener=None, trust: str | None = None) -> str:
    """Record a files target for `certificate_id` under `root/<name>`, probed at host:port with
    `name` as SNI, and put its current bundle there (the site as it is served today).

    Args:
        svc: the services (their vault opens the key, inside the files target only, CSR-5).
        session: the open store session the target is recorded in.
        certificate_id: the certificate served.
        name: the site's name (the directory and the SNI name).
        root: the directory the TLS endpoint serves bundles from.
        port, host: where that endpoint listens.
        opener: the services' key opener (default `svc.key_opener()`).
        trust: the target's `trust` setting (e.g. "private-ca,PATH"; None: the verifier's default bundle).

    Returns:
        The new target's id.
    """
    from certpilot.adapters.deploy.files import FilesTarget
    from certpilot.core.deployment import TargetKind
    from certpilot.operations import deployments

    config = {"directory": str(root / name)} | ({"trust": trust} if trust else {})
    record = deployments.add_target(session, certificate_id, TargetKind.FILES, config=config,
                                    endpoints=[(host, port, name)], name=f"{SITE_PREFIX}{name}")
    target = FilesTarget(record.id, root / name)
    try:
        target.stage(deployments.material_for(session, certificate_id, opener or svc.key_opener()))
        target.validate()
        target.commit()
        target.finalize()
    finally:
        target.close()
    return record.id


def _demo_trust(root: Path, trust_pem: bytes | None) -> str:
    """The demo sites' `trust` setting: certpilot's private CA, and the demo CA (`root/demo-ca.pem`)."""
    if not trust_pem:
        return "private-ca"
    path = root / "demo-ca.pem"
    root.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_bytes() != trust_pem:
        path.write_bytes(trust_pem)
    return f"private-ca,{path}"
