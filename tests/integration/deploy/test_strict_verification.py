"""VER-1 strict against a real nginx: a deployment whose new certificate is served but does not verify
for the name (each bad chain of `tests/servers/badchains.py`) is rolled back with the reason, and the
target's own trust bundle (`config["trust"]`) is what a private CA's chain is verified against."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from certpilot.adapters.deploy.factory import default_target_factory
from certpilot.adapters.probe import Endpoint, ProbeOutcome, probe_sync, verify_served
from certpilot.adapters.probe.tls import TrustBundle
from certpilot.adapters.probe.verifier import ProbeVerifier, trusting
from certpilot.core.deployment import DeploymentState, TargetKind
from certpilot.core.verification import TrustFault
from certpilot.operations.deployments import add_target, deploy, plan_deployments
from certpilot.store.db import session_scope
from tests.integration.deploy.conftest import NOW, add_cert, key_opener, sessions
from tests.servers.badchains import BadChain, bad_chains
from tests.servers.certs import Leaf, cert_pem, make_leaf
from tests.servers.nginx import VHost

pytestmark = pytest.mark.servers
NAME = "strict.example.test"


@pytest.fixture(scope="module")
def chains():
    return bad_chains(NAME, datetime.now(UTC))


def as_leaf(chain: BadChain) -> Leaf:
    """A BadChain as the `Leaf` the store helper takes (the served certificates after the leaf = its chain)."""
    certs = x509.load_pem_x509_certificates(chain.served_pem)
    leaf = certs[0]
    try:
        names = list(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                     .get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = [NAME]
    return Leaf(cert_pem=chain.leaf_pem, key_pem=chain.key_pem, chain_pems=[cert_pem(c) for c in certs[1:]],
                not_before=leaf.not_valid_before_utc, not_after=leaf.not_valid_after_utc, names=names)


def deployed_site(tmp_path, nginx_factory, deploy_db, vault, chains, new: Leaf):
    """nginx serving the good chain for NAME, recorded as a target trusting the test root through its
    own `trust` setting; `new` planned as its replacement. Returns (server, task id, good leaf)."""
    good = make_leaf(chains.inter, [NAME], chains.good.not_before, chains.good.not_after)  # fresh: one row each
    server = nginx_factory([VHost(NAME, good.fullchain_pem, good.key_pem)])
    bundle = tmp_path / "target-trust.pem"
    bundle.write_bytes(chains.root.root_pem)
    with session_scope(deploy_db) as s:
        good_id = add_cert(s, vault, good)
        add_target(s, good_id, TargetKind.NGINX, name="strict nginx",
                   config={"files": [{"cert": str(server.cert_path(NAME)), "key": str(server.key_path(NAME))}],
                           "check_argv": server.check_argv(), "reload_argv": server.reload_argv(),
                           "pid_file": str(server.pid_file), "trust": str(bundle)},
                   endpoints=[("127.0.0.1", server.port, NAME)], now=NOW)
        new_id = add_cert(s, vault, new, parent_id=good_id)
        task = plan_deployments(s, new_id, now=NOW)[0]
    return server, task.id, good


def run(deploy_db, vault, task_id):
    # No trust given to the verifier: the system bundle, plus what the target's `trust` adds.
    return deploy(sessions(deploy_db), task_id, trusting(default_target_factory()), key_opener(deploy_db, vault),
                  ProbeVerifier(deadline=5.0))


@pytest.mark.parametrize("fault", [TrustFault.ISSUER_NOT_CA, TrustFault.EXPIRED_INTERMEDIATE, TrustFault.NO_SAN,
                                   TrustFault.WRONG_NAME, TrustFault.INCOMPLETE, TrustFault.SELF_SIGNED,
                                   TrustFault.UNTRUSTED_ROOT, TrustFault.NOT_SERVER_AUTH])
def test_ver1_strict_bad_chain_served_is_refused_and_rolled_back(tmp_path, nginx_factory, deploy_db, vault,
                                                                 chains, fault):
    """VER-1 strict, VER-2, DEP-7: nginx serves the new certificate, but its chain does not verify
    for the SNI name; the deployment is ROLLED_BACK (not SUCCEEDED) with the reason, and the good
    chain is served again."""
    server, task_id, good = deployed_site(tmp_path, nginx_factory, deploy_db, vault, chains,
                                          as_leaf(chains.bad[fault]))
    done = run(deploy_db, vault, task_id)
    assert done.state is DeploymentState.ROLLED_BACK, done.details
    assert "serve the new certificate with a chain that does not verify for the name" in done.details
    # certpilot deploys a chain without its self-signed root (DEP-6), so the rogue chain reaches
    # nginx as leaf + rogue intermediate: to a client, an issuer it cannot find (incomplete).
    seen = TrustFault.INCOMPLETE if fault is TrustFault.UNTRUSTED_ROOT else fault
    code = "incomplete_chain" if seen is TrustFault.INCOMPLETE else "not_verified"
    assert f"[{code}]" in done.details
    if seen is not TrustFault.INCOMPLETE:
        assert f"does not verify for {NAME}: {fault.value}" in done.details
    trust = TrustBundle.from_pem(chains.root.root_pem)
    back = verify_served([Endpoint("127.0.0.1", server.port, NAME)], good.fingerprint, deadline=5, trust=trust)
    assert back.all_verified, back.endpoints  # rolled back and reloaded: the good chain again (polled)


FAULTS = [TrustFault.ISSUER_NOT_CA, TrustFault.EXPIRED_INTERMEDIATE, TrustFault.NO_SAN, TrustFault.WRONG_NAME,
          TrustFault.INCOMPLETE, TrustFault.SELF_SIGNED, TrustFault.UNTRUSTED_ROOT, TrustFault.NOT_SERVER_AUTH]


def vhost_name(fault: TrustFault) -> str:
    return f"{fault.value.replace('_', '-')}.{NAME}"


@pytest.fixture(scope="module")
def bad_site(tmp_path_factory):
    """One nginx serving each bad chain exactly as built (the rogue root included) under its own
    SNI name, and the trust bundle of their good roots."""
    from tests.servers.nginx import start_nginx

    now = datetime.now(UTC)
    built = {f: bad_chains(vhost_name(f), now) for f in FAULTS}
    vhosts = [VHost(vhost_name(f), b.bad[f].served_pem, b.bad[f].key_pem) for f, b in built.items()]
    server = start_nginx(tmp_path_factory.mktemp("badchains"), vhosts)
    yield server, TrustBundle.from_pem(b"".join(b.root.root_pem for b in built.values()))
    server.stop()


def test_ver1_strict_real_nginx_serving_each_bad_chain_is_judged_with_its_reason(bad_site):
    """VER-1 strict over the network: each chain as nginx serves it gets its own reason (CA:FALSE
    issuer, expired intermediate, CN only, wrong name, missing intermediate, self-signed, untrusted
    root, clientAuth only), never OK."""
    from certpilot.adapters.probe import probe_many

    server, trust = bad_site
    results = probe_many([Endpoint("127.0.0.1", server.port, vhost_name(f)) for f in FAULTS], trust=trust)
    assert {f: (r.fault, r.verified) for f, r in zip(FAULTS, results, strict=True)} == {
        f: (f, False) for f in FAULTS}


def test_ver1_strict_target_trust_setting_lets_a_private_root_verify(tmp_path, nginx_factory, deploy_db, vault,
                                                                     chains):
    """VER-1 strict with the target's own trust bundle: a good chain from a root the system does not
    trust SUCCEEDS because the target names that root in `trust`; without the setting it is refused."""
    now = datetime.now(UTC)
    fresh = make_leaf(chains.inter, [NAME], chains.good.not_before, now + timedelta(days=365))
    server, task_id, _ = deployed_site(tmp_path, nginx_factory, deploy_db, vault, chains, fresh)
    done = run(deploy_db, vault, task_id)
    assert done.state is DeploymentState.SUCCEEDED, done.details
    assert "with a chain that verifies for the name" in done.details
    # The same kind of deployment on a target without `trust`: the system bundle refuses the test root.
    verdict = ProbeVerifier(deadline=2.0).trust_for(object())
    result = probe_sync(Endpoint("127.0.0.1", server.port, NAME), trust=verdict)
    assert (result.outcome, result.fault) == (ProbeOutcome.INCOMPLETE_CHAIN, TrustFault.INCOMPLETE)



def test_ver1_verifier_judges_the_served_chain_at_the_services_clock(nginx_factory, chains):
    """VER-1 at the injected time: the same served chain verifies at the real time and is refused
    as an expired leaf at a clock past its expiry (the verifier never reads the wall clock itself,
    so a test's fixed time judges its fixed-date certificates)."""
    good = make_leaf(chains.inter, [NAME], chains.good.not_before, chains.good.not_after)
    server = nginx_factory([VHost(NAME, good.fullchain_pem, good.key_pem)])
    endpoint = [Endpoint("127.0.0.1", server.port, NAME)]
    trust = TrustBundle.from_pem(chains.root.root_pem)
    today = verify_served(endpoint, good.fingerprint, deadline=5, trust=trust)
    assert today.all_verified, today.endpoints
    later = chains.good.not_after + timedelta(seconds=1)
    after_expiry = verify_served(endpoint, good.fingerprint, deadline=5, trust=trust, clock=lambda: later)
    assert [(s.served, s.result.fault) for s in after_expiry.endpoints] == [(True, TrustFault.EXPIRED_LEAF)]
