"""`certpilot import --from acm` on moto_server (issue 16): every ACM certificate of a region is
inventoried with its names, dates, ARN and in-use-by; the key is not held; its deployment target
is the ARN; a pending one is refused with its reason; a second run changes nothing."""

from __future__ import annotations

import base64
import importlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from certpilot import runtime
from certpilot.core.bulk import BulkOutcome
from certpilot.core.deployment import TargetKind
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.operations import deployments
from certpilot.operations.fleet_sources import import_acm
from certpilot.store.db import session_scope
from certpilot.store.repository import Repository

certs = importlib.import_module("tests.servers.certs")
REGION = "ap-southeast-3"  # this module's own region of the shared moto_server


@pytest.fixture(scope="module")
def acm_fleet(moto_server):
    """Two imported certificates (RSA and EC; the RSA one behind an ALB listener) and one
    ACM-issued certificate still pending validation, in REGION."""
    now = datetime.now(UTC).replace(microsecond=0)
    inter = certs.make_ca("ACM Fleet Intermediate", issuer=certs.make_ca("ACM Fleet Root"))
    a = certs.make_leaf(inter, ["a.acm.example.test", "www.a.acm.example.test"], now - timedelta(days=10),
                        now + timedelta(days=80), key_alg="RSA-2048")
    b = certs.make_leaf(inter, ["b.acm.example.test"], now - timedelta(days=10), now + timedelta(days=20))
    acm = _client(moto_server, "acm")
    arns = {leaf.names[0]: acm.import_certificate(Certificate=leaf.cert_pem, PrivateKey=leaf.key_pem,
                                                  CertificateChain=b"".join(leaf.chain_pems))["CertificateArn"]
            for leaf in (a, b)}
    pending = acm.request_certificate(DomainName="c.acm.example.test", ValidationMethod="DNS")["CertificateArn"]
    ec2, elb = _client(moto_server, "ec2"), _client(moto_server, "elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.16.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.16.{i}.0/24", AvailabilityZone=f"{REGION}{z}")["Subnet"]
               ["SubnetId"] for i, z in ((1, "a"), (2, "b"))]
    lb = elb.create_load_balancer(Name="fleet-lb", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    tg = elb.create_target_group(Name="fleet-tg", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0]
    listener = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTPS", Port=443,
                                   Certificates=[{"CertificateArn": arns["a.acm.example.test"]}],
                                   DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}])
    return {"a": a, "b": b, "arns": arns, "pending": pending,
            "listener": listener["Listeners"][0]["ListenerArn"], "endpoint": moto_server.endpoint_url}


def _client(moto_server, service: str):
    import boto3

    return boto3.client(service, endpoint_url=moto_server.endpoint_url, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _services(tmp_path, moto_server):
    return runtime.local_services(database_url=f"sqlite:///{tmp_path / 'acm.db'}",
                                  vault=KeyVault(LocalMasterKey(bytes(range(32)), source="test")),
                                  extra={"aws": lambda service, region: _client(moto_server, service)})


def test_import_from_acm_inventories_names_dates_arn_and_in_use_by(acm_fleet, moto_server, tmp_path):
    svc = _services(tmp_path, moto_server)
    fleet = runtime.acm_fleet(svc, region=REGION)

    report = import_acm(svc, fleet)

    assert report.source == f"acm:{REGION}"
    assert report.counts == {"imported": 2, "skipped": 0, "refused": 1}, [(r.reason, r.message) for r in report.reports]
    refused = report.of(BulkOutcome.REFUSED)[0]
    assert (refused.source, refused.reason) == (acm_fleet["pending"], "BadInput")
    assert "pending_validation" in refused.message
    by_arn = {r.source: r for r in report.of(BulkOutcome.IMPORTED)}
    assert set(by_arn) == set(acm_fleet["arns"].values())
    with session_scope(svc.database_url, readonly=True) as s:
        repo = Repository(s)
        for cn, leaf in (("a.acm.example.test", acm_fleet["a"]), ("b.acm.example.test", acm_fleet["b"])):
            arn = acm_fleet["arns"][cn]
            cert = repo.certificate_model(by_arn[arn].certificate_id)
            assert (cert.names, cert.not_after, cert.fingerprint_sha256) == (leaf.names, leaf.not_after,
                                                                             leaf.fingerprint)
            assert cert.key_held is False
            targets = deployments.targets_of(s, cert.id)
            assert [(t.kind, t.config["certificate_arn"], t.config["region"]) for t in targets] == [
                (TargetKind.AWS_ACM, arn, REGION)]
            expected_users = [acm_fleet["listener"]] if cn.startswith("a.") else []
            assert targets[0].config["in_use_by"] == expected_users

    again = import_acm(svc, fleet)
    assert again.counts == {"imported": 0, "skipped": 2, "refused": 1}
    with session_scope(svc.database_url, readonly=True) as s:
        assert sum(len(deployments.targets_of(s, r.certificate_id)) for r in again.of(BulkOutcome.SKIPPED)) == 2


def test_cli_import_from_acm_region(acm_fleet, moto_server, tmp_path, monkeypatch, capsys):
    """`certpilot import --from acm --region R --json` reads ACM with the environment's AWS
    settings (AWS_ENDPOINT_URL here: moto); exit 3 because the pending certificate is refused."""
    from certpilot.cli import main
    from certpilot.settings import get_settings
    from certpilot.store.db import reset_engines

    monkeypatch.setenv("CERTPILOT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CERTPILOT_DATABASE_URL", raising=False)
    monkeypatch.setenv("CERTPILOT_MASTER_KEY", base64.b64encode(bytes(range(32))).decode())
    for var, value in (("AWS_ENDPOINT_URL", acm_fleet["endpoint"]), ("AWS_ACCESS_KEY_ID", "testing"),
                       ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(var, value)
    get_settings.cache_clear()
    reset_engines()
    try:
        capsys.readouterr()
        assert main(["import", "--from", "acm", "--region", REGION, "--json"]) == 3
        out = json.loads(capsys.readouterr().out)
        assert out["counts"] == {"imported": 2, "skipped": 0, "refused": 1}
        assert sorted(r["source"] for r in out["imported"]) == sorted(acm_fleet["arns"].values())
        assert main(["import", "--from", "certbot", "--region", REGION]) == 2  # --region is for acm only
    finally:
        get_settings.cache_clear()
        reset_engines()
