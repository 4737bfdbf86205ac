"""Fixtures of the deployment tests: one SQLite store for the module session, a vault, and a
helper that stores a test certificate (with its key sealed in the vault) as a row."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from certpilot.core.deployment import KeyOpenerById
from certpilot.core.models import Certificate, CertType, Origin, Status
from certpilot.crypto.keys import store_key
from certpilot.crypto.vault import KeyVault, LocalMasterKey
from certpilot.runtime import local_services
from certpilot.store.db import session_scope
from certpilot.store.repository import Repository, new_id
from tests.servers.certs import Leaf, make_ca, make_leaf

NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def deploy_db(tmp_path_factory) -> str:
    """A SQLite URL migrated to every head (0003_deployments included)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('deploy-db') / 'certpilot.db'}"
    with session_scope(url):
        pass
    return url


def sessions(url: str):
    """A session factory on `url`, as `deploy` takes (one transaction a call).

    Call `deploy` with it outside any open transaction: on SQLite its steps wait for the writer.
    """
    return partial(session_scope, url)


def key_opener(url: str, vault: KeyVault) -> KeyOpenerById:
    """The key opener of services on `url` with `vault` (`Services.key_opener`): each opening
    reads the sealed key in a read-only transaction of its own and opens it outside it."""
    return local_services(database_url=url, vault=vault, issuers={}).key_opener()


@pytest.fixture(scope="session")
def vault() -> KeyVault:
    """A vault with a throw-away master key."""
    return KeyVault(LocalMasterKey(os.urandom(32), source="test master key"))


def add_cert(session, vault: KeyVault, leaf: Leaf, *, parent_id: str | None = None, key_held: bool = True,
             key_pem: bytes | None = None, state: Status = Status.ISSUED) -> str:
    """Store `leaf` as a certificate row (key sealed unless `key_held` is False); return its id.

    `key_pem` stores another key than the leaf's (a broken pair, for DEP-7 tests).
    """
    repo = Repository(session)
    key_id = None
    if key_held:
        key = load_pem_private_key(key_pem or leaf.key_pem, password=None)
        key_id, _ = store_key(key, vault=vault, repo=repo)
    cert = Certificate(id=new_id(), common_name=leaf.names[0], names=leaf.names,
                       cert_type=CertType.MULTI if len(leaf.names) > 1 else CertType.SINGLE,
                       origin=Origin.UPLOADED, not_before=leaf.not_before, not_after=leaf.not_after,
                       fingerprint_sha256=leaf.fingerprint, serial=format(leaf.cert.serial_number, "x"),
                       parent_id=parent_id, state=state, key_held=key_held, publicly_trusted=False)
    repo.add_certificate(cert, leaf_pem=leaf.cert_pem.decode(), chain_pem=b"".join(leaf.chain_pems).decode(),
                         key_id=key_id, now=NOW)
    return cert.id


# ACM refuses certificates expired by the wall clock: validity around the real now.
T = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="session")
def aws_ca():
    """The CA of the load balancer tests' certificates."""
    return make_ca("aws intermediate", issuer=make_ca("aws root"))


@pytest.fixture
def listener(moto_server, aws_ca):
    """An HTTPS ALB listener on moto serving an old certificate imported into ACM."""
    ec2, elb, acm = moto_server.client("ec2"), moto_server.client("elbv2"), moto_server.client("acm")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{z}")
               ["Subnet"]["SubnetId"] for i, z in ((1, "a"), (2, "b"))]
    tag = uuid.uuid4().hex[:8]
    lb = elb.create_load_balancer(Name=f"lb-{tag}", Subnets=subnets)["LoadBalancers"][0]["LoadBalancerArn"]
    tg = elb.create_target_group(Name=f"tg-{tag}", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0]
    old = make_leaf(aws_ca, ["alb.example.test"], not_before=T, not_after=T + timedelta(days=10))
    old_arn = acm.import_certificate(Certificate=old.cert_pem, PrivateKey=old.key_pem)["CertificateArn"]
    arn = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTPS", Port=443,
                              Certificates=[{"CertificateArn": old_arn}],
                              DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}]
                              )["Listeners"][0]["ListenerArn"]
    return {"elb": elb, "acm": acm, "arn": arn, "old_arn": old_arn}
