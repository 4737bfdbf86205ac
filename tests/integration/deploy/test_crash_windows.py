"""DEP-7 / DEP-2 fault injection: a deployment killed, fenced or failing at every window never
leaves a site without a working certificate (real nginx; moto_server for the load balancer).

After each fault: every vhost's certificate and key on disk match (a restart would load them:
`nginx -t` passes), the probe sees one certificate on every name, and the task's recorded state
says which one (SUCCEEDED: the new; ROLLED_BACK or FAILED with "nothing ... changed": the old).
A kill is `_Killed`, a BaseException nothing in the product catches, raised right after a
system call (a rename) or a step: what the process did before it stays done, nothing after runs.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import OperationalError

from certpilot.adapters.deploy import slots
from certpilot.adapters.deploy.base import DeployError, key_matches_certificate
from certpilot.adapters.deploy.factory import default_target_factory
from certpilot.adapters.probe.tls import TrustBundle
from certpilot.adapters.probe.verifier import ProbeVerifier
from certpilot.core.deployment import DeploymentState, Progress, TargetKind, VerifyResult
from certpilot.core.errors import Reason, RefusedError
from certpilot.operations import deployments as ops
from certpilot.operations.deployments import add_target, deploy, plan_deployments, targets_of
from certpilot.store.db import session_scope
from certpilot.store.tables_deploy import DeploymentTargetRow, DeploymentTaskRow
from tests.integration.deploy.conftest import NOW, add_cert, key_opener, sessions
from tests.integration.deploy.test_nginx_deploy import probe_all
from tests.servers.certs import make_leaf
from tests.servers.nginx import VHost

pytestmark = pytest.mark.servers
NAMES = ["a.example.test", "b.example.test"]
LATER = timedelta(minutes=10)
"""How far past the dead run's lease the rerun's claim is made."""


class _Killed(BaseException):
    """The process dies here."""


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def site(nginx_factory, nginx_ca, deploy_db, vault):
    """nginx serving `old` on two SNI vhosts, an nginx target for it, and a renewal `new` planned."""
    old = make_leaf(nginx_ca, NAMES, not_before=NOW - timedelta(days=80), not_after=NOW + timedelta(days=10))
    new = make_leaf(nginx_ca, NAMES, not_before=NOW, not_after=NOW + timedelta(days=395))
    server = nginx_factory([VHost(n, old.fullchain_pem, old.key_pem) for n in NAMES])
    with session_scope(deploy_db) as s:
        old_id = add_cert(s, vault, old)
        target = add_target(
            s, old_id, TargetKind.NGINX, name="crash nginx",
            config={"files": [{"cert": str(server.cert_path(n)), "key": str(server.key_path(n))} for n in NAMES],
                    "check_argv": server.check_argv(), "reload_argv": server.reload_argv(), "timeout": 10},
            endpoints=[("127.0.0.1", server.port, n) for n in NAMES], now=NOW)
        new_id = add_cert(s, vault, new, parent_id=old_id)
        task = plan_deployments(s, new_id, now=NOW)[0]
    return {"server": server, "old": old, "new": new, "old_id": old_id, "new_id": new_id, "task": task,
            "target": target, "trust": TrustBundle.from_pem(nginx_ca.root_pem), "url": deploy_db, "vault": vault}


def _run(site, *, factory=None, verifier=None, now=None, **kw):
    return deploy(sessions(site["url"]), site["task"].id, factory or default_target_factory(),
                  key_opener(site["url"], site["vault"]), verifier or ProbeVerifier(site["trust"], deadline=5, clock=lambda: NOW),
                  now=now, **kw)


def _failing_stage_factory():
    """Targets whose stage fails at once (a full disk), after taking the host lock like a real one."""
    real = default_target_factory()

    def build(record, opener):
        target = real(record, opener)

        def stage(material):
            target.lock.acquire(what="test")
            raise DeployError("no space left on device (test)", step="stage")

        target.stage = stage
        return target

    return build


def _served(site, expect: str | None = None) -> set[str]:
    """The fingerprints the vhosts answer with; nginx serves a reload ~100 ms after the command,
    so with `expect` this polls (up to 5 s) until every vhost answers with it."""
    deadline = time.monotonic() + 5
    while True:
        got = {r.fingerprint for r in probe_all(site["server"], site["trust"]).values()}
        if expect is None or got == {expect} or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def _on_disk(site) -> str:
    """"old" or "new": what every vhost's files hold, asserting each pair matches and nginx -t passes."""
    server, seen = site["server"], set()
    for n in NAMES:
        cert, key = server.cert_path(n).read_bytes(), server.key_path(n).read_bytes()
        assert key_matches_certificate(cert, key), f"{n}: the key does not match the certificate on disk"
        seen.add("new" if cert == site["new"].fullchain_pem else "old" if cert == site["old"].fullchain_pem else "?")
    assert server.test_config().returncode == 0
    assert len(seen) == 1, seen
    return seen.pop()


