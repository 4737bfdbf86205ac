"""The Prefect side of the product: deployments declared, blocks, automation, runtime from blocks."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_prefect_yaml_declares_every_flow_with_a_real_entrypoint():
    """prefect.yaml: every deployment's entrypoint is a module path (`package.module:flow`, imported
    from the installed package on a worker) naming a flow object; every deployment is tagged
    `certpilot` on the certpilot pool; the scan is scheduled hourly; the pull step stays in the
    worker's temporary directory (no templating Prefect does not have)."""
    from prefect import Flow

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = {d["name"] for d in spec["deployments"]}
    assert names == {"scan", "renewal", "renewal-batch", "emergency", "cancel", "policy", "import", "purchase",
                     "target-add", "target-test", "target-remove", "deploy-target", "discover", "revoke", "issuer",
                     "import-folder", "sync-alibaba"}
    flow_names = {}
    for d in spec["deployments"]:
        module_name, _, attr = d["entrypoint"].partition(":")
        assert "/" not in module_name and not module_name.endswith(".py"), d["entrypoint"]
        flow = getattr(importlib.import_module(module_name), attr)
        assert isinstance(flow, Flow), d["entrypoint"]
        flow_names[d["name"]] = flow.name
        assert d["work_pool"]["name"] == "certpilot" and d["tags"] == ["certpilot"]
    # `certpilot renew --prefect` and the launcher start `<flow>/<deployment>` by these names.
    assert flow_names["renewal"] == "renewal" and flow_names["renewal-batch"] == "renewal-batch"
    scan = next(d for d in spec["deployments"] if d["name"] == "scan")
    assert scan["schedules"][0]["cron"] == "0 * * * *"
    # An Alibaba Cloud account is synced on a schedule the operator turns on once its block exists.
    sync = next(d for d in spec["deployments"] if d["name"] == "sync-alibaba")
    assert sync["schedules"] == [{"cron": "15 */6 * * *", "active": False}]
    assert spec["pull"] == [{"prefect.deployments.steps.set_working_directory": {"directory": "."}}]
    assert "{{" not in (ROOT / "prefect.yaml").read_text()


@pytest.mark.flows
def test_blocks_register_and_build_the_runtime(prefect_harness, tmp_path, monkeypatch):
    """Blocks hold settings and secrets (masked), and `from_blocks` builds the runtime from them."""
    from pydantic import SecretStr

    import blocks as b
    from certpilot import runtime as rt
    from certpilot.settings import get_settings

    monkeypatch.setenv("CERTPILOT_HOME", str(tmp_path))
    get_settings.cache_clear()
    try:
        b.register_all()
        b.PrivateCaBlock(validity_days=30).save("test-ca", overwrite=True)
        b.Rfc2136Block(server="127.0.0.1", port=53, zones=["example.test"], tsig_key_name="k",
                       tsig_secret=SecretStr("c2VjcmV0c2VjcmV0c2VjcmV0")).save("test-dns", overwrite=True)
        b.CertpilotConfigBlock(default_issuer="private-ca/test-ca", dns_providers=["rfc2136/test-dns"]).save(
            "test", overwrite=True)
        loaded = b.Rfc2136Block.load("test-dns")
        assert "c2VjcmV0" not in repr(loaded) and loaded.tsig_secret.get_secret_value().startswith("c2VjcmV0")
        runtime = rt.from_blocks("test")
        assert runtime.default_issuer == "private-ca/test-ca"
        assert runtime.issuer().policy.validity_days == 30
        assert runtime.dns_writable(["www.example.test"]) and not runtime.dns_writable(["www.other.test"])
    finally:
        get_settings.cache_clear()


@pytest.mark.flows
def test_automation_notifies_on_failed_or_crashed_certpilot_runs(prefect_harness):
    """automations/notify-failed-runs.yaml installs with the notification block's id filled in."""
    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from certpilot.automations import install

    CustomWebhookNotificationBlock(name="ops", url="http://127.0.0.1:9/hook").save("ops", overwrite=True)
    installed = ["certpilot-zombie-runs", "certpilot-drift-found",   # the zombie one needs no block
                 "certpilot-failed-or-crashed-run"]
    assert install("custom-webhook/ops") == installed
    assert install("custom-webhook/ops") == installed  # reinstall replaces them
    automation = Automation.read(name="certpilot-failed-or-crashed-run")
    assert set(automation.trigger.expect) == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    block = CustomWebhookNotificationBlock.load("ops")
    assert str(automation.actions[0].block_document_id) == str(block._block_document_id)
    drift = Automation.read(name="certpilot-drift-found")  # reacts to the fleet probe's event
    assert set(drift.trigger.expect) == {"certpilot.certificate.drift"}
    assert str(drift.actions[0].block_document_id) == str(block._block_document_id)
