"""VER-1 (the new certificate is served on every name) and VER-2 (why not) against real nginx.

Each test gets its own nginx from `nginx_factory` (about 15 ms), deploys by writing the vhost
files as the deploy part's nginx target does, and reloads — or, to provoke a diagnosis, does not.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from certpilot.adapters.probe import Endpoint, ProbeOutcome, probe_sync, verify_served
from certpilot.adapters.probe.diagnose import (
    Inspection,
    NginxSite,
    diagnose_endpoint,
    file_fingerprint,
    inspect_nginx,
    nginx_last_load,
)
from certpilot.core.verification import ChainStatus, DiagnosisCode, TrustFault
from tests.integration.probe.conftest import valid_leaf
from tests.servers.certs import Leaf, make_ca
from tests.servers.nginx import VHost, write_vhost_files

NAMES = ["a.verify.test", "b.verify.test", "c.verify.test"]


@pytest.fixture
def site(nginx_factory, nginx_ca, tmp_path):
    """nginx serving the 'old' certificate (one leaf for three names) with a full chain."""
    old = valid_leaf(nginx_ca, NAMES)
    server = nginx_factory([VHost(n, old.fullchain_pem, old.key_pem) for n in NAMES])
    trust = tmp_path / "trust.pem"
    trust.write_bytes(nginx_ca.root_pem)
    return server, old, trust


def deploy(server, leaf: Leaf, *, full_chain: bool = True) -> None:
    """Replace every vhost's certificate and key files (what the deploy part's target does)."""
    for name in server.names:
        write_vhost_files(server.prefix, VHost(name, leaf.fullchain_pem if full_chain else leaf.cert_pem,
                                               leaf.key_pem))


def endpoints(server) -> list[Endpoint]:
    return [Endpoint("127.0.0.1", server.port, n) for n in server.names]


def nginx_site(server) -> NginxSite:
    return NginxSite(cert_file=server.cert_path(server.names[0]), pid_file=server.pid_file,
                     reload_command=f"nginx -p {server.prefix} -s reload")


def after_last_load(server) -> None:
    """Wait (polling the clock) until the files we write are clearly newer than nginx's last load.

    /proc start times have a 10 ms resolution; the diagnosis allows 30 ms of slack, so files
    written within that of the worker's start could not be told apart. Typically returns at once.
    """
    loaded = nginx_last_load(server.pid_file)
    assert loaded is not None
    while datetime.now(UTC).timestamp() < loaded.timestamp() + 0.1:
        time.sleep(0.01)


def test_ver1_new_certificate_served_on_every_sni_name(site, nginx_ca):
    """VER-1: after deploy + reload, every SNI name serves the new certificate; polling starts
    at 20 ms and stops as soon as it is served (nginx needs ~100 ms after a reload)."""
    server, old, trust = site
    eps = endpoints(server)
    assert all(r.fingerprint == old.fingerprint for r in [probe_sync(e, trust=trust) for e in eps])
    new = valid_leaf(nginx_ca, NAMES)
    deploy(server, new)
    started = time.monotonic()
    server.reload(wait=False)
    report = verify_served(eps, new.fingerprint, deadline=10, trust=trust)
    took = time.monotonic() - started
    assert report.all_served, [s.result.describe() for s in report.failures]
    assert [s.result.endpoint.sni for s in report.endpoints] == NAMES
    assert all(s.result.outcome is ProbeOutcome.OK and s.result.not_after == new.not_after
               for s in report.endpoints)
    assert took < 5, took   # reload ~0.13 s + settle 0.25 s; no long fixed sleep


def test_ver1_by_expiry_when_fingerprint_unknown(site, nginx_ca):
    """VER-1 as the seed words it: deployed when the served expiry equals the new certificate's."""
    server, _, trust = site
    new = valid_leaf(nginx_ca, NAMES)
    deploy(server, new)
    server.reload(wait=False)
    report = verify_served(endpoints(server), None, new.not_after, deadline=10, trust=trust)
    assert report.all_served


def test_ver1_old_certificate_still_served_fails_at_deadline(site, nginx_ca):
    """VER-1: without a reload the old certificate stays; verification fails once the deadline passes,
    after several polls (no single blind sleep)."""
    server, old, trust = site
    new = valid_leaf(nginx_ca, NAMES)
    deploy(server, new)
    started = time.monotonic()
    report = verify_served(endpoints(server)[:1], new.fingerprint, deadline=0.4, trust=trust)
    assert not report.all_served
    [failure] = report.failures
    assert failure.result.fingerprint == old.fingerprint
    assert failure.attempts >= 4
    assert 0.4 <= time.monotonic() - started < 1.5