def _task(site) -> DeploymentTaskRow:
    with session_scope(site["url"]) as s:
        row = s.get(DeploymentTaskRow, site["task"].id)
        s.expunge(row)
        return row


def _assert_old_everywhere(site) -> None:
    assert _on_disk(site) == "old"
    assert _served(site, site["old"].fingerprint) == {site["old"].fingerprint}
    with session_scope(site["url"]) as s:
        assert [t.id for t in targets_of(s, site["old_id"])] == [site["target"].id]


def _kill_after_rename(monkeypatch, site, k: int) -> list[str]:
    """Kill the process right after the k-th rename under nginx's prefix (os.rename or os.replace)."""
    done: list[str] = []
    prefix = str(site["server"].prefix)
    for name in ("rename", "replace"):
        real = getattr(os, name)

        def call(src, dst, *a, _real=real, **kw):
            _real(src, dst, *a, **kw)
            if str(dst).startswith(prefix):
                done.append(str(dst))
                if len(done) == k:
                    raise _Killed()

        monkeypatch.setattr(slots.os, name, call)
    return done


# Renames of a first deployment to two vhosts: the snapshot's directory, `current` → snapshot,
# four served files → links (content unchanged), the new version's directory, `current` → new.
RENAMES = 8


@pytest.mark.parametrize("k", range(1, RENAMES + 1))
def test_dep7_kill_after_each_file_switch_then_a_rerun_whose_stage_fails_restores_the_old(k, site, monkeypatch):
    """DEP-7: killed after any rename of a deployment (between the cert's and the key's switch
    included), the files are a matching pair and nginx -t passes; the rerun after the lease
    fails at stage and rolls back: every vhost serves and holds the old certificate, recorded
    ROLLED_BACK, and the new version is gone while the old one (the backup) is what is served."""
    renames = _kill_after_rename(monkeypatch, site, k)
    with pytest.raises(_Killed):
        _run(site, verifier=lambda *a: VerifyResult(True, "test"))
    monkeypatch.undo()
    assert len(renames) == k
    assert _on_disk(site) == ("new" if k == RENAMES else "old")
    assert _served(site) == {site["old"].fingerprint}  # not reloaded: nginx still holds the old one
    done = _run(site, factory=_failing_stage_factory(), now=_now() + LATER)
    assert (done.state, done.attempts) == (DeploymentState.ROLLED_BACK, 2), done.details
    _assert_old_everywhere(site)
    with session_scope(site["url"]) as s:
        slot = default_target_factory()(ops.get_target(s, site["target"].id), None).slot
    # The backup is served again (or, killed before the first switch, no slot serves at all); the
    # new version and what the dead run half-wrote are dropped.
    assert slot.versions() == ([slot.current()] if k > 1 else [])


