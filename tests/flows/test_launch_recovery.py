"""The scanner after crashes and failures, on the single-machine default (in-process launches):
work whose claimed run died is relaunched exactly once (no second order, no second debit); a
failing item does not fail the scan; two scans at once start each renewal once; a renewal that
suspends does not hold the scan.

Real parts as in tests/flows/test_launch.py (`tests/flows/launch_env.py`).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from certpilot import runtime as rt
from certpilot.adapters.notify.base import EventKind
from certpilot.core.models import Certificate, CertType, Level, Origin, Status
from certpilot.core.runs import relaunch_key
from certpilot.core.scan import work_key
from certpilot.operations import pipeline, runs
from certpilot.store.repository import Repository
from tests.flows import launch_env
from tests.flows.launch_env import fleet_fixture, flow_runs_of

pytestmark = pytest.mark.flows

renewal_deployment = launch_env.renewal_deployment
in_process = launch_env.in_process
fleet1 = fleet_fixture(1)
fleet3 = fleet_fixture(3)
short3 = fleet_fixture(3, quota=2)


def _crashed_run(deployment_id, certificate_id: str, name: str) -> str:
    """A run of the renewal deployment that died (CRASHED, as Prefect marks a dead process's run)."""
    from prefect import get_client
    from prefect.states import Crashed, Pending

    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(deployment_id, parameters={"certificate_id": certificate_id},
                                                     name=name, state=Pending(), tags=["certpilot"])
        client.set_flow_run_state(run.id, Crashed(message="test: its process was killed"), force=True)
    return str(run.id)


def test_work_whose_claimed_run_crashed_is_relaunched_once_without_a_second_order_or_debit(fleet1, in_process):
    """A renewal run paid its order, claimed the new certificate and died (CRASHED) before
    submitting it: the scan launches exactly one new run keyed after the dead one, which
    submits, issues, deploys and verifies; no second order, no second debit. The next scan
    launches nothing."""
    from flows.scan import scan

    svc = rt.services()
    original, name = fleet1.cert_ids[0], fleet1.names[0]
    step = pipeline.renew(svc, original, years=1)
    new = step.certificate_ids[0]
    dead = _crashed_run(in_process, original, name)
    runs.claim(svc, original, dead)
    runs.claim(svc, new, dead)
    before = fleet1.counts()
    summary = scan()
    assert (summary.renewals, summary.relaunched, summary.launched, summary.completed, summary.errors) == (0, 1, 1, 1, 0)
    mine = flow_runs_of(in_process, names=[name])
    relaunched = [r for r in mine if r.parameters["certificate_id"] == new]
    assert len(relaunched) == 1 and relaunched[0].state.type.value == "COMPLETED"
    assert relaunched[0].idempotency_key == relaunch_key(work_key(new, step.order_id), dead)
    assert fleet1.counts() == before  # the order and its debit exactly once
    with fleet1.session() as s:
        assert Repository(s).certificate_model(new).state is Status.ISSUED
    assert runs.claims(svc, [new])[new].flow_run_id == str(relaunched[0].id)
    again = scan()
    assert (again.relaunched, again.launched) == (0, 0)
    assert len(flow_runs_of(in_process, names=[name])) == 2  # the dead one and its one relaunch


def _under_review_without_application(fleet) -> str:
    """A certificate stored UNDER_REVIEW with no application the CA knows: polling it fails."""
    now = datetime.now(UTC)
    cert = Certificate(id="crt-broken-review", common_name="broken.example.test", names=["broken.example.test"],
                       cert_type=CertType.SINGLE, origin=Origin.OFFICIAL, level=Level.DV, brand=launch_env.BRAND,
                       not_before=None, not_after=None, state=Status.UNDER_REVIEW,
                       owner=None, key_held=True)
    with fleet.session() as s:
        Repository(s).add_certificate(cert, now=now - timedelta(days=1))
    return cert.id


def test_a_failing_item_is_recorded_and_told_once_and_the_rest_go_on(fleet3, in_process):
    """One item of the scan fails (a review that cannot be polled): the scan ends Completed, the
    failure is in its summary, the owner is told once a day, and the 3 due renewals all complete."""
    from flows.scan import scan

    broken = _under_review_without_application(fleet3)
    state = scan(return_state=True)
    assert state.is_completed()
    summary = state.result()
    assert (summary.launched, summary.completed, summary.errors) == (3, 3, 1)
    assert [(p.certificate_id, p.action) for p in summary.problems] == [(broken, "poll its CA review")]
    told = [e for e in fleet3.notifier.events if e.certificate_id == broken]
    assert [e.subject for e in told] == ["certpilot: the scan could not poll its CA review for broken.example.test"]
    assert told[0].kind is EventKind.ACTION_NEEDED
    again = scan()
    assert again.errors == 1 and len([e for e in fleet3.notifier.events if e.certificate_id == broken]) == 1


def test_two_scans_at_once_start_each_renewal_once(fleet3, in_process):
    """Idempotency across scanners: two scans at the same time over 3 due certificates leave one
    run per certificate, one order each."""
    from flows.scan import scan

    results = []
    barrier = threading.Barrier(2)

    def one():
        barrier.wait()
        results.append(scan())

    threads = [threading.Thread(target=one) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(240)
    assert len(results) == 2
    assert sum(r.completed for r in results) == 3
    runs_ = flow_runs_of(in_process, names=fleet3.names)
    assert sorted(r.parameters["certificate_id"] for r in runs_) == sorted(fleet3.cert_ids)
    assert {r.state.type.value for r in runs_} == {"COMPLETED"}
    assert fleet3.counts()["orders"] == 3


def test_a_suspended_renewal_does_not_hold_the_scan(short3, in_process):
    """Quota for 2 of 3: the third renewal suspends on its payment form (its thread released) and
    the scan returns with 2 completed and 1 suspended; the suspended run waits for its answer."""
    from flows.scan import scan

    summary = scan()
    assert (summary.launched, summary.completed, summary.suspended, summary.errors) == (3, 2, 1, 0)
    states = sorted(r.state.name for r in flow_runs_of(in_process, names=short3.names))
    assert states == ["Completed", "Completed", "Suspended"]


def test_ca2_scan_resumes_a_run_suspended_on_a_review_the_ca_answered(fleet1, in_process):
    """CA-2: a review longer than the run's poll budget suspends the renewal run (its thread
    released; the scan returns); while the CA reviews, the next scan polls it and leaves the run
    alone; once the CA issued, the next scan resumes that run (Scheduled, for the runner that
    serves the deployment) instead of launching another; executed again, it deploys."""
    import time

    from prefect import get_client
    from prefect.flow_engine import run_flow

    from certpilot.adapters.issuers.private_ca import PrivateCaPolicy
    from flows.renewal import renewal
    from flows.scan import scan

    svc = rt.services()
    svc.poll_seconds = 0.3
    # The review outlasts two whole scans (each also probes the fleet and publishes the inventory).
    svc.issuers["private-ca"].policy = PrivateCaPolicy(review_delay=timedelta(seconds=8))
    first = scan()
    assert (first.launched, first.suspended) == (1, 1)
    (run,) = flow_runs_of(in_process, names=fleet1.names)
    assert (run.state.name, run.state.state_details.pause_key.startswith("review-")) == ("Suspended", True)
    waiting = scan()
    assert (waiting.reviews, waiting.issued, waiting.resumed, waiting.launched) == (1, 0, 0, 0)
    time.sleep(8.5)
    answered = scan()
    assert (answered.reviews, answered.issued, answered.resumed, answered.launched) == (1, 1, 1, 0)
    with get_client(sync_client=True) as client:
        resumed = client.read_flow_run(run.id)
    assert resumed.state.type.value == "SCHEDULED"
    assert run_flow(renewal, flow_run=resumed, return_type="state").is_completed()  # as the runner would
    assert len(flow_runs_of(in_process, names=fleet1.names)) == 1
    with fleet1.session() as s:
        (new,) = [c for c in Repository(s).children(fleet1.cert_ids[0]) if c.plan_index == 0]
    assert new.state is Status.ISSUED
    after = scan()
    assert (after.reviews, after.launched, after.resumed) == (0, 0, 0)
