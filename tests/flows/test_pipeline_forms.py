"""The human steps as Prefect forms, resumed through the Prefect API with typed input (NT-2)."""

from __future__ import annotations

import asyncio
import threading

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
        self.rejected: list[str] = []
        self.resumed: list[str] = []

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        from prefect import get_client

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        async with get_client() as client:
            while self.answers and loop.time() < deadline:
                paused = [r for r in await client.read_flow_runs(limit=200)
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
    """PAY-1/NT-2: a shortfall pauses `renew` on the payment form; an invalid answer is refused
    by the server, a typed approval resumes it; the charge is debited exactly once."""
    from flows.renew import renew

    _zero_quota_site(site)
    resumer = Resumer({"approve": "perhaps"}, {"approve": True, "approver": "alice"})
    resumer.start()
    out = renew(site.cert_id, years=1, apply_now=False)
    resumer.join(5)
    assert resumer.rejected, "the server must refuse input that does not fit the form"
    assert out.state is OrderState.PAID
    entries = _ledger(site, out.order_id)
    assert [e.kind.value for e in entries].count("charge") == 1
    assert any("payment" in (e.subject or "").lower() for e in site.notifier.events)  # NT-2
    with site.session() as s:
        assert Repository(s).get_order(out.order_id).state is OrderState.PAID


def test_pay4_declined_payment_leaves_no_debit(site):  # noqa: F811
    """PAY-4: declining the payment form marks the order declined and debits nothing."""
    from flows.renew import renew

    _zero_quota_site(site)
    resumer = Resumer({"approve": False, "approver": "bob"})
    resumer.start()
    out = renew(site.cert_id, years=1, apply_now=False)
    resumer.join(5)
    assert out.state is OrderState.DECLINED
    assert _ledger(site, out.order_id) == []
    with site.session() as s:
        assert Repository(s).children(site.cert_id) == []


def test_dv3_manual_dns_form_then_record_visible(site, bind_server):  # noqa: F811
    """DV-3/DV-7/NT-2: without write access, `apply` shows the exact TXT record on a form; the
    operator adds it at their DNS host (here: a TSIG update to BIND) and answers the form; the
    flow checks it is visible at the authoritative server and the certificate is issued."""
    from certpilot.adapters.dns.manual import ManualDns
    from certpilot.adapters.dns.rfc2136 import Rfc2136Provider
    from flows.apply import apply
    from flows.renew import renew

    human_dns = Rfc2136Provider(bind_server.host, bind_server.port, zones=bind_server.zones,
                                keyname=bind_server.tsig_name, secret=bind_server.tsig_secret,
                                algorithm=bind_server.tsig_algorithm)
    # No provider writes the zone: the issuer falls back to manual DNS (DV-3), as configured in
    # production by the ACME account block.
    site.issuer.dns_providers = ()
    site.issuer.manual_dns = ManualDns(bind_server.nameservers)
    out = renew(site.cert_id, years=1, apply_now=False)
    first = out.certificate_ids[0]

    class Operator(Resumer):
        async def _run(self):
            # Read the record from the notice the owner got (NT-2), add it, then answer the form.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.timeout
            while not any("DNS" in e.subject for e in site.notifier.events) and loop.time() < deadline:
                await asyncio.sleep(0.05)
            notice = next(e for e in site.notifier.events if "DNS" in e.subject)
            line = notice.body.split(": ", 1)[1]
            fqdn, _ttl, _in, _type, value = line.split(" ", 4)
            human_dns.present(fqdn.rstrip("."), value.strip('"'))
            await super()._run()

    operator = Operator({"added": True})
    operator.start()
    result = apply(first, launch_mode="none")
    operator.join(5)
    assert operator.resumed and result.state is Status.ISSUED
    with site.session() as s:
        assert Repository(s).certificate_model(first).state is Status.ISSUED
