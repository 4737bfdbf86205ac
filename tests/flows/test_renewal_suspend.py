"""Waits release the worker: a renewal run of a deployment suspends on its human steps (payment,
manual DNS, the CA's contact) and on a long CA review; its thread returns at once; answering the
form (or the scanner's resume) schedules it, and executing it again the way a runner does (the
re-read flow run, from the top) carries it to the end with one order, one debit, one deployment.

The deployment `renewal/renewal` is registered in the test harness without a work pool; each
run is created from it in state Pending (no runner would pick it) and executed here with
`prefect.flow_engine.run_flow` in a thread, as the in-process launcher and a runner do.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import pytest

from certpilot import runtime as rt
from certpilot.adapters.probe.tls import probe_sync
from certpilot.core.models import OrderState, Status
from certpilot.core.verification import Endpoint
from certpilot.store.repository import Repository
from tests.flows.ov_env import ov_site
from tests.flows.pipeline_env import SITE, CollectingNotifier, site  # noqa: F401 - fixture
from tests.flows.test_pipeline_forms import _zero_quota_site, add_noticed_record, manual_dns_site

pytestmark = [pytest.mark.servers, pytest.mark.flows]


@pytest.fixture
def renewal_deployment(prefect_harness):
    """The `renewal/renewal` deployment (no work pool: nothing polls it), its id."""
    from flows.renewal import renewal

    return renewal.to_deployment(name="renewal", tags=["certpilot"]).apply()


def create_run(deployment_id, certificate_id: str):
    """A run of the deployment, Pending: it has a deployment (it may suspend) and no runner takes it."""
    from prefect import get_client
    from prefect.states import Pending

    with get_client(sync_client=True) as client:
        return client.create_flow_run_from_deployment(deployment_id, parameters={"certificate_id": certificate_id},
                                                      state=Pending(), tags=["certpilot"])


def execute(flow_run_id, timeout: float = 120.0):
    """Execute the flow run as a runner does (the re-read flow run, `run_flow`) in a thread; wait
    for the thread to end; return the run as the API then shows it."""
    from prefect import get_client
    from prefect.exceptions import Pause
    from prefect.flow_engine import run_flow

    from flows.renewal import renewal

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["state"] = run_flow(renewal, flow_run=flow_run, return_type="state")
        except Pause:  # the run suspended: the engine ends, the thread returns
            outcome["paused"] = True

    thread = threading.Thread(target=work, name=f"run-{flow_run_id}", daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the execution still holds its thread"
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id), outcome


def resume(flow_run_id, run_input: dict | None = None) -> str:
    """Answer the form (or resume a review) through the API; the run's state name afterwards."""
    from prefect import get_client
    from prefect.flow_runs import resume_flow_run

    resume_flow_run(flow_run_id, run_input=run_input)
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state.name


def _subjects(notifier, word: str) -> list[str]:
    return [e.subject for e in notifier.events if word in e.subject]


def _served(site_) -> str | None:
    return probe_sync(Endpoint("127.0.0.1", site_.nginx.port, SITE), timeout=3).fingerprint


def test_pay1_nt2_payment_suspends_the_run_and_the_answer_resumes_it(site, renewal_deployment):  # noqa: F811
    """PAY-1/NT-2: the shortfall suspends the renewal run on the payment form (state Suspended,
    its thread returned: no process waits for the human); the owner is told once; the typed
    answer through the API schedules the run; executed again from the top it finds the same
    order, debits the charge once and renews the site end to end."""
    _zero_quota_site(site)
    run = create_run(renewal_deployment, site.cert_id)
    shown, outcome = execute(run.id)
    assert (shown.state.type.value, shown.state.name, outcome) == ("PAUSED", "Suspended", {"paused": True})
    assert shown.name == SITE
    with site.session() as s:
        (order,) = Repository(s).orders_for_certificate(site.cert_id)
        assert order.state is OrderState.AWAITING_PAYMENT and Repository(s).ledger_for_order(order.id) == []

    assert resume(run.id, {"approve": True, "approver": "alice"}) == "Resuming"
    shown, outcome = execute(run.id)
    assert shown.state.type.value == "COMPLETED", shown.state.message
    out = outcome["state"].result()
    with site.session() as s:
        repo = Repository(s)
        assert [o.id for o in repo.orders_for_certificate(site.cert_id)] == [order.id]  # one order
        assert [e.kind.value for e in repo.ledger_for_order(order.id)].count("charge") == 1  # one debit
        assert repo.get_order(order.id).state is OrderState.PAID
        new = repo.certificate_model(out.worked_on)
    assert out.state is Status.ISSUED and _served(site) == new.fingerprint_sha256
    assert _subjects(site.notifier, "payment") == ["certpilot: payment approval needed for www.example.test"]


