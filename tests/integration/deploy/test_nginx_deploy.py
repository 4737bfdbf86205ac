"""Deploying to a real nginx and verifying by TLS probe (DEP-1, DEP-2, DEP-3, DEP-5, DEP-6, DEP-7, VER-1)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from certpilot.adapters.deploy.factory import default_target_factory
from certpilot.adapters.notify.email import EmailNotifier
from certpilot.adapters.probe.tls import Prober, TrustBundle
from certpilot.adapters.probe.verifier import ProbeVerifier
from certpilot.core.deployment import DeploymentState, TargetKind
from certpilot.core.verification import ChainStatus, Endpoint, ProbeOutcome
from certpilot.operations.deployments import add_target, deploy, list_tasks, plan_deployments, targets_of
from certpilot.store.db import session_scope
from tests.integration.deploy.conftest import NOW, add_cert, key_opener, sessions
from tests.servers.certs import fingerprint, make_leaf
from tests.servers.nginx import DEFAULT_NAMES, VHost

pytestmark = pytest.mark.servers
NAMES = list(DEFAULT_NAMES)


def probe_all(server, trust):
    """Probe every SNI name of `server` with the product's prober."""
    import asyncio

    prober = Prober(trust, timeout=3)

    async def run():
        return await asyncio.gather(*(prober.probe(Endpoint("127.0.0.1", server.port, n)) for n in NAMES))

    return dict(zip(NAMES, asyncio.run(run()), strict=True))


@pytest.fixture
def site(nginx_factory, nginx_ca, deploy_db, vault):
    """nginx serving one old certificate for a/b/c on three SNI vhosts, recorded as an nginx target."""
    old = make_leaf(nginx_ca, NAMES, not_before=NOW - timedelta(days=80), not_after=NOW + timedelta(days=10))
    server = nginx_factory([VHost(n, old.fullchain_pem, old.key_pem) for n in NAMES])
    with session_scope(deploy_db) as s:
        old_id = add_cert(s, vault, old)
        target = add_target(
            s, old_id, TargetKind.NGINX, name="nginx test",
            config={"files": [{"cert": str(server.cert_path(n)), "key": str(server.key_path(n))} for n in NAMES],
                    "check_argv": server.check_argv(), "reload_argv": server.reload_argv(), "timeout": 10},
            endpoints=[("127.0.0.1", server.port, n) for n in NAMES], now=NOW)
    return {"server": server, "old": old, "old_id": old_id, "target": target,
            "trust": TrustBundle.from_pem(nginx_ca.root_pem)}


def run_deploy(deploy_db, vault, task_id, trust, *, notify=None, deadline=5.0):
    return deploy(sessions(deploy_db), task_id, default_target_factory(), key_opener(deploy_db, vault),
                  ProbeVerifier(trust, deadline=deadline, clock=lambda: NOW), notify=notify)


def test_dep1_dep5_dep6_ver1_new_certificate_served_on_every_sni_name(site, nginx_ca, deploy_db, vault):
    """DEP-1, DEP-5, DEP-6, VER-1: the renewal replaces the old certificate on every vhost, nginx is
    reloaded, the full chain is served, and the probe sees the new expiry; DEP-2: the task is listed."""
    new = make_leaf(nginx_ca, NAMES, not_before=NOW, not_after=NOW + timedelta(days=395))
    with session_scope(deploy_db) as s:
        new_id = add_cert(s, vault, new, parent_id=site["old_id"])
        tasks = plan_deployments(s, new_id, now=NOW)
    assert [(t.target_id, t.state, t.progress) for t in tasks] == [(site["target"].id, DeploymentState.PENDING, 0)]

    t0 = time.monotonic()
    done = run_deploy(deploy_db, vault, tasks[0].id, site["trust"])
    elapsed = time.monotonic() - t0
    print(f"deploy+verify round trip (3 vhosts, nginx): {elapsed * 1000:.0f} ms")

    assert done.state is DeploymentState.SUCCEEDED, done.details
    assert done.progress == 100
    assert done.attempts == 1
    lines = [line.split(" ", 1)[1] for line in done.details.splitlines()]  # drop the timestamps
    assert [line.split(" ")[0].rstrip(":") for line in lines] == [
        "attempt", "staged", "the", "committed", "reloaded", "verified", "succeeded"]
    assert lines[2] == "the target's own check passed"
    for name, result in probe_all(site["server"], site["trust"]).items():
        assert result.outcome is ProbeOutcome.OK, (name, result)
        assert result.fingerprint == new.fingerprint                       # VER-1 / DEP-1
        assert result.not_after == new.not_after                           # VER-1: expiry equals the new one
        assert result.chain is ChainStatus.COMPLETE                        # DEP-6
        assert result.chain_fingerprints == (fingerprint(nginx_ca.cert),)  # the intermediate is served
    server = site["server"]
    for n in NAMES:
        assert server.cert_path(n).read_bytes() == new.fullchain_pem      # DEP-6: leaf + intermediate
        assert server.key_path(n).stat().st_mode & 0o777 == 0o600         # CSR-5
        assert server.cert_path(n).is_symlink()  # served through the target's `current` link
    slot = default_target_factory()(site["target"], None).slot
    assert slot.versions() == [slot.current()] == [new.fingerprint[:24]]  # finalized: the backup is dropped
    with session_scope(deploy_db) as s:
        assert [t.id for t in targets_of(s, new_id)] == [site["target"].id]  # the next renewal finds it
        assert targets_of(s, site["old_id"]) == []
        assert [(t.id, t.state) for t in list_tasks(s, new_id)] == [(done.id, DeploymentState.SUCCEEDED)]


