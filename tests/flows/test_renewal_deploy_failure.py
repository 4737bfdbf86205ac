"""A renewal whose deployment fails its own check: rolled back, the old certificate still served
(DEP-7), the owner told by every channel and by an in-product message (DEP-3), and the renewal
run ends Failed (failed work is not Completed)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import update

from certpilot.adapters.probe.tls import probe_sync
from certpilot.core.models import OrderState
from certpilot.core.verification import Endpoint
from certpilot.operations import deployments
from certpilot.store.ports import mark_read, messages
from certpilot.store.repository import Repository
from certpilot.store.tables_deploy import DeploymentTargetRow
from tests.flows.pipeline_env import SITE, site  # noqa: F401 - fixture

pytestmark = [pytest.mark.servers, pytest.mark.flows]


class BrokenChannel:
    """A notification channel that is down (same Protocol as email/webhook)."""

    name = "broken"

    def send(self, event) -> None:
        raise ConnectionError("channel down")


def run_logs(flow_run_id, needle: str, timeout: float = 10.0) -> list:
    """The log records of a flow run, once one contains `needle` (logs reach the API in batches)."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            if any(needle in log.message for log in logs) or time.monotonic() > deadline:
                return logs
            time.sleep(0.2)


def test_dep3_dep7_failed_check_rolls_back_notifies_and_ends_the_run_failed(site):  # noqa: F811
    """DEP-7: the target's check fails after staging → the previous files are restored and the old
    certificate is still what clients see. DEP-3: the failure reaches the configured channel and
    the inbox (`certpilot inbox`), naming certificate, target and what happened. The run ends
    Failed, saying which deployment failed; the order was paid once and is not placed again.
    A channel that is down is logged by certpilot's own logger, in the run's logs (UI). Once the
    target is fixed, a renewal run of the new certificate deploys it (re-entrant: it starts at
    the deployment, nothing is ordered again)."""
    from flows.renewal import renewal

    site.runtime.notifiers.append(BrokenChannel())

    with site.session() as s:
        row = s.get(DeploymentTargetRow, deployments.targets_of(s, site.cert_id)[0].id)
        working = dict(row.config)
        s.execute(update(DeploymentTargetRow).where(DeploymentTargetRow.id == row.id)
                  .values(config={**row.config, "check_argv": ["/bin/false"]}))
    state = renewal(site.cert_id, years=1, return_state=True)
    assert state.is_failed()
    with site.session() as s:
        repo = Repository(s)
        new = sorted(repo.children(site.cert_id), key=lambda c: c.plan_index)[0]
        assert repo.get_order(new.order_id).state is OrderState.PAID
        (task,) = deployments.list_tasks(s, new.id)
        assert task.state.value == "rolled_back"
        assert f"1 of 1 deployment(s) of {new.id} failed" in state.message
        assert "rolled back: the previous certificate is in place again (DEP-7)" in state.message
        inbox = messages(s)
        assert len(inbox) == 1 and inbox[0].kind == "deployment_failed"
        assert new.id in inbox[0].body and "nginx" in inbox[0].subject
        assert mark_read(s, [inbox[0].id]) == 1
    assert probe_sync(Endpoint("127.0.0.1", site.nginx.port, SITE), timeout=3).fingerprint == site.old_fingerprint
    assert [e.kind.value for e in site.notifier.events] == ["deployment_failed"]
    needle = "notification deployment_failed via broken failed: channel down"
    logs = run_logs(state.state_details.flow_run_id, needle)
    assert [(log.name, log.level) for log in logs if needle in log.message] == [
        ("certpilot.adapters.notify.base", 30)]
    with site.session() as s:
        assert messages(s) == []

    # Fixed: the renewal run of the new certificate starts at deployment (issued, not deployed)
    # and ends serving it; nothing is ordered or paid again.
    with site.session() as s:
        s.execute(update(DeploymentTargetRow).where(DeploymentTargetRow.id == row.id).values(config=working))
    again = renewal(new.id)
    assert again.order is None and again.worked_on == new.id and again.verify.ok
    with site.session() as s:
        repo = Repository(s)
        assert [o.id for o in repo.orders_for_certificate(site.cert_id)] == [new.order_id]
        assert [t.state.value for t in deployments.list_tasks(s, new.id)] == ["succeeded"]
    assert probe_sync(Endpoint("127.0.0.1", site.nginx.port, SITE), timeout=3).fingerprint == new.fingerprint_sha256
