"""A target added by an operator — from the CLI and from the UI's `target-add` flow — is where
the next renewal deploys (DEP-1): the nginx target serves the new certificate, verified by a
TLS probe (VER-1), and a bundle marked "not verifiable" gets it without ever being shown
verified; `certpilot deployments ID` lists both tasks (DEP-2)."""

from __future__ import annotations

import json

import pytest

from certpilot.adapters.probe.tls import probe_sync
from certpilot.core.verification import Endpoint
from certpilot.operations import deployments
from certpilot.operations import targets as target_ops
from certpilot.store.repository import Repository
from tests.flows.pipeline_env import SITE, site  # noqa: F401 - fixture

pytestmark = [pytest.mark.servers, pytest.mark.flows]


def test_dep1_dep2_ver1_targets_added_from_cli_and_ui_are_deployed_by_the_renewal(site, tmp_path, monkeypatch,  # noqa: F811
                                                                                capsys):
    from certpilot.cli import main
    from certpilot.settings import get_settings
    from flows.renewal import renewal
    from flows.targets import target_add

    with site.session() as s:  # the harness's own target goes: the operator's define where it deploys
        (harness_target,) = deployments.targets_of(s, site.cert_id)
    target_ops.remove(site.runtime, harness_target.id)
    monkeypatch.setenv("CERTPILOT_DATABASE_URL", site.db_url)
    get_settings.cache_clear()
    nginx = site.nginx
    code = main(["target", "add", site.cert_id, "--kind", "nginx", "--name", "www nginx",
                 "--file", f"{nginx.cert_path(SITE)}:{nginx.key_path(SITE)}",
                 "--check-cmd", " ".join(nginx.check_argv()), "--reload-cmd", " ".join(nginx.reload_argv()),
                 "--endpoint", f"127.0.0.1:{nginx.port}/{SITE}", "--trust", str(tmp_path / "pebble-root.pem")])
    assert code == 0, capsys.readouterr()
    bundle = tmp_path / "manual-bundle"
    ui = target_add(site.cert_id, "files", name="manual copy", directory=str(bundle), not_verifiable=True)
    assert ui.record.config == {"directory": str(bundle), "verify": False}

    run = renewal(site.cert_id)
    assert run.verify.ok, run.verify
    with site.session() as s:
        new = sorted(Repository(s).children(site.cert_id), key=lambda c: c.plan_index)[0]
    assert probe_sync(Endpoint("127.0.0.1", nginx.port, SITE), timeout=3).fingerprint == new.fingerprint_sha256
    assert (bundle / "cert.pem").read_text().strip() == new_pem(site, new.id).strip()
    capsys.readouterr()
    assert main(["deployments", new.id, "--json"]) == 0
    listed = {d["target_name"]: d for d in json.loads(capsys.readouterr().out)["deployments"]}
    assert listed["www nginx"]["state"] == "succeeded" and "verified:" in listed["www nginx"]["details"]
    assert listed["manual copy"]["state"] == "unverified"
    assert "NOT verified" in listed["manual copy"]["details"] and "verified:" not in listed["manual copy"]["details"]
    assert [r.state.value for r in run.deploy.results if r.state.value == "unverified"] == ["unverified"]


def new_pem(built, cert_id: str) -> str:
    """The stored leaf PEM of a certificate."""
    with built.session() as s:
        return Repository(s).get_certificate(cert_id).leaf_pem