def test_ver2_skipped_reload_is_diagnosed_not_reloaded(site, nginx_ca):
    """VER-2 check 2 (DEP-5): new files in place, no reload → NOT_RELOADED with the reload command."""
    server, old, trust = site
    after_last_load(server)
    new = valid_leaf(nginx_ca, NAMES)
    deploy(server, new)
    inspection = inspect_nginx(nginx_site(server))
    assert inspection.deployed_fingerprint == new.fingerprint
    d = diagnose_endpoint(endpoints(server)[1], new_fingerprint=new.fingerprint, old_fingerprint=old.fingerprint,
                          target=f"nginx at 127.0.0.1:{server.port}", inspection=inspection, trust=trust)
    assert d.code is DiagnosisCode.NOT_RELOADED, str(d)
    assert d.message.startswith(f"nginx at 127.0.0.1:{server.port} (127.0.0.1:{server.port} (SNI b.verify.test)) "
                                "still serves the old certificate although the new files are in place")
    assert "the server was not reloaded since" in d.message
    assert d.message.endswith(f"run `nginx -p {server.prefix} -s reload`.")
    # The operator follows the advice: after the reload the same diagnosis says all is well.
    server.reload()
    report = verify_served(endpoints(server), new.fingerprint, deadline=10, trust=trust)
    assert report.all_served
    d2 = diagnose_endpoint(endpoints(server)[1], new_fingerprint=new.fingerprint, old_fingerprint=old.fingerprint,
                           target="nginx", inspection=inspect_nginx(nginx_site(server)), trust=trust)
    assert d2.code is DiagnosisCode.SERVING_NEW


def test_ver2_files_not_replaced_is_diagnosed_files_not_deployed(site, nginx_ca):
    """VER-2 check 1: the files still hold the old certificate → FILES_NOT_DEPLOYED (even after a reload)."""
    server, old, trust = site
    new = valid_leaf(nginx_ca, NAMES)
    server.reload()
    inspection = inspect_nginx(nginx_site(server))
    assert inspection.deployed_fingerprint == old.fingerprint
    d = diagnose_endpoint(endpoints(server)[0], new_fingerprint=new.fingerprint, old_fingerprint=old.fingerprint,
                          target="nginx web1", inspection=inspection, trust=trust)
    assert d.code is DiagnosisCode.FILES_NOT_DEPLOYED, str(d)
    assert "the certificate file on the target is the old certificate, not the new one" in d.message


@pytest.mark.parametrize("holder, expected_by", [
    (None, "by something in front of the server (CDN, WAF, load balancer or proxy)"),
    ("CDN edge pop-1", "by CDN edge pop-1"),
])
def test_ver2_served_neither_old_nor_new_is_fronted(site, nginx_ca, nginx_factory, holder, expected_by):
    """VER-2 check 3: the origin has the new files and reloaded, but the name is answered by a
    front (a second nginx standing in for a CDN) with a third certificate → FRONTED."""
    server, old, trust = site
    new = valid_leaf(nginx_ca, NAMES)
    deploy(server, new)
    server.reload()
    cdn_leaf = valid_leaf(make_ca("cdn ca"), NAMES)
    front = nginx_factory([VHost(n, cdn_leaf.fullchain_pem, cdn_leaf.key_pem) for n in NAMES])
    inspection = inspect_nginx(nginx_site(server))
    inspection.intermediaries = {cdn_leaf.fingerprint: holder} if holder else {}
    d = diagnose_endpoint(Endpoint("127.0.0.1", front.port, NAMES[0]), new_fingerprint=new.fingerprint,
                          old_fingerprint=old.fingerprint, target="shop origin", inspection=inspection, trust=trust)
    assert d.code is DiagnosisCode.FRONTED, str(d)
    assert expected_by in d.message
    assert cdn_leaf.fingerprint[:16] in d.message


def test_ver2_dep6_leaf_only_deploy_is_diagnosed_incomplete_chain(site, nginx_ca):
    """VER-2 check 4 / DEP-6: nginx configured with the leaf only serves the new certificate but an
    incomplete chain: the probe says INCOMPLETE_CHAIN and the diagnosis tells to deploy the full chain."""
    server, old, trust = site
    new = valid_leaf(nginx_ca, NAMES)
    deploy(server, new, full_chain=False)
    server.reload()
    report = verify_served(endpoints(server), new.fingerprint, deadline=10, trust=trust)
    assert report.all_served        # it is the new certificate...
    assert not report.all_verified  # ...but VER-1 (strict) fails: DEP-6 is not met
    assert len(report.failures) == 3
    for s in report.endpoints:
        assert (s.result.outcome, s.result.chain, s.result.chain_fingerprints, s.result.fault) == (
            ProbeOutcome.INCOMPLETE_CHAIN, ChainStatus.INCOMPLETE, (), TrustFault.INCOMPLETE)
    d = diagnose_endpoint(endpoints(server)[2], new_fingerprint=new.fingerprint, old_fingerprint=old.fingerprint,
                          target="nginx", inspection=inspect_nginx(nginx_site(server)), trust=trust)
    assert d.code is DiagnosisCode.INCOMPLETE_CHAIN, str(d)
    assert "deploy the full chain (leaf followed by every intermediate) and reload" in d.message


def test_ver2_unreachable_endpoint_is_diagnosed(site, nginx_ca):
    """VER-2: a stopped server is UNREACHABLE, with what failed."""
    server, old, trust = site
    ep = endpoints(server)[0]
    server.stop()
    d = diagnose_endpoint(ep, new_fingerprint="0" * 64, old_fingerprint=old.fingerprint, target="nginx",
                          inspection=Inspection(), trust=trust, timeout=1)
    assert d.code is DiagnosisCode.UNREACHABLE and "refused" in d.message


def test_file_fingerprint_reads_leaf_of_full_chain(site):
    """The deployed-file fingerprint is the leaf's (first certificate), whatever follows it."""
    server, old, _ = site
    assert file_fingerprint(server.cert_path(NAMES[0])) == old.fingerprint
    assert file_fingerprint(server.prefix / "missing.pem") is None
    assert file_fingerprint(server.key_path(NAMES[0])) is None   # a key file holds no certificate
