"""The files bundle (DEP-4, CSR-5, CSR-2) and the managed deployment records (DEP-2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from certpilot.adapters.deploy.factory import default_target_factory
from certpilot.core.deployment import DeploymentState, TargetKind, VerifyResult
from certpilot.core.errors import BadInputError, Reason, RefusedError
from certpilot.operations.deployments import add_target, deploy, list_tasks, plan_deployments, targets_of
from certpilot.store.db import session_scope
from certpilot.store.tables_deploy import DeploymentTaskRow
from tests.integration.deploy.conftest import NOW, add_cert, key_opener, sessions
from tests.servers.certs import make_ca, make_leaf


def no_endpoints(material, endpoints, target, old_fingerprint):
    """VER-1: a target recorded without endpoints is probed at `https://<name>:443` (the seed's
    default); the test stands for the site answering there."""
    assert [(e.host, e.port, e.sni) for e in endpoints] == [(material.common_name, 443, material.common_name)]
    return VerifyResult(True, "probed at the default endpoint (test)")


@pytest.fixture(scope="module")
def ca():
    return make_ca("files intermediate", issuer=make_ca("files root"))


def _deploy(url, vault, task_id):
    return deploy(sessions(url), task_id, default_target_factory(), key_opener(url, vault),
                  no_endpoints)


def test_dep4_csr5_files_bundle_with_0600_key_and_post_command(tmp_path, ca, deploy_db, vault):
    """DEP-4: the bundle a human copies (cert, chain, fullchain, key) is written, the key 0600
    (CSR-5), and the post-deploy command runs after it; the previous bundle is replaced."""
    bundle = tmp_path / "bundle"
    installed = tmp_path / "installed.pem"
    old = make_leaf(ca, ["files.example.test"], not_before=NOW - timedelta(days=80), not_after=NOW + timedelta(days=5))
    new = make_leaf(ca, ["files.example.test"], not_before=NOW, not_after=NOW + timedelta(days=395))
    with session_scope(deploy_db) as s:
        old_id = add_cert(s, vault, old)
        add_target(s, old_id, TargetKind.FILES, now=NOW,
                   config={"directory": str(bundle),
                           "post_command": ["cp", str(bundle / "fullchain.pem"), str(installed)]})
        new_id = add_cert(s, vault, new, parent_id=old_id)
        task = plan_deployments(s, new_id, now=NOW)[0]
    done = _deploy(deploy_db, vault, task.id)

    assert done.state is DeploymentState.SUCCEEDED, done.details
    assert sorted(p.name for p in bundle.iterdir()) == ["cert.pem", "chain.pem", "fullchain.pem", "key.pem"]
    assert (bundle / "cert.pem").read_bytes() == new.cert_pem
    assert (bundle / "chain.pem").read_bytes() == b"".join(new.chain_pems)
    assert (bundle / "fullchain.pem").read_bytes() == new.fullchain_pem          # DEP-6
    assert (bundle / "key.pem").read_bytes() == new.key_pem
    assert (bundle / "key.pem").stat().st_mode & 0o777 == 0o600                  # CSR-5
    assert installed.read_bytes() == new.fullchain_pem
    # The old version (the backup) is gone once the success is recorded; only the served one stays.
    assert [p.name for p in (tmp_path / ".bundle.certpilot" / "versions").iterdir()] == [new.fingerprint[:24]]


def test_csr2_key_not_held_refused_for_managed_target_but_bundle_without_key(tmp_path, ca, deploy_db, vault):
    """CSR-2: a certificate from the user's own CSR (key not held) is refused for an nginx target
    with KEY_NOT_HELD and a sentence; DEP-4: a files bundle without key.pem is still written."""
    old = make_leaf(ca, ["manual.example.test"])
    new = make_leaf(ca, ["manual.example.test"], not_after=NOW + timedelta(days=395))
    with session_scope(deploy_db) as s:
        old_id = add_cert(s, vault, old)
        nginx = add_target(s, old_id, TargetKind.NGINX, now=NOW,
                           config={"files": [{"cert": str(tmp_path / "c.pem"), "key": str(tmp_path / "k.pem")}]})
        add_target(s, old_id, TargetKind.FILES, now=NOW, config={"directory": str(tmp_path / "b")})
        new_id = add_cert(s, vault, new, parent_id=old_id, key_held=False)
        tasks = {t.target_id: t for t in plan_deployments(s, new_id, now=NOW)}
    with pytest.raises(RefusedError) as refused:
        _deploy(deploy_db, vault, tasks[nginx.id].id)
    assert refused.value.refusal.reason is Reason.KEY_NOT_HELD
    assert "does not hold its private key" in refused.value.refusal.message
    assert not (tmp_path / "c.pem").exists()
    files_task = next(t for tid, t in tasks.items() if tid != nginx.id)
    assert _deploy(deploy_db, vault, files_task.id).state is DeploymentState.SUCCEEDED
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["cert.pem", "chain.pem", "fullchain.pem"]


def test_csr2_csr5_key_opener_opens_the_held_key_and_refuses_without_one(ca, deploy_db, vault):
    """CSR-5: the services' key opener reads the sealed key (store port) and opens it with the
    vault; CSR-2: a certificate without a stored key is refused with KEY_NOT_HELD, not a crash."""
    held = make_leaf(ca, ["opener.example.test"])
    own_csr = make_leaf(ca, ["opener-csr.example.test"])
    with session_scope(deploy_db) as s:
        held_id = add_cert(s, vault, held)
        own_csr_id = add_cert(s, vault, own_csr, key_held=False)
    open_key = key_opener(deploy_db, vault)
    assert open_key(held_id) == held.key_pem
    with pytest.raises(RefusedError) as refused:
        open_key(own_csr_id)
    assert refused.value.refusal.reason is Reason.KEY_NOT_HELD
    assert "does not hold its private key" in refused.value.refusal.message


def test_dep2_one_task_per_target_listed_by_certificate_and_idempotent(tmp_path, ca, store_url, vault):
    """DEP-2: a task per target of the old certificate, listed by the new certificate's id with
    progress and details; planning twice creates nothing twice (UNIQUE (certificate, target) on
    SQLite and PostgreSQL); a certificate without a parent has nothing to replace."""
    old = make_leaf(ca, ["multi.example.test"])
    new = make_leaf(ca, ["multi.example.test"], not_after=NOW + timedelta(days=395))
    with session_scope(store_url) as s:
        old_id = add_cert(s, vault, old)
        t1 = add_target(s, old_id, TargetKind.FILES, config={"directory": str(tmp_path / "one")}, now=NOW)
        t2 = add_target(s, old_id, TargetKind.FILES, config={"directory": str(tmp_path / "two")}, now=NOW)
        new_id = add_cert(s, vault, new, parent_id=old_id)
        first = plan_deployments(s, new_id, now=NOW)
        second = plan_deployments(s, new_id, now=NOW)
        assert plan_deployments(s, old_id, now=NOW) == []
    assert first == second
    assert sorted(t.target_id for t in first) == sorted([t1.id, t2.id])
    assert {(t.state, t.progress, t.details, t.attempts) for t in first} == {(DeploymentState.PENDING, 0, "", 0)}
    _deploy(store_url, vault, first[0].id)
    with session_scope(store_url) as s:
        listed = {t.id: t for t in list_tasks(s, new_id)}
        assert listed[first[0].id].state is DeploymentState.SUCCEEDED
        assert listed[first[0].id].progress == 100
        assert listed[first[0].id].details.endswith("succeeded")
        assert listed[first[1].id].state is DeploymentState.PENDING
        # DEP-1: the deployed target now belongs to the new certificate; the other still to the old.
        assert [t.id for t in targets_of(s, new_id)] == [first[0].target_id]
        assert [t.id for t in targets_of(s, old_id)] == [first[1].target_id]
    with pytest.raises(IntegrityError), session_scope(store_url) as s:
        s.add(DeploymentTaskRow(id="dup", certificate_id=new_id, target_id=t1.id, state="pending", progress=0,
                                details="", attempts=0, created_at=NOW, updated_at=NOW))



@pytest.mark.parametrize("config, field", [
    ({"directory": "/x", "password": "hunter2"}, "config.password"),
    ({"directory": "/x", "aws": {"secret_access_key": "s"}}, "config.aws.secret_access_key"),
    ({"directory": "-----BEGIN PRIVATE KEY-----"}, "config.directory"),
])
def test_csr5_target_config_holds_no_secrets(config, field, ca, deploy_db, vault):
    """CSR-5: target configuration is plain text, so secrets are refused with the field named."""
    with session_scope(deploy_db) as s:
        cid = add_cert(s, vault, make_leaf(ca, ["secret.example.test"]))
        with pytest.raises(BadInputError) as bad:
            add_target(s, cid, TargetKind.FILES, config=config, now=NOW)
    assert field in bad.value.message
    assert "hunter2" not in bad.value.message


def test_dep2_running_task_refused_and_bad_config_fails_without_touching(tmp_path, ca, deploy_db, vault):
    """DEP-2: a task another run holds is refused with DEPLOYMENT_IN_PROGRESS; a target whose
    configuration cannot build an adapter ends FAILED with a sentence, nothing touched."""
    from sqlalchemy import update

    old = make_leaf(ca, ["held.example.test"])
    new = make_leaf(ca, ["held.example.test"], not_after=NOW + timedelta(days=395))
    with session_scope(deploy_db) as s:
        old_id = add_cert(s, vault, old)
        add_target(s, old_id, TargetKind.FILES, config={"dir": "typo"}, now=NOW)
        new_id = add_cert(s, vault, new, parent_id=old_id)
        task = plan_deployments(s, new_id, now=NOW)[0]
        s.execute(update(DeploymentTaskRow).where(DeploymentTaskRow.id == task.id)
                  .values(state="running", started_at=datetime.now(UTC)))
    with pytest.raises(RefusedError) as refused:
        _deploy(deploy_db, vault, task.id)
    assert refused.value.refusal.reason is Reason.DEPLOYMENT_IN_PROGRESS
    with session_scope(deploy_db) as s:
        s.execute(update(DeploymentTaskRow).where(DeploymentTaskRow.id == task.id).values(state="pending"))
    done = _deploy(deploy_db, vault, task.id)
    assert done.state is DeploymentState.FAILED
    assert "setup failed: 'directory'" in done.details
    assert "nothing on the target was changed" in done.details


def test_dep2_no_transaction_held_across_the_targets_work_and_a_failing_notice_keeps_the_record(tmp_path, ca,
                                                                                               deploy_db, vault):
    """DEP-2: the run is a sequence of short transactions: while the target's work and the
    verification run, another writer gets SQLite's write lock at once and sees the progress
    committed so far. DEP-3: a notice that fails in the transaction recording the failure is
    undone alone (its savepoint); the task still ends ROLLED_BACK with its details."""
    import sqlite3

    from sqlalchemy import update
    from sqlalchemy.engine import make_url

    old = make_leaf(ca, ["short.example.test"])
    new = make_leaf(ca, ["short.example.test"], not_after=NOW + timedelta(days=395))
    with session_scope(deploy_db) as s:
        old_id = add_cert(s, vault, old)
        add_target(s, old_id, TargetKind.FILES, config={"directory": str(tmp_path / "bundle")}, now=NOW)
        new_id = add_cert(s, vault, new, parent_id=old_id)
        task = plan_deployments(s, new_id, now=NOW)[0]
    seen = []

    def verifier(material, endpoints, target, old_fingerprint):
        other = sqlite3.connect(make_url(deploy_db).database, timeout=0.5, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # "database is locked" if the run held a transaction
            seen.append(other.execute("SELECT state, progress FROM deployment_tasks WHERE id = ?",
                                      (task.id,)).fetchone())
            other.execute("ROLLBACK")
        finally:
            other.close()
        return VerifyResult(False, "the endpoint still serves the old certificate (test)")

    def notify(session, event):
        session.execute(update(DeploymentTaskRow).where(DeploymentTaskRow.id == task.id).values(details="lost"))
        raise RuntimeError("the inbox is full")

    done = deploy(sessions(deploy_db), task.id, default_target_factory(), key_opener(deploy_db, vault),
                  verifier, notify=notify)
    assert seen == [("running", 75)]  # reloaded, committed, visible to another connection
    assert done.state is DeploymentState.ROLLED_BACK
    with session_scope(deploy_db) as s:
        (listed,) = list_tasks(s, new_id)
    assert listed == done
    assert "verification failed" in listed.details and listed.details.endswith("rolled_back")


def test_dep2_relaunched_run_takes_over_a_task_left_running_and_the_old_run_is_fenced(tmp_path, ca, deploy_db,
                                                                                     vault):
    """DEP-2 after a crash: a task a dead run left RUNNING two minutes ago (inside its lease) is
    taken over at once by the run that claimed the certificate's work after it started; the old
    run, if it was only slow, is fenced: its next step is refused and it stops."""
    from sqlalchemy import update

    from certpilot.operations.deployments import _claim, _Run
    from certpilot.store.run_queries import upsert_claim

    old = make_leaf(ca, ["relaunch.example.test"])
    new = make_leaf(ca, ["relaunch.example.test"], not_after=NOW + timedelta(days=395))
    started = datetime.now(UTC) - timedelta(minutes=2)
    with session_scope(deploy_db) as s:
        old_id = add_cert(s, vault, old)
        add_target(s, old_id, TargetKind.FILES, config={"directory": str(tmp_path / "bundle")}, now=NOW)
        new_id = add_cert(s, vault, new, parent_id=old_id)
        task = plan_deployments(s, new_id, now=NOW)[0]
        upsert_claim(s, new_id, "dead-run", started - timedelta(seconds=5))  # claimed, then started deploying
    zombie = _claim(sessions(deploy_db), task.id, started, datetime.now(UTC) + timedelta(minutes=2))  # the run that then died (attempt 1)
    with session_scope(deploy_db) as s:
        s.execute(update(DeploymentTaskRow).where(DeploymentTaskRow.id == task.id).values(started_at=started))
    with pytest.raises(RefusedError) as held:  # inside the lease, no newer claim: refused as before
        _deploy(deploy_db, vault, task.id)
    assert held.value.refusal.reason is Reason.DEPLOYMENT_IN_PROGRESS
    with session_scope(deploy_db) as s:
        upsert_claim(s, new_id, "relaunched-run", datetime.now(UTC))  # the scan relaunched the work
    done = _deploy(deploy_db, vault, task.id)
    assert (done.state, done.attempts) == (DeploymentState.SUCCEEDED, 2)
    assert (tmp_path / "bundle" / "fullchain.pem").read_bytes().startswith(new.cert_pem)
    late = _Run(sessions(deploy_db), task.id, zombie, lambda: datetime.now(UTC), timedelta(minutes=2))
    with pytest.raises(RefusedError, match=f"attempt 2 of deployment task {task.id} took it over from this run"):
        late.step(5, "the slow old run wakes up")
    with session_scope(deploy_db) as s:
        assert s.get(DeploymentTaskRow, task.id).state == "succeeded"
