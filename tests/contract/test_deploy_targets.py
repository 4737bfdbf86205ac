"""The DeployTarget contract, run against every implementation with its real backend:
nginx (PEM files + `nginx -t` + reload), the files bundle, AWS ACM and an ALB listener (moto).

Each harness says what the target puts "in effect" (the served or bound certificate's
fingerprint); the contract is the same for all: staging changes nothing in effect, a full run
puts the new certificate in effect (DEP-1, DEP-5), rollback restores the old one (DEP-7), a
mismatched key fails `validate` and leaves the old one, and no message carries key material (CSR-5).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509

from certpilot.adapters.deploy.aws_acm import AcmTarget
from certpilot.adapters.deploy.aws_elb import ElbListenerTarget
from certpilot.adapters.deploy.base import DeployError, DeployMaterial, DeployTarget
from certpilot.adapters.deploy.files import FilesTarget
from certpilot.adapters.deploy.nginx import PemFilesTarget
from certpilot.adapters.probe.tls import Prober, TrustBundle
from certpilot.core.verification import Endpoint
from tests.servers.certs import Leaf, fingerprint, make_ca, make_leaf
from tests.servers.nginx import VHost

T = datetime.now(UTC).replace(microsecond=0)  # ACM refuses certificates expired by the wall clock
NAME = "contract.example.test"


@dataclass
class Harness:
    """A target over a backend that currently has `old` in effect, and how to observe it."""

    target: Any
    observe: Any  # () -> fingerprint in effect
    old: Leaf


@pytest.fixture(scope="module")
def ca():
    return make_ca("contract intermediate", issuer=make_ca("contract root"))


def leaf(ca, days=90) -> Leaf:
    return make_leaf(ca, [NAME], not_before=T - timedelta(days=1), not_after=T + timedelta(days=days))


def material(new: Leaf, key_pem: bytes | None = None) -> DeployMaterial:
    return DeployMaterial.from_pems("cert-new", new.fullchain_pem, key=lambda: key_pem or new.key_pem)


def nginx_harness(request, ca) -> Harness:
    factory = request.getfixturevalue("nginx_factory")
    old = leaf(ca, 10)
    server = factory([VHost(NAME, old.fullchain_pem, old.key_pem)])
    trust = TrustBundle.from_pem(ca.root_pem)

    def observe() -> str:
        # After `nginx -s reload` the old worker answers for ~100 ms more: wait until one worker
        # is left and it has given the same answer for 0.5 s.
        prober, seen, since, deadline = Prober(trust, timeout=3), None, 0.0, time.monotonic() + 8
        while time.monotonic() < deadline:
            fp = asyncio.run(prober.probe(Endpoint("127.0.0.1", server.port, NAME))).fingerprint
            now = time.monotonic()
            if fp != seen or len(server.worker_pids()) != 1:
                seen, since = fp, now
            elif now - since >= 0.5:
                return fp
            time.sleep(0.05)
        return seen

    target = PemFilesTarget("t-nginx", [(server.cert_path(NAME), server.key_path(NAME))],
                            check_argv=server.check_argv(), reload_argv=server.reload_argv(), timeout=10)
    return Harness(target, observe, old)


def files_harness(request, ca) -> Harness:
    directory = request.getfixturevalue("tmp_path") / "bundle"
    old = leaf(ca, 10)
    seed = FilesTarget("seed", directory)
    seed.stage(material(old))
    seed.validate()
    seed.commit()
    seed.finalize()
    return Harness(FilesTarget("t-files", directory), lambda: fingerprint((directory / "cert.pem").read_bytes()), old)


def acm_harness(request, ca) -> Harness:
    acm = request.getfixturevalue("moto_server").client("acm")
    old = leaf(ca, 10)
    arn = acm.import_certificate(Certificate=old.cert_pem, PrivateKey=old.key_pem)["CertificateArn"]

    def observe() -> str:
        return fingerprint(acm.get_certificate(CertificateArn=arn)["Certificate"].encode())

    return Harness(AcmTarget("t-acm", acm, arn, previous_key=lambda: old.key_pem), observe, old)


def elb_harness(request, ca) -> Harness:
    moto = request.getfixturevalue("moto_server")
    ec2, elb, acm = moto.client("ec2"), moto.client("elbv2"), moto.client("acm")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.1.{i}.0/24", AvailabilityZone=f"us-east-1{z}")
               ["Subnet"]["SubnetId"] for i, z in ((1, "a"), (2, "b"))]
    tag = uuid.uuid4().hex[:8]
    lb = elb.create_load_balancer(Name=f"c-{tag}", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    tg = elb.create_target_group(Name=f"c-{tag}", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0]
    old = leaf(ca, 10)
    old_arn = acm.import_certificate(Certificate=old.cert_pem, PrivateKey=old.key_pem)["CertificateArn"]
    listener = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTPS", Port=443,
                                   Certificates=[{"CertificateArn": old_arn}],
                                   DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}]
                                   )["Listeners"][0]["ListenerArn"]

    def observe() -> str:
        arn = elb.describe_listeners(ListenerArns=[listener])["Listeners"][0]["Certificates"][0]["CertificateArn"]
        return fingerprint(acm.get_certificate(CertificateArn=arn)["Certificate"].encode())

    return Harness(ElbListenerTarget("t-elb", elb, acm, listener, mode="default"), observe, old)


HARNESSES = {"nginx": nginx_harness, "files": files_harness, "aws-acm": acm_harness, "aws-elb": elb_harness}


@pytest.fixture(params=sorted(HARNESSES))
def harness(request, ca) -> Harness:
    return HARNESSES[request.param](request, ca)


def test_implements_the_protocol(harness):
    assert isinstance(harness.target, DeployTarget)
    assert isinstance(harness.target.describe(), str) and harness.target.describe()
    assert harness.observe() == harness.old.fingerprint


def test_dep1_dep5_full_run_puts_new_certificate_in_effect(harness, ca):
    """DEP-1, DEP-5: stage changes nothing in effect; after commit + reload + finalize the new one is."""
    new = leaf(ca, 395)
    t = harness.target
    t.stage(material(new))
    assert harness.observe() == harness.old.fingerprint
    t.validate()
    t.commit()
    t.reload()
    t.finalize()
    assert harness.observe() == new.fingerprint


def test_dep7_rollback_after_reload_restores_the_old_certificate(harness, ca):
    """DEP-7: a failure after the reload (e.g. verification) rolls back to the previous certificate."""
    new = leaf(ca, 395)
    t = harness.target
    t.stage(material(new))
    t.validate()
    t.commit()
    t.reload()
    t.rollback()
    assert harness.observe() == harness.old.fingerprint


def test_dep7_csr5_mismatched_key_fails_validate_and_leaves_old(harness, ca):
    """DEP-7: the target's own check refuses a key that is not the certificate's; nothing changes
    in effect; CSR-5: the error carries no key material."""
    new, stranger = leaf(ca, 395), leaf(ca, 395)
    t = harness.target
    t.stage(material(new, key_pem=stranger.key_pem))
    with pytest.raises(DeployError) as failed:
        t.validate()
    t.rollback()
    assert failed.value.step == "validate"
    assert "PRIVATE KEY" not in str(failed.value)
    assert stranger.key_pem.decode().splitlines()[1] not in str(failed.value)
    assert harness.observe() == harness.old.fingerprint


def test_csr5_material_repr_holds_no_key(ca):
    new = leaf(ca)
    m = material(new)
    assert "BEGIN" not in repr(m) and "lambda" not in repr(m)  # neither key text nor the opener
    assert m.fullchain_pem == new.fullchain_pem
    assert [x509.load_pem_x509_certificate(p).subject for p in m.chain_pems] == [ca.cert.subject]
