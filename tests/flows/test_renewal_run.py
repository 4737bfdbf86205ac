"""One renewal, one flow run: named after the certificate, its stages as task runs in the design
card's order (LC-3), read back from the Prefect API as the operator sees them in the UI."""

from __future__ import annotations

import time

import pytest

from certpilot.core.models import OrderState, Status
from certpilot.store.repository import Repository
from tests.flows.pipeline_env import SITE, site  # noqa: F401 - fixture

pytestmark = [pytest.mark.servers, pytest.mark.flows]

STAGES = ("payment", "csr", "validation", "ca-review", "deploy", "verify")


def flow_run_count() -> int:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.count_flow_runs()


def task_runs_of(flow_run_id, last: str = "verify", timeout: float = 15.0) -> list:
    """The task runs of a flow run, by start time, once `last` is among them (task runs reach the
    API through Prefect's events, a moment after they ran)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                         sort=TaskRunSort.EXPECTED_START_TIME_ASC)
            if any(r.name == last for r in runs) or time.monotonic() > deadline:
                return sorted(runs, key=lambda r: (r.start_time or r.expected_start_time))
            time.sleep(0.2)


def test_lc3_one_flow_run_per_renewal_named_after_the_certificate_with_its_stages_in_order(site):  # noqa: F811
    """LC-3: a renewal is one flow run named after the certificate's common name (no child flow
    runs), whose task runs are the stages in the design card's order: payment, csr, validation,
    ca-review, deploy (one per target), verify — each completed."""
    from prefect import get_client

    from flows.renewal import renewal

    before = flow_run_count()
    state = renewal(site.cert_id, years=1, return_state=True)
    assert state.is_completed(), state.message
    out = state.result()
    assert out.order.state is OrderState.PAID and out.state is Status.ISSUED
    assert out.verify.served == (f"127.0.0.1:{site.nginx.port} (SNI {SITE})",)
    assert flow_run_count() == before + 1  # one run: nothing launched, no subflow

    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    assert run.name == SITE
    runs = task_runs_of(run_id)
    assert [r.name for r in runs if r.name in STAGES] == list(STAGES)
    assert all(r.state_type.value == "COMPLETED" for r in runs)
    with site.session() as s:
        child = sorted(Repository(s).children(site.cert_id), key=lambda c: c.plan_index)[0]
    assert out.worked_on == child.id


def test_lc3_rerun_of_a_finished_renewal_orders_nothing_and_only_proves_it_served(site):  # noqa: F811
    """LC-3/PAY-4/DEP-2: a renewal run again, for the original certificate or for its renewed
    one (issued, deployed, not due), finds the work done: the same order, no new debit, no new
    deployment, and the verify stage proves the site serves the renewed certificate."""
    from flows.renewal import renewal

    first = renewal(site.cert_id, years=1)
    again = renewal(site.cert_id, years=1)
    of_new = renewal(first.worked_on, years=1)
    assert again.order.order_id == first.order.order_id and again.worked_on == first.worked_on
    assert of_new.order is None and of_new.worked_on == first.worked_on
    assert again.verify.served == of_new.verify.served == first.verify.served
    with site.session() as s:
        repo = Repository(s)
        assert len(repo.orders_for_certificate(site.cert_id)) == 1
        assert [e.delta for e in repo.ledger_for_order(first.order.order_id) if e.kind.value == "quota"] == [-1]
        from certpilot.operations import deployments

        assert [t.attempts for t in deployments.list_tasks(s, first.worked_on)] == [1]