def test_dep7_kill_after_reload_then_a_rerun_whose_stage_fails_restores_the_old(site, monkeypatch):
    """DEP-7, the window of the issue: run A switched and reloaded (the new certificate is served)
    and died; run B takes over after the lease and fails in stage. B flips back to the version
    from before A (kept in the task's checkpoint and on disk) and reloads: old everywhere,
    recorded ROLLED_BACK — not "rolled back" while the unverified new one stays live."""
    real_step = ops._Run.step

    def step(self, progress, line, **kw):
        out = real_step(self, progress, line, **kw)
        if progress == Progress.RELOADED:
            raise _Killed()
        return out

    monkeypatch.setattr(ops._Run, "step", step)
    with pytest.raises(_Killed):
        _run(site)
    monkeypatch.undo()
    assert _on_disk(site) == "new"
    assert _served(site, site["new"].fingerprint) == {site["new"].fingerprint}
    done = _run(site, factory=_failing_stage_factory(), now=_now() + LATER)
    assert done.state is DeploymentState.ROLLED_BACK, done.details
    assert "no space left on device (test)" in done.details
    _assert_old_everywhere(site)


@pytest.mark.parametrize("at", [Progress.STARTED, Progress.STAGED, Progress.VALIDATED, Progress.COMMITTED,
                                Progress.RELOADED, Progress.VERIFIED, Progress.DONE])
def test_dep7_operational_error_at_each_step_rolls_back_in_its_own_transaction(at, site, monkeypatch):
    """DEP-7: the store failing (OperationalError) when a step commits — the success's record
    included — never skips the rollback: the old certificate is restored and served, and the
    final state is recorded in a transaction of its own (ROLLED_BACK; FAILED with "nothing on
    the target was changed" when the run had not touched it). The task is not left RUNNING."""
    real_step = ops._Run.step
    failed = []

    def step(self, progress, line, **kw):
        if progress == at and not failed and (at != Progress.DONE or kw.get("state")):
            failed.append(line)
            raise OperationalError("UPDATE deployment_tasks", {}, Exception("disk I/O error (test)"))
        return real_step(self, progress, line, **kw)

    monkeypatch.setattr(ops._Run, "step", step)
    done = _run(site)
    assert failed
    expected = DeploymentState.FAILED if at == Progress.STARTED else DeploymentState.ROLLED_BACK
    assert done.state is expected, done.details
    assert "disk I/O error (test)" in done.details
    if at == Progress.STARTED:
        assert "setup failed" in done.details  # before anything was touched
    _assert_old_everywhere(site)
    row = _task(site)
    assert row.state == expected.value and row.lease_until is None and row.finished_at is not None
    with session_scope(site["url"]) as s:
        assert s.get(DeploymentTargetRow, site["target"].id).lock_task_id is None  # the target is free again


def test_dep2_a_live_run_keeps_its_task_by_heartbeat_and_a_takeover_fences_it(site):
    """DEP-2: run A (alive, stalled after switching the files) keeps its task: its heartbeat
    renews the lease, so a second run is refused. Past the lease, run B takes the task over
    (attempt 2) and waits for A's host lock; A wakes up, its next step is fenced (TakenOverError:
    it records nothing more and does not touch the target), B then deploys: the new certificate
    is served, recorded SUCCEEDED by attempt 2."""
    gate, stalled = threading.Event(), threading.Event()
    real = default_target_factory()

    def stalling(record, opener):
        target = real(record, opener)
        validate = target.validate

        def slow_validate():
            validate()
            stalled.set()
            gate.wait(20)

        target.validate = slow_validate
        return target

    outcome: dict[str, object] = {}

    def run_a():
        try:
            outcome["a"] = _run(site, factory=stalling, lease=timedelta(seconds=2),
                                heartbeat=timedelta(milliseconds=200))
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome["a"] = exc

    a = threading.Thread(target=run_a)
    a.start()
    assert stalled.wait(20)
    time.sleep(2.4)  # longer than A's lease (2 s, beats every 0.2 s: margin under load)
    with pytest.raises(RefusedError) as held:
        _run(site, wait=0)
    assert held.value.refusal.reason is Reason.DEPLOYMENT_IN_PROGRESS
    b_result: dict[str, object] = {}
    b = threading.Thread(target=lambda: b_result.setdefault("b", _run(site, now=_now() + LATER)))
    b.start()
    deadline = time.monotonic() + 10
    while _task(site).attempts != 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _task(site).attempts == 2  # B claimed the task; it now waits for A's host lock
    gate.set()
    a.join(20)
    b.join(30)
    assert isinstance(outcome["a"], ops.TakenOverError), outcome["a"]
    done = b_result["b"]
    assert (done.state, done.attempts) == (DeploymentState.SUCCEEDED, 2), done.details
    assert "the target's own check passed" in done.details.split("attempt 2:")[1]
    assert done.details.split("attempt 2:")[0].count("the target's own check passed") == 0  # A was fenced
    assert _on_disk(site) == "new"
    assert _served(site, site["new"].fingerprint) == {site["new"].fingerprint}


