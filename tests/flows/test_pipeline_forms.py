"""The human steps as Prefect forms, resumed through the Prefect API with typed input (NT-2)."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest

from certpilot.core.models import OrderState, Status
from certpilot.store.repository import Repository
from tests.flows.pipeline_env import site  # noqa: F401 - fixture

pytestmark = [pytest.mark.servers, pytest.mark.flows]


class Resumer(threading.Thread):
    """Plays the operator in the UI: waits for the flow run to pause, then answers its form
    through the Prefect API (`resume_flow_run` with `run_input`), once per answer given."""

    def __init__(self, *answers: dict, timeout: float = 60.0):
        super().__init__(daemon=True)
        self.answers, self.timeout = list(answers), timeout
        # Only runs paused after this moment are this test's: earlier tests of the session leave
        # paused runs (and hundreds of runs) in the shared harness, and answering one of those
        # would leave this test's run waiting for ever.
        self.since = datetime.now(UTC) - timedelta(seconds=0.2)
        self.rejected: list[str] = []
        self.resumed: list[str] = []

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        from prefect import get_client

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterStartTime,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        mine = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
                             start_time=FlowRunFilterStartTime(after_=self.since))
        async with get_client() as client:
            while self.answers and loop.time() < deadline:
                paused = [r for r in await client.read_flow_runs(flow_run_filter=mine, limit=50)
                          if r.state and r.state.is_paused() and str(r.id) not in self.resumed[-1:]]
                if not paused:
                    await asyncio.sleep(0.1)
                    continue
                run = paused[0]
                answer = self.answers[0]
                result = await client.resume_flow_run(run.id, run_input=answer)
                if result.status.value != "ACCEPT":
                    self.rejected.append(str(result.details))
                    self.answers.pop(0)
                    continue
                self.answers.pop(0)
                self.resumed.append(str(run.id))
                await asyncio.sleep(0.3)  # let the run leave PAUSED before looking again


def _ledger(site_, order_id):
    with site_.session() as s:
        return Repository(s).ledger_for_order(order_id)


def _zero_quota_site(site_):
    """Spend the site's quota and credits so the next renewal has a shortfall."""
    from certpilot.core.models import CertType, LedgerEntry, LedgerKind, Level, Spec
    from certpilot.store.base import utcnow

    with site_.session() as s:
        repo = Repository(s)
        bal = repo.balances()
        spec = Spec(brand="DigiCert", level=Level.DV, cert_type=CertType.SINGLE)
        repo.append_ledger([
            LedgerEntry(id="led-test-q", kind=LedgerKind.QUOTA, spec_key=spec.key, delta=-bal.quota_for(spec),
                        order_id=None, idempotency_key="test:drain-quota", created_at=utcnow()),
            LedgerEntry(id="led-test-m", kind=LedgerKind.MANAGED, spec_key=None, delta=-bal.managed, order_id=None,
                        idempotency_key="test:drain-managed", created_at=utcnow()),
        ])


def test_pay1_nt2_payment_form_approved_through_api(site):  # noqa: F811
    """PAY-1/NT-2: a shortfall pauses the renewal run on the payment form (in place: this run has
    no deployment to be resumed by); an invalid answer is refused by the server, a typed approval
    resumes it; the charge is debited exactly once and the owner was told once."""
    from flows.renewal import renewal

    _zero_quota_site(site)
    resumer = Resumer({"approve": "perhaps"}, {"approve": True, "approver": "alice"})
    resumer.start()
    out = renewal(site.cert_id, years=1)
    resumer.join(5)
    assert resumer.rejected, "the server must refuse input that does not fit the form"
    assert out.order.state is OrderState.PAID and out.state is Status.ISSUED
    entries = _ledger(site, out.order.order_id)
    assert [e.kind.value for e in entries].count("charge") == 1
    assert [e.subject for e in site.notifier.events if "payment" in e.subject.lower()] == [
        "certpilot: payment approval needed for www.example.test"]  # NT-2, once
    with site.session() as s:
        assert Repository(s).get_order(out.order.order_id).state is OrderState.PAID


def test_pay4_declined_payment_leaves_no_debit_and_the_run_completes(site):  # noqa: F811
    """PAY-4: declining the payment form marks the order declined and debits nothing; the run
    ends Completed (nothing is left to do), saying so."""
    from flows.renewal import renewal

    _zero_quota_site(site)
    resumer = Resumer({"approve": False, "approver": "bob"})
    resumer.start()
    state = renewal(site.cert_id, years=1, return_state=True)
    resumer.join(5)
    assert state.is_completed()
    out = state.result()
    assert out.order.state is OrderState.DECLINED and out.worked_on is None
    assert out.message == f"order {out.order.order_id} declined: nothing was debited (PAY-4)"
    assert _ledger(site, out.order.order_id) == []
    with site.session() as s:
        assert Repository(s).children(site.cert_id) == []


def manual_dns_site(site_, bind_server):
    """No provider writes the zone: the issuer falls back to manual DNS (DV-3), as configured in
    production by the ACME account block. Returns what the operator writes the zone with."""
    from certpilot.adapters.dns.manual import ManualDns
    from certpilot.adapters.dns.rfc2136 import Rfc2136Provider

    site_.issuer.dns_providers = ()
    site_.issuer.manual_dns = ManualDns(bind_server.nameservers)
    return Rfc2136Provider(bind_server.host, bind_server.port, zones=bind_server.zones,
                           keyname=bind_server.tsig_name, secret=bind_server.tsig_secret,
                           algorithm=bind_server.tsig_algorithm)


async def add_noticed_record(site_, human_dns, timeout: float = 60.0) -> None:
    """Play the operator: read the record from the notice the owner got (NT-2), add it at the
    DNS host."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not any("DNS" in e.subject for e in site_.notifier.events) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    notice = next(e for e in site_.notifier.events if "DNS" in e.subject)
    line = notice.body.split(": ", 1)[1]
    fqdn, _ttl, _in, _type, value = line.split(" ", 4)
    human_dns.present(fqdn.rstrip("."), value.strip('"'))


def test_dv3_manual_dns_form_then_record_visible(site, bind_server):  # noqa: F811
    """DV-3/DV-7/NT-2: without write access, the validation stage shows the exact TXT record on
    a form; the operator adds it at their DNS host (here: a TSIG update to BIND) and answers the
    form; the run checks it is visible at the authoritative server, and the certificate is
    issued and deployed."""
    from flows.renewal import renewal

    human_dns = manual_dns_site(site, bind_server)

    class Operator(Resumer):
        async def _run(self):
            await add_noticed_record(site, human_dns, self.timeout)
            await super()._run()

    operator = Operator({"added": True})
    operator.start()
    result = renewal(site.cert_id, years=1)
    operator.join(5)
    assert operator.resumed and result.state is Status.ISSUED and result.verify.ok
    with site.session() as s:
        assert Repository(s).certificate_model(result.worked_on).state is Status.ISSUED
    assert [e.subject for e in site.notifier.events if "DNS" in e.subject] == [
        "certpilot: manual DNS record needed for www.example.test"]  # NT-2, once