def test_dv3_nt2_manual_dns_suspends_the_run_and_the_answer_resumes_it(site, bind_server,  # noqa: F811
                                                                       renewal_deployment):
    """DV-3/DV-7/NT-2: the manual DNS record suspends the run on its form (its thread returned);
    the owner is told the record once; after the operator added it and answered, the run
    executed again resumes the same CA order, sees the record served, and the certificate is
    issued, deployed and served."""
    human_dns = manual_dns_site(site, bind_server)
    submitted: list[str] = []
    real_submit = site.issuer.submit
    site.issuer.submit = lambda app: submitted.append(real_submit(app)) or submitted[-1]
    run = create_run(renewal_deployment, site.cert_id)
    shown, outcome = execute(run.id)
    assert (shown.state.name, outcome) == ("Suspended", {"paused": True})

    asyncio.run(add_noticed_record(site, human_dns))
    assert resume(run.id, {"added": True}) == "Resuming"
    shown, outcome = execute(run.id)
    assert shown.state.type.value == "COMPLETED", shown.state.message
    out = outcome["state"].result()
    assert out.state is Status.ISSUED and out.verify.ok
    assert len(submitted) == 1  # the re-executed run resumed the same CA order
    with site.session() as s:
        assert _served(site) == Repository(s).certificate_model(out.worked_on).fingerprint_sha256
    assert _subjects(site.notifier, "DNS") == ["certpilot: manual DNS record needed for www.example.test"]


def test_dv6_ca1_ca2_contact_form_and_review_of_days_suspend_and_resume(tmp_path, renewal_deployment):
    """DV-6: the CA's contact is asked on a form that suspends the run; CA-1: once submitted, the
    review of five days is polled for the services' budget (0.5 s) and then suspends the run
    (no thread holds it: it returned within seconds); CA-2: five days later the CA has issued, a
    resume (the scanner's) schedules the run and, executed again, it collects the certificate
    and ends Completed. One CA order, one debit."""
    from certpilot.store.db import reset_engines, session_scope

    notifier = CollectingNotifier()
    site_ = ov_site(tmp_path, name="ov-suspend", quota=1, notifiers=[notifier])
    cid, db_url, svc, clock = site_.cid, site_.db_url, site_.svc, site_.clock
    submitted: list[str] = []
    ca = svc.issuers["ov-ca"]
    real_submit = ca.submit
    ca.submit = lambda app: submitted.append(real_submit(app)) or submitted[-1]
    with rt.use(svc):
        run = create_run(renewal_deployment, cid)
        shown, _ = execute(run.id)
        assert shown.state.name == "Suspended"  # on the contact form
        assert resume(run.id, {"name": "Hanako Ops", "email": "ops@example.test", "phone": "+81 3 1234 5678"}) \
            == "Resuming"
        started = time.monotonic()
        shown, outcome = execute(run.id)
        assert time.monotonic() - started < 30
        assert (shown.state.name, outcome) == ("Suspended", {"paused": True})  # on the CA's review
        with session_scope(db_url) as s:
            new = Repository(s).children(cid)[0]
            assert new.state is Status.UNDER_REVIEW and new.owner.phone == "+81 3 1234 5678"
        assert shown.state.state_details.pause_key == f"review-{new.id}-1"  # what the scanner resumes (CA-2)

        clock.now += timedelta(days=5, minutes=1)
        assert resume(run.id) == "Resuming"
        shown, outcome = execute(run.id)
    assert shown.state.type.value == "COMPLETED", shown.state.message
    assert outcome["state"].result().state is Status.ISSUED
    with session_scope(db_url) as s:
        repo = Repository(s)
        assert repo.certificate_model(new.id).state is Status.ISSUED
        (order,) = repo.orders_for_certificate(cid)
        quota = [e for e in repo.ledger_for_order(order.id) if e.kind.value == "quota"]
        assert [e.delta for e in quota] == [-1]
    assert len(submitted) == 1
    assert _subjects(notifier, "contact") == ["certpilot: CA verification contact needed for ov.example.test"]
    reset_engines()
