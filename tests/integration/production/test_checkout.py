"""The README's production path from a git checkout, word for word, on a real Prefect server:

    certpilot setup --private-ca      # (a fresh server has no configuration: say which)
    prefect deploy --all              # from the checkout, with its prefect.yaml
    prefect worker start --pool certpilot

then certificates renewed by runs the worker executes (started by `certpilot renew --prefect`
and by the scan deployment), `certpilot setup` run again changing nothing, and a run from a
deployment whose configuration block is gone failing with the block's name.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from tests.integration.production.conftest import REPO, Operator, due_certificate, operator_env

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


def _import_due(op: Operator, tmp_path, name: str) -> str:
    cert, key, chain = due_certificate(tmp_path, name)
    r = op.certpilot("import", "--cert", cert, "--key", key, "--chain", chain, "--origin", "official",
                     "--level", "DV", "--brand", "DigiCert", "--owner", "ops@example.com", "--json", cwd=tmp_path)
    assert r.code == 0, r.out + r.err
    return r.json["id"]


def _renewed(op: Operator, tmp_path, cert_id: str) -> dict:
    """The certificate's first renewal (its child, LC-2) as `certpilot show` prints it."""
    shown = op.certpilot("show", cert_id, "--json", cwd=tmp_path)
    assert shown.code == 0, shown.out + shown.err
    children = sorted(shown.json["children"], key=lambda c: c["plan_index"] or 0)
    assert children, f"{cert_id} has no renewal: {shown.out}"
    return children[0]


def test_setup_on_a_fresh_server_creates_everything_the_workers_need(checkout):
    """`certpilot setup --private-ca` on a fresh server: block types, the private CA and the
    configuration block naming it, both API concurrency limits, the certpilot process pool,
    and the checkout's prefect.yaml left as it is (it is the packaged one)."""
    _op, report = checkout
    by = {(s["kind"], s["name"]): s for s in report["steps"]}
    assert report["changed"] is True
    assert by[("block", "certpilot-config/default")]["change"] == "created"
    assert by[("block", "certpilot-private-ca/default")]["change"] == "created"
    assert by[("concurrency limit", "certpilot-ca-api")]["change"] == "created"
    assert by[("concurrency limit", "certpilot-dns-api")]["change"] == "created"
    assert by[("work pool", "certpilot")]["change"] == "created"
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


def test_renew_prefect_runs_the_renewal_deployment_on_the_worker(checkout, tmp_path):
    """`certpilot renew ID --prefect` starts a run of `renewal/renewal`, which the worker executes
    (a process of its own, the flow imported from the installed package): the certificate's
    renewal is issued, by one run named after the certificate, tagged certpilot."""
    op, _report = checkout
    assert op.certpilot("quota", "add", "--level", "DV", "--brand", "DigiCert", "--count", "1",
                        cwd=tmp_path).code == 0
    cert_id = _import_due(op, tmp_path, "renew.example.com")
    started = op.certpilot("renew", cert_id, "--prefect", "--json", cwd=tmp_path)
    assert started.code == 0, started.out + started.err
    assert started.json["deployment"] == "renewal/renewal"
    run = op.wait_for_run(started.json["flow_run_id"])
    assert run["state_type"] == "COMPLETED", (run["state"], op.run_logs(run["id"]))
    assert run["name"] == "renew.example.com" and "certpilot" in run["tags"]
    assert run["work_pool_name"] == "certpilot"
    assert _renewed(op, tmp_path, cert_id)["state"] == "issued"


def test_scan_on_the_worker_renews_a_due_certificate(checkout, tmp_path):
    """The scan deployment, run on the worker, renews a due certificate (quota bought): its
    renewal is issued by runs the worker executed, and every certpilot run ended Completed."""
    op, _report = checkout
    assert op.certpilot("quota", "add", "--level", "DV", "--brand", "DigiCert", "--count", "1",
                        cwd=tmp_path).code == 0
    cert_id = _import_due(op, tmp_path, "scan.example.com")
    since = datetime.now(UTC).isoformat()
    started = op.certpilot("scan", "--json", cwd=tmp_path)
    assert started.code == 0, started.out + started.err
    scan = op.wait_for_run(started.json["flow_run_id"])
    assert scan["state_type"] == "COMPLETED", (scan["state"], op.run_logs(scan["id"]))
    runs = op.wait_until_idle(since)
    failed = [(r["name"], r["state"]["message"]) for r in runs if r["state_type"] != "COMPLETED"]
    assert not failed
    assert _renewed(op, tmp_path, cert_id)["state"] == "issued"


def test_a_run_without_the_configuration_block_fails_naming_it(checkout, tmp_path):
    """Delete `certpilot-config/default`: a run of a deployment fails naming the block (never a
    silent fallback to the embedded defaults), and `certpilot setup` without a flag refuses,
    saying what to pass. `certpilot setup --private-ca` puts it back."""
    op, _report = checkout
    block = op.api_get("/block_types/slug/certpilot-config/block_documents/name/default")
    import httpx

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
    finally:
        assert op.certpilot("setup", "--private-ca", "--json", cwd=tmp_path).code == 0


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
    restore = tmp_path / "restore.toml"
    restore.write_text('[certpilot]\ndefault_issuer = "private-ca/default"\n')
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
    finally:
        assert op.certpilot("setup", "--config", restore, "--json", cwd=tmp_path).code == 0
