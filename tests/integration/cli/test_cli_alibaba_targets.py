"""`certpilot target add --kind alibaba-deployment-job`: the CAS resources a renewal's deployment
job moves to the new certificate (DEP-2) are given with `--resource-id` (repeatable) and the
connection block with `--connection`; a bad definition is refused naming its field, nothing stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.servers.certs import make_ca, make_leaf

NAME = "shop.example.test"


@pytest.fixture
def cert_id(cp, tmp_path) -> str:
    """A certificate imported through the CLI (with its key: the target is managed, CSR-2)."""
    now = datetime.now(UTC)
    leaf = make_leaf(make_ca("cli ali root"), [NAME], not_before=now - timedelta(days=300),
                     not_after=now + timedelta(days=20))
    cert, key = tmp_path / "c.pem", tmp_path / "c.key"
    cert.write_bytes(leaf.cert_pem)
    key.write_bytes(leaf.key_pem)
    r = cp("import", "--cert", cert, "--key", key, "--origin", "official", "--json")
    assert r.code == 0, r.out + r.err
    return r.json["id"]


def test_dep2_target_add_alibaba_deployment_job(cp, cert_id):
    """DEP-2: the target is stored with its resource ids (numbers), connection and endpoint, shown
    and listed; the next renewal deploys there through a CAS deployment job."""
    r = cp("target", "add", cert_id, "--kind", "alibaba-deployment-job", "--resource-id", "101", "--resource-id",
           "102", "--connection", "prod-cn", "--cas-cert-id", "11", "--endpoint", f"127.0.0.1:443/{NAME}",
           "--name", "shop SLB+CDN", "--no-check", "--json")
    assert r.code == 0, r.out + r.err
    assert r.json["kind"] == "alibaba-deployment-job"
    assert r.json["config"] == {"resource_ids": [101, 102], "connection": "prod-cn", "cert_id": 11}
    assert r.json["probed_at"] == [f"127.0.0.1:443/{NAME}"] and r.json["verifiable"] is True
    shown = cp("target", "show", r.json["id"])
    assert shown.code == 0 and "alibaba-deployment-job" in shown.out and "resource_ids: [101, 102]" in shown.out
    assert [t["kind"] for t in cp("target", "list", "--json").json["targets"]] == ["alibaba-deployment-job"]


@pytest.mark.parametrize("args, field, why", [
    ([], "resource_ids", "is required"),
    (["--resource-id", "101", "--resource-id", "lb-1"], "resource_ids[1]", "is not a CAS cloud resource id"),
    (["--resource-id", "101", "--connection", "Prod CN"], "connection", "is not the name of an Alibaba Cloud"),
    (["--resource-id", "101", "--resource-id", "101"], "resource_ids", "names a resource twice"),
])
def test_dep2_bad_alibaba_job_definitions_are_refused_naming_the_field(cp, cert_id, args, field, why):
    """DEP-2: each refused (exit 4) naming the field; nothing is stored."""
    r = cp("target", "add", cert_id, "--kind", "alibaba-deployment-job", *args, "--no-check", "--json")
    assert r.code == 4, (r.out, r.err)
    message = r.json["error"]["message"]
    assert f"{field}: " in message and why in message, message
    assert cp("target", "list", "--json").json["targets"] == []
