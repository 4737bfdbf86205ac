"""A session nginx for probe tests: good, expired, wrongly named, leaf-only and untrusted vhosts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.servers.base import missing
from tests.servers.certs import Leaf, TestCA, make_ca, make_leaf
from tests.servers.nginx import NginxServer, VHost, start_nginx

NOW = datetime.now(UTC).replace(microsecond=0)
VALID = {"not_before": NOW - timedelta(days=10), "not_after": NOW + timedelta(days=80)}
OK_NAMES = [f"ok{i:03d}.probe.test" for i in range(170)]
SPECIAL = ("expired.probe.test", "wrongname.probe.test", "leafonly.probe.test", "untrusted.probe.test")


@dataclass
class ProbeSite:
    """The session nginx, its leaves by vhost name, and the trust bundle (the test root) path."""

    nginx: NginxServer
    leaves: dict[str, Leaf]
    trust_file: Path
    ca: TestCA
    names: list[str] = field(default_factory=list)
    rogue: TestCA | None = None


def valid_leaf(ca: TestCA, names: list[str]) -> Leaf:
    """A leaf from `ca` valid from 10 days ago to 80 days ahead."""
    return make_leaf(ca, names, **VALID)


def start_or_skip(workdir: Path, vhosts: list[VHost]) -> NginxServer:
    """start_nginx, or skip (fail in CI) when nginx is not installed."""
    try:
        return start_nginx(workdir, vhosts)
    except FileNotFoundError as exc:
        missing(f"nginx ({exc})")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def probe_site(tmp_path_factory, nginx_ca) -> ProbeSite:
    """nginx with 170 good vhosts and one vhost per fault (expired, wrong name, leaf only, untrusted)."""
    leaves = {n: valid_leaf(nginx_ca, [n]) for n in OK_NAMES}
    leaves["expired.probe.test"] = make_leaf(nginx_ca, ["expired.probe.test"], NOW - timedelta(days=100),
                                             NOW - timedelta(days=10))
    leaves["wrongname.probe.test"] = valid_leaf(nginx_ca, ["other.probe.test"])
    leaves["leafonly.probe.test"] = valid_leaf(nginx_ca, ["leafonly.probe.test"])
    rogue = make_ca("rogue intermediate", issuer=make_ca("rogue root"))
    leaves["untrusted.probe.test"] = valid_leaf(rogue, ["untrusted.probe.test"])
    vhosts = [VHost(n, leaves[n].fullchain_pem, leaves[n].key_pem) for n in OK_NAMES]
    served = {n: leaves[n].fullchain_pem for n in SPECIAL}
    served["leafonly.probe.test"] = leaves["leafonly.probe.test"].cert_pem          # no intermediate
    served["untrusted.probe.test"] += rogue.root_pem                                 # ends at a rogue root
    vhosts += [VHost(n, served[n], leaves[n].key_pem) for n in SPECIAL]
    work = tmp_path_factory.mktemp("probe-nginx")
    trust = work / "trust.pem"
    trust.write_bytes(nginx_ca.root_pem)
    server = start_or_skip(work, vhosts)
    yield ProbeSite(server, leaves, trust, nginx_ca, [v.server_name for v in vhosts], rogue)
    server.stop()
