"""The demo is the demo: `certpilot up` gives files targets to the demo certificates it loaded
(signed by the demo CA) and to nothing an operator imported."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from certpilot.core.models import Level, Origin
from certpilot.demo import load_demo
from certpilot.demo_targets import install_demo_targets
from certpilot.operations.deployments import targets_of
from certpilot.operations.importing import import_certificate
from certpilot.runtime import local_services
from certpilot.store.db import session_scope
from tests.integration.deploy.conftest import NOW
from tests.servers.certs import make_ca, make_leaf

CONFIG = Path(__file__).resolve().parents[3] / "config"


def test_dep1_up_serves_only_the_demo_certificates_it_loaded(tmp_path, vault):
    """DEP-1: an operator's single-name certificate with its key, imported beside the demo, gets
    no target and no bundle under CERTPILOT_HOME (its key is never written there); every demo
    single-name certificate does, once (a second `up` adds nothing)."""
    url = f"sqlite:///{tmp_path / 'up.db'}"
    home = tmp_path / "home"
    svc = local_services(database_url=url, vault=vault, issuers={})
    real = make_leaf(make_ca("an operator's CA"), ["real.example.org"], not_before=NOW - timedelta(days=300),
                     not_after=NOW + timedelta(days=20))
    with session_scope(url) as s:
        loaded = load_demo(s, now=NOW, home=home, config_dir=CONFIG, vault=vault)
        real_id = import_certificate(s, cert_pem=real.cert_pem, key_pem=real.key_pem,
                                     chain_pem=b"".join(real.chain_pems), origin=Origin.OFFICIAL, level=Level.DV,
                                     brand="DigiCert", owner="ops@example.org", now=NOW, vault=vault).certificate.id
    served = install_demo_targets(svc, home / "deploy", port=4433, home=home)
    with session_scope(url) as s:
        demo_targets = {cid: targets_of(s, cid) for cid in loaded.imported}
        assert targets_of(s, real_id) == []
    assert not (home / "deploy" / "real.example.org").exists()
    with_site = [cid for cid, ts in demo_targets.items() if ts]
    assert served == len(with_site) >= 3
    assert all(t.name.startswith("demo site ") for ts in demo_targets.values() for t in ts)
    assert install_demo_targets(svc, home / "deploy", port=4433, home=home) == served  # idempotent
    with session_scope(url) as s:
        assert sum(len(targets_of(s, cid)) for cid in loaded.imported) == served