def test_dep2_rerun_of_succeeded_deployment_is_a_noop(site, nginx_ca, deploy_db, vault):
    """DEP-2: planning and deploying again creates no second task and touches nothing."""
    new = make_leaf(nginx_ca, NAMES, not_before=NOW, not_after=NOW + timedelta(days=395))
    with session_scope(deploy_db) as s:
        new_id = add_cert(s, vault, new, parent_id=site["old_id"])
        task = plan_deployments(s, new_id, now=NOW)[0]
    first = run_deploy(deploy_db, vault, task.id, site["trust"])
    loaded = site["server"].last_load_time()
    again = run_deploy(deploy_db, vault, task.id, site["trust"])
    with session_scope(deploy_db) as s:
        replanned = plan_deployments(s, new_id, now=NOW)
    assert again == first
    assert [t.id for t in replanned] == [task.id]
    assert site["server"].last_load_time() == loaded  # no second reload


def test_dep7_mismatched_key_fails_nginx_t_and_old_certificate_stays(site, nginx_ca, deploy_db, vault, smtp_server):
    """DEP-7: a key that does not match fails `nginx -t`; the old files are restored, the old
    certificate is still served (probe), and DEP-3: the failure is mailed to the owner."""
    new = make_leaf(nginx_ca, NAMES, not_before=NOW, not_after=NOW + timedelta(days=395))
    stranger = make_leaf(nginx_ca, ["x.example.test"])
    with session_scope(deploy_db) as s:
        new_id = add_cert(s, vault, new, parent_id=site["old_id"], key_pem=stranger.key_pem)
        task = plan_deployments(s, new_id, now=NOW)[0]
    smtp_server.clear()
    mail = EmailNotifier(smtp_server.host, smtp_server.port, sender="certpilot@example.test",
                         recipients=["ops@example.test"], allow_insecure=True)
    done = run_deploy(deploy_db, vault, task.id, site["trust"], notify=lambda _session, event: mail.send(event))

    assert done.state is DeploymentState.ROLLED_BACK
    assert done.progress == 20  # staged, failed at validate
    assert "key values mismatch" in done.details
    assert "rolled back" in done.details
    for result in probe_all(site["server"], site["trust"]).values():
        assert result.fingerprint == site["old"].fingerprint
    for n in NAMES:
        assert site["server"].cert_path(n).read_bytes() == site["old"].fullchain_pem
        assert site["server"].key_path(n).read_bytes() == site["old"].key_pem
    assert site["server"].test_config().returncode == 0
    assert len(smtp_server.messages) == 1
    body = smtp_server.messages[0].text
    assert new_id in body and "key values mismatch" in body
    assert "PRIVATE KEY" not in body
    with session_scope(deploy_db) as s:
        assert [t.id for t in targets_of(s, site["old_id"])] == [site["target"].id]  # still the old one's


def test_dep7_failed_verification_rolls_back_and_reloads(nginx_factory, nginx_ca, deploy_db, vault):
    """DEP-7: the files deploy and reload, but an endpoint still serves another certificate, so the
    run restores the previous files, reloads again, and records the VER-2 diagnosis."""
    old = make_leaf(nginx_ca, NAMES, not_before=NOW - timedelta(days=80), not_after=NOW + timedelta(days=10))
    server = nginx_factory([VHost(n, old.fullchain_pem, old.key_pem) for n in NAMES])
    trust = TrustBundle.from_pem(nginx_ca.root_pem)
    with session_scope(deploy_db) as s:
        old_id = add_cert(s, vault, old)
        # The target's files are a and b only, but c is one of its endpoints: c never changes.
        add_target(s, old_id, TargetKind.NGINX,
                   config={"files": [{"cert": str(server.cert_path(n)), "key": str(server.key_path(n))}
                                     for n in NAMES[:2]],
                           "check_argv": server.check_argv(), "reload_argv": server.reload_argv(),
                           "pid_file": str(server.pid_file)},
                   endpoints=[("127.0.0.1", server.port, n) for n in NAMES], now=NOW)
        new = make_leaf(nginx_ca, NAMES, not_before=NOW, not_after=NOW + timedelta(days=395))
        new_id = add_cert(s, vault, new, parent_id=old_id)
        task = plan_deployments(s, new_id, now=NOW)[0]
    loaded = server.last_load_time()
    time.sleep(0.02)  # process start times tick at 10 ms
    done = run_deploy(deploy_db, vault, task.id, trust, deadline=0.5)

    assert done.state is DeploymentState.ROLLED_BACK, done.details
    assert done.progress == 75
    assert "1 of 3 endpoint(s) do not serve the new certificate" in done.details
    assert "c.example.test" in done.details
    # VER-2, diagnosed before the rollback: files new, server reloaded, old certificate still
    # answered for c → another server block/listener answers this name.
    assert "[unknown]" in done.details and "second server or listener" in done.details
    # Rolled back and reloaded: a and b serve the old certificate again (nginx serves the new
    # config ~100 ms after the reload command: poll).
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        served = {n: r.fingerprint for n, r in probe_all(server, trust).items()}
        if set(served.values()) == {old.fingerprint}:
            break
        time.sleep(0.05)
    assert served == {n: old.fingerprint for n in NAMES}
    assert server.last_load_time() > loaded