def test_dep2_two_tasks_on_one_target_run_one_after_the_other(site, nginx_ca):
    """DEP-2: an emergency certificate and a renewal deploying to the same target at once: the
    second waits for the first to release the target's lock, then deploys; the target serves the
    one that finished last, and the records say so (both SUCCEEDED, the target on the last)."""
    other = make_leaf(nginx_ca, NAMES, not_before=NOW, not_after=NOW + timedelta(days=30))
    with session_scope(site["url"]) as s:
        other_id = add_cert(s, site["vault"], other, parent_id=site["old_id"])
        other_task = plan_deployments(s, other_id, now=NOW)[0]
    gate, stalled = threading.Event(), threading.Event()
    real = default_target_factory()

    def stalling(record, opener):
        target = real(record, opener)
        reload = target.reload

        def slow_reload():
            reload()
            stalled.set()
            gate.wait(20)

        target.reload = slow_reload
        return target

    results: dict[str, object] = {}
    first = threading.Thread(target=lambda: results.setdefault("first", _run(site, factory=stalling)))
    first.start()
    assert stalled.wait(20)

    def second():
        results["second"] = deploy(sessions(site["url"]), other_task.id, default_target_factory(),
                                   key_opener(site["url"], site["vault"]), ProbeVerifier(site["trust"], deadline=5, clock=lambda: NOW),
                                   sleep=lambda s: time.sleep(min(s, 0.05)))

    t2 = threading.Thread(target=second)
    t2.start()
    time.sleep(0.3)
    with session_scope(site["url"]) as s:
        assert s.get(DeploymentTaskRow, other_task.id).state == "pending"  # waiting, nothing touched
        assert s.get(DeploymentTargetRow, site["target"].id).lock_task_id == site["task"].id
    gate.set()
    first.join(20)
    t2.join(30)
    assert results["first"].state is DeploymentState.SUCCEEDED, results["first"].details
    assert results["second"].state is DeploymentState.SUCCEEDED, results["second"].details
    assert results["second"].started_at >= results["first"].finished_at
    assert _served(site, other.fingerprint) == {other.fingerprint}
    for n in NAMES:
        assert site["server"].cert_path(n).read_bytes() == other.fullchain_pem
        assert key_matches_certificate(other.cert_pem, site["server"].key_path(n).read_bytes())
    with session_scope(site["url"]) as s:
        assert [t.id for t in targets_of(s, other_id)] == [site["target"].id]


# ---------------------------------------------------------------------------- AWS (moto_server)

from tests.integration.deploy.conftest import T  # noqa: E402
from tests.integration.deploy.test_aws_targets import default_cert  # noqa: E402


class _Dying:
    """A boto3 client whose `method` does its work, then the process dies (once)."""

    def __init__(self, client, method: str):
        self._client, self._method, self.died = client, method, False

    def __getattr__(self, name):
        real = getattr(self._client, name)
        if name != self._method or self.died:
            return real

        def call(**kw):
            real(**kw)
            self.died = True
            raise _Killed()

        return call


def _alb_task(listener, aws_ca, deploy_db, vault, name: str):
    old = make_leaf(aws_ca, [name], not_before=T, not_after=T + timedelta(days=10))
    new = make_leaf(aws_ca, [name], not_before=T, not_after=T + timedelta(days=395))
    with session_scope(deploy_db) as s:
        old_id = add_cert(s, vault, old)
        add_target(s, old_id, TargetKind.AWS_ELB, now=NOW, config={"listener_arn": listener["arn"], "mode": "default"})
        new_id = add_cert(s, vault, new, parent_id=old_id)
        return new, plan_deployments(s, new_id, now=NOW)[0]


