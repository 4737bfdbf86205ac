"""The scanner's view of unfinished work on SQLite and PostgreSQL: pending applications, issued
certificates whose deployment is unfinished, each with the claim of the run that worked on it —
what the scan relaunches when that run is gone."""

from __future__ import annotations

from scan_inventory import DAY, NOW, add_plan, certificate
from sqlalchemy import update

from certpilot import runtime
from certpilot.core.deployment import DeploymentState, TargetKind
from certpilot.core.models import Status
from certpilot.core.runs import WorkClaim
from certpilot.core.scan import InFlight, WorkStage, work_key
from certpilot.operations import runs
from certpilot.operations import scan as ops
from certpilot.operations.deployments import add_target, plan_deployments
from certpilot.store import run_queries
from certpilot.store.db import session_scope
from certpilot.store.repository import Repository
from certpilot.store.tables import CertificateRow
from certpilot.store.tables_deploy import DeploymentTargetRow, DeploymentTaskRow

CERTS = CertificateRow.__table__

RUN = "0b5b0a57-0000-4000-8000-0000000000aa"


def _plan_with_target(url: str, *, c1_state: Status = Status.ISSUED) -> tuple[str, str, str]:
    """add_plan's original (holding a files target), certificate 1 in `c1_state`, certificate 2 not activated."""
    with session_scope(url) as s:
        repo = Repository(s)
        orig, c1, c2 = add_plan(repo, 1, left=20 * DAY)
        add_target(s, orig, TargetKind.FILES, config={"directory": "/tmp/never-written"}, now=NOW)
        if c1_state is not Status.ISSUED:
            _set_state(s, c1, c1_state)
    return orig, c1, c2


def _set_state(session, certificate_id: str, state: Status) -> None:
    """Put a certificate in `state` directly (the scan only reads states; LC-5 is tested elsewhere)."""
    session.execute(update(CERTS).where(CERTS.c.id == certificate_id).values(state=state.value))


def _unfinished(url: str, issued_now=()) -> list[str]:
    with session_scope(url, readonly=True) as s:
        return sorted(r[0] for r in run_queries.unfinished_deployments(s, issued_now))


def test_issued_claimed_not_planned_while_the_parent_holds_a_target_is_unfinished(store_url):
    orig, c1, _ = _plan_with_target(store_url)
    svc = runtime.local_services(database_url=store_url, clock=lambda: NOW)
    assert _unfinished(store_url) == []                     # never claimed: not in flight
    assert _unfinished(store_url, issued_now=[c1]) == [c1]  # just issued by this scan's review poll
    runs.claim(svc, c1, RUN)
    runs.claim(svc, orig, RUN)                              # the original holds nothing to deploy
    assert _unfinished(store_url) == [c1]


def test_open_deployment_tasks_are_unfinished_until_final(store_url):
    _, c1, _ = _plan_with_target(store_url)
    with session_scope(store_url) as s:
        tasks = plan_deployments(s, c1, now=NOW)
    assert len(tasks) == 1
    assert _unfinished(store_url) == [c1]                   # a pending task, claimed or not
    for state, unfinished in ((DeploymentState.RUNNING, [c1]), (DeploymentState.SUCCEEDED, []),
                              (DeploymentState.ROLLED_BACK, [])):  # a failure is told, not retried hourly
        with session_scope(store_url) as s:
            s.execute(update(DeploymentTaskRow).values(state=state.value))
        assert _unfinished(store_url, issued_now=[c1]) == unfinished


def test_a_later_certificate_of_the_plan_finds_the_target_on_its_predecessor(store_url):
    """DEP-1: a deployment moves the target to the certificate deployed; certificate 2 then finds
    it on certificate 1 (an earlier certificate of its order), not on the parent."""
    orig, c1, c2 = _plan_with_target(store_url)
    svc = runtime.local_services(database_url=store_url, clock=lambda: NOW)
    with session_scope(store_url) as s:
        s.execute(update(DeploymentTargetRow).values(certificate_id=c1))
        _set_state(s, c2, Status.ISSUED)
        plan_deployments(s, c1, now=NOW)
        s.execute(update(DeploymentTaskRow).values(state=DeploymentState.SUCCEEDED.value))
    runs.claim(svc, c2, RUN)
    runs.claim(svc, c1, RUN)
    assert _unfinished(store_url) == [c2]


def test_pending_work_and_the_claims_it_carries(store_url):
    """Pending applications come back with their claim; certificate 1 never claimed itself
    carries the claim on the certificate its order renews (where its renewal run started); a
    later certificate of the plan does not (that claim is a year old)."""
    orig, c1, c2 = _plan_with_target(store_url, c1_state=Status.PENDING_APPLICATION)
    with session_scope(store_url) as s:
        _set_state(s, c2, Status.PENDING_APPLICATION)
        Repository(s).add_certificate(certificate("tmp", state=Status.PENDING_APPLICATION), now=NOW)
        s.execute(update(CERTS).where(CERTS.c.id == "tmp").values(temporary=True))
    svc = runtime.local_services(database_url=store_url, clock=lambda: NOW)
    runs.claim(svc, orig, RUN)
    work = ops.unfinished_work(svc, pending=[c1, c2, "tmp", orig])
    claim = WorkClaim(orig, RUN, NOW)
    assert sorted(work, key=lambda w: w.certificate_id) == [
        InFlight(c1, f"{c1}.example.test", WorkStage.APPLICATION, work_key(c1, "p1-order"), claim),
        InFlight(c2, f"{c2}.example.test", WorkStage.APPLICATION, work_key(c2, "p1-order"), None),
    ]
    runs.claim(svc, c2, RUN)
    assert {w.certificate_id: w.claim for w in ops.unfinished_work(svc, pending=[c2])} == {
        c2: WorkClaim(c2, RUN, NOW)}
