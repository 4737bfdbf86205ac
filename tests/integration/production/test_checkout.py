"""The README's production path from a git checkout, word for word, on a real Prefect server:

    certpilot setup --private-ca      # (a fresh server has no configuration: say which)
    prefect deploy --all              # from the checkout, with its prefect.yaml
    prefect worker start --pool certpilot

then certificates renewed by runs the worker executes (started by `certpilot renew --prefect`,
and by a fleet's scan through a renewal-batch run; the single-worker default, renewals run in
the scan's own process, is proven from the wheel in test_wheel.py), `certpilot setup` run again
changing nothing, `certpilot setup --config FILE`, and a run from a deployment whose
configuration block is gone failing with the block's name.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import httpx
import pytest

from tests.integration.production.conftest import REPO, Operator, import_due, operator_env, renewal_state

pytestmark = [pytest.mark.servers]


@pytest.fixture(scope="module")
def checkout(production_api, tmp_path_factory):
    """An operator of the checkout (the suite's venv, where certpilot is installed editable) who
    ran the README's three commands: `certpilot setup --private-ca`, `prefect deploy --all` in the
    checkout, one `prefect worker start --pool certpilot`. Yields (operator, the setup's JSON)."""
    import sys
    from pathlib import Path

    base = tmp_path_factory.mktemp("checkout-operator")
    op = Operator(production_api, Path(sys.executable).parent, base / "home",
                  operator_env(production_api, base / "home"))
    started = time.monotonic()
    setup = op.certpilot("setup", "--private-ca", "--json", cwd=REPO)
    assert setup.code == 0, setup.out + setup.err
    deploy = op.prefect("deploy", "--all", cwd=REPO)
    assert deploy.code == 0, deploy.out + deploy.err
    worker_dir = base / "worker"
    worker_dir.mkdir()
    op.start_worker(worker_dir, base / "worker.log")
    print(f"checkout: setup + deploy in {time.monotonic() - started:.1f} s")
    yield op, setup.json
    op.stop_workers()


def test_setup_on_a_fresh_server_creates_everything_the_workers_need(checkout):
    """`certpilot setup --private-ca` on a fresh server: block types, the private CA and the
    configuration block naming it, both API concurrency limits, the certpilot process pool (its
    runs send heartbeats), the zombie-run automation, and the checkout's prefect.yaml left as it
    is (it is the packaged one)."""
    op, report = checkout
    by = {(s["kind"], s["name"]): s for s in report["steps"]}
    assert report["changed"] is True
    assert by[("block", "certpilot-config/default")]["change"] == "created"
    assert by[("block", "certpilot-private-ca/default")]["change"] == "created"
    assert by[("concurrency limit", "certpilot-ca-api")]["change"] == "created"
    assert by[("concurrency limit", "certpilot-dns-api")]["change"] == "created"
    assert by[("work pool", "certpilot")]["change"] == "created"
    pool = op.api_get("/work_pools/certpilot")
    assert pool["type"] == "process"
    assert pool["base_job_template"]["variables"]["properties"]["env"]["default"] == {
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
    assert by[("automation", "certpilot-zombie-runs")]["change"] == "created"
    assert by[("file", "prefect.yaml")]["detail"] == "same as certpilot's"


def test_setup_twice_changes_nothing_the_second_time(checkout):
    """Idempotent: a second `certpilot setup` (no flag: the configuration exists) reports no
    change, and the server holds the same blocks, the same limits and one certpilot pool."""
    op, _report = checkout

    def snapshot():
        blocks = op.api_post("/block_documents/filter", {"include_secrets": False})
        limits = op.api_post("/v2/concurrency_limits/filter", {})
        pools = op.api_post("/work_pools/filter", {})
        return ({(b["block_type"]["slug"], b["name"]): (b["id"], json.dumps(b["data"], sort_keys=True))
                 for b in blocks if b["name"] and not b["is_anonymous"]},
                {x["name"]: (x["id"], x["limit"]) for x in limits},
                sorted((p["name"], p["id"]) for p in pools))

    before = snapshot()
    again = op.certpilot("setup", "--json", cwd=REPO)
    assert again.code == 0, again.out + again.err
    assert [s for s in again.json["steps"] if s["change"] != "unchanged"] == []
    assert again.json["changed"] is False
    after = snapshot()
    assert after == before
    assert [name for name, _id in after[2] if name == "certpilot"] == ["certpilot"]
    assert {"certpilot-ca-api", "certpilot-dns-api"} <= set(after[1])


def test_renew_prefect_runs_the_renewal_deployment_on_the_worker(checkout, store_of, tmp_path):
    """`certpilot renew ID --prefect` starts a run of `renewal/renewal`, which the worker executes
    (a process of its own, the flow imported from the installed package): the certificate's
    renewal is issued, by one run named after the certificate, tagged certpilot."""
    op, _report = checkout
    svc = store_of(op)
    cert_id = import_due(svc, tmp_path, "renew.example.com")
    started = op.certpilot("renew", cert_id, "--prefect", "--json", cwd=tmp_path)
    assert started.code == 0, started.out + started.err
    assert started.json["deployment"] == "renewal/renewal"
    run = op.wait_for_run(started.json["flow_run_id"])
    assert run["state_type"] == "COMPLETED", (run["state"], op.run_logs(run["id"]))
    assert run["name"] == "renew.example.com" and "certpilot" in run["tags"]
    assert run["work_pool_name"] == "certpilot"
    assert renewal_state(svc, cert_id) == "issued"


def test_a_fleet_scan_hands_the_renewals_to_the_workers_in_a_renewal_batch_run(checkout, store_of, tmp_path):
    """On a fleet (`CERTPILOT_LAUNCH_MODE=workers`, here given to this scan run as a job variable)
    the scan starts a `renewal-batch/renewal-batch` run that a worker executes: both due
    certificates are renewed by renewal runs it made, one per certificate, all Completed."""
    op, _report = checkout
    svc = store_of(op)
    ids = [import_due(svc, tmp_path, name) for name in ("fleet-a.example.com", "fleet-b.example.com")]
    since = datetime.now(UTC).isoformat()
    scan_deployment = op.api_get("/deployments/name/scan/scan")
    run = op.api_post(f"/deployments/{scan_deployment['id']}/create_flow_run",
                      {"job_variables": {"env": {"CERTPILOT_LAUNCH_MODE": "workers"}}})
    assert op.wait_for_run(run["id"])["state_type"] == "COMPLETED", op.run_logs(run["id"])
    runs = op.wait_until_idle(since)
    assert not [(r["name"], r["state"]["message"]) for r in runs if r["state_type"] != "COMPLETED"]
    batch = op.api_get("/deployments/name/renewal-batch/renewal-batch")
    assert [r for r in runs if r["deployment_id"] == batch["id"]], "no renewal-batch run"
    assert sorted(r["name"] for r in runs if r["name"].startswith("fleet-")) == [
        "fleet-a.example.com", "fleet-b.example.com"]
    assert [renewal_state(svc, cid) for cid in ids] == ["issued", "issued"]


CONFIG = """
[certpilot]
default_issuer = "private-ca/default"
dns_providers = ["rfc2136/primary"]
notification_blocks = ["email-notices/ops"]

[rfc2136.primary]
server = "192.0.2.53"
zones = ["example.com"]
tsig_key_name = "certpilot"
tsig_secret = { env = "PRODUCTION_TEST_TSIG" }

[email-notices.ops]
sender = "certpilot@example.com"
recipients = ["ops@example.com"]
server = { smtp_server = "192.0.2.25", smtp_port = 587, username = "certpilot", password = { env = "PRODUCTION_TEST_SMTP" } }
"""


def test_setup_from_a_config_file_writes_its_blocks_once_secrets_from_the_environment(checkout, tmp_path):
    """`certpilot setup --config FILE`: the DNS and email blocks it defines and the configuration
    naming them are written (secrets from the environment, stored encrypted and masked, never
    printed); the same file again changes nothing."""
    import base64
    import os

    op, _report = checkout
    secrets = {"PRODUCTION_TEST_TSIG": base64.b64encode(os.urandom(24)).decode(),
               "PRODUCTION_TEST_SMTP": base64.b64encode(os.urandom(12)).decode()}
    config = tmp_path / "certpilot.toml"
    config.write_text(CONFIG)
    try:
        first = op.certpilot("setup", "--config", config, "--json", cwd=tmp_path, env=secrets)
        assert first.code == 0, first.out + first.err
        changes = {s["name"]: s["change"] for s in first.json["steps"] if s["kind"] == "block"}
        assert changes == {"certpilot-rfc2136/primary": "created", "certpilot-email-notices/ops": "created",
                           "certpilot-config/default": "updated"}
        assert not any(v in first.out + first.err for v in secrets.values())
        path = "/block_types/slug/certpilot-rfc2136/block_documents/name/primary"
        assert op.api_get(path)["data"]["tsig_secret"] == "********"
        assert op.api_get(path + "?include_secrets=true")["data"]["tsig_secret"] == secrets["PRODUCTION_TEST_TSIG"]
        again = op.certpilot("setup", "--config", config, "--json", cwd=tmp_path, env=secrets)
        assert again.code == 0 and again.json["changed"] is False, again.out + again.err
    finally:  # the other tests' configuration: the private CA alone
        block = op.api_get("/block_types/slug/certpilot-config/block_documents/name/default")
        httpx.patch(f"{op.api.api_url}/block_documents/{block['id']}", timeout=10, json={
            "data": {"default_issuer": "private-ca/default"}, "merge_existing_data": False}).raise_for_status()


def test_a_run_without_the_configuration_block_fails_naming_it(checkout, tmp_path):
    """Delete `certpilot-config/default`: a run of a deployment fails naming the block (never a
    silent fallback to the embedded defaults), and `certpilot setup` without a flag refuses,
    saying what to pass."""
    op, _report = checkout
    block = op.api_get("/block_types/slug/certpilot-config/block_documents/name/default?include_secrets=true")
    httpx.delete(f"{op.api.api_url}/block_documents/{block['id']}", timeout=10).raise_for_status()
    try:
        started = op.certpilot("scan", "--json", cwd=tmp_path)
        assert started.code == 0, started.out + started.err
        run = op.wait_for_run(started.json["flow_run_id"])
        assert run["state_type"] == "FAILED"
        assert "certpilot-config/default" in run["state"]["message"]
        refused = op.certpilot("setup", "--json", cwd=tmp_path)
        assert refused.code == 2
        message = refused.json["error"]["message"]
        assert "certpilot-config/default" in message and "--config FILE" in message and "--private-ca" in message
    finally:  # put it back as it was, for the other tests
        op.api_post("/block_documents/", {key: block[key] for key in (
            "name", "data", "block_schema_id", "block_type_id")})