def _aws_deploy(deploy_db, vault, task_id, clients, verifier, when):
    factory = default_target_factory(aws=lambda svc, cfg: clients[svc])
    return deploy(sessions(deploy_db), task_id, factory, key_opener(deploy_db, vault), verifier, now=when,
                  clock=lambda: when)


def _arns(acm) -> set[str]:
    return {c["CertificateArn"] for c in acm.list_certificates()["CertificateSummaryList"]}


def test_dep7_alb_kill_after_deleting_the_import_then_the_rerun_deploys(listener, aws_ca, deploy_db, vault):
    """DEP-7 (ALB): run A's verification fails, its rollback restores the old default, deletes its
    import and dies before recording that (the deleted ARN stays in the checkpoint). The rerun
    forgets the deleted ARN instead of attaching it (it used to fail forever): it imports again,
    deploys, and is recorded SUCCEEDED with the listener serving its import."""
    elb, acm = listener["elb"], listener["acm"]
    new, task = _alb_task(listener, aws_ca, deploy_db, vault, "alb-kill.example.test")
    before = _arns(acm)
    dying = _Dying(acm, "delete_certificate")
    with pytest.raises(_Killed):
        _aws_deploy(deploy_db, vault, task.id, {"acm": dying, "elbv2": elb},
                    lambda *a: VerifyResult(False, "still the old one (test)"), T)
    assert dying.died
    assert default_cert(elb, listener["arn"]) == listener["old_arn"]  # the old default is served
    assert _arns(acm) == before                                        # the import is gone
    with session_scope(deploy_db) as s:
        assert s.get(DeploymentTaskRow, task.id).checkpoint.get("new_certificate_arn")  # ... but still recorded
    done = _aws_deploy(deploy_db, vault, task.id, {"acm": acm, "elbv2": elb},
                       lambda *a: VerifyResult(True, "test"), T + LATER)
    assert done.state is DeploymentState.SUCCEEDED, done.details
    (imported,) = _arns(acm) - before
    assert default_cert(elb, listener["arn"]) == imported
    assert acm.describe_certificate(CertificateArn=imported)["Certificate"]["NotAfter"] == new.not_after


def test_dep7_acm_kill_between_import_and_its_record_orphans_nothing(listener, aws_ca, deploy_db, vault):
    """DEP-7 (ALB/ACM): run A imports the new certificate into ACM and dies before the ARN is
    recorded. The rerun finds that import by its tags (target, fingerprint) instead of importing a
    second one: after it, ACM holds exactly one new certificate, attached to the listener, and
    the task is recorded SUCCEEDED."""
    elb, acm = listener["elb"], listener["acm"]
    new, task = _alb_task(listener, aws_ca, deploy_db, vault, "acm-orphan.example.test")
    before = _arns(acm)
    dying = _Dying(acm, "import_certificate")
    with pytest.raises(_Killed):
        _aws_deploy(deploy_db, vault, task.id, {"acm": dying, "elbv2": elb}, lambda *a: VerifyResult(True, "t"), T)
    assert default_cert(elb, listener["arn"]) == listener["old_arn"]  # nothing attached yet
    (orphan,) = _arns(acm) - before
    with session_scope(deploy_db) as s:
        assert not (s.get(DeploymentTaskRow, task.id).checkpoint or {}).get("new_certificate_arn")
    done = _aws_deploy(deploy_db, vault, task.id, {"acm": acm, "elbv2": elb},
                       lambda *a: VerifyResult(True, "test"), T + LATER)
    assert done.state is DeploymentState.SUCCEEDED, done.details
    assert _arns(acm) - before == {orphan}  # reused, not imported twice
    assert default_cert(elb, listener["arn"]) == orphan
    assert acm.describe_certificate(CertificateArn=orphan)["Certificate"]["NotAfter"] == new.not_after
