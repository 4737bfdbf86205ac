"""PL-7 on issued plans, through the flows (the `cancel` flow, the scan and the renewal runs it
launches), on the embedded private CA with a clock the test moves: cancelling a middle certificate
of a 3-year plan shortens the plan at its end (it and the later ones cancelled), gives back what the
cancelled years cost (official: quota and managed credit; private CA: the managed credit), shortens
the coverage term, and the rest keeps working: the certificate the plan now ends with is renewed by
automatic renewal from the restored balance."""

from __future__ import annotations

from datetime import timedelta

import pytest

from certpilot import runtime as rt
from certpilot.core.models import LedgerKind, Origin, Status
from certpilot.store.repository import Repository
from tests.flows.plan_env import SPEC, plan_site

pytestmark = [pytest.mark.flows]

DAY = timedelta(days=1)


@pytest.mark.parametrize("origin", [Origin.OFFICIAL, Origin.PRIVATE_CA])
def test_pl7_cancel_of_a_middle_certificate_keeps_the_rest_of_the_plan_working(origin, tmp_path, prefect_harness,
                                                                               monkeypatch):
    """PL-7/VA-5/EL-4: a 3-year plan, certificate 1 issued; cancelling the year-2 certificate through
    the `cancel` flow cancels it and year 3 (never a hole), restores per cancelled year one quota and
    one managed credit (a private-CA plan: the credit only, its CA sells no quota), the term ends with
    certificate 1's year, and the result says so. Thirty days before certificate 1 ends, the scan
    renews it by itself (auto-renew) from the restored balance: no charge."""
    from flows.admin import cancel
    from flows.renewal import renewal
    from flows.scan import scan

    monkeypatch.setenv("CERTPILOT_LAUNCH_MODE", "inline")
    site = plan_site(tmp_path, name=f"cancel-{origin.value}", origin=origin)
    with rt.use(site.svc):
        assert renewal(site.cid, years=3).state is Status.ISSUED
        certs = site.plan()
        first = certs[0]
        with site.session() as s:
            order = Repository(s).get_order(first.order_id)
        reissues = {p.index for p in order.planned if p.reissue}
        year2 = next(c for c in certs[1:] if c.plan_index not in reissues)
        before = site.balances()
        out = cancel(year2.id)
        after = site.balances()
    assert [c.state for c in site.plan()] == [Status.ISSUED] + [Status.CANCELLED] * (len(certs) - 1)
    quota_back = 0 if origin is Origin.PRIVATE_CA else 2
    assert (after.quota_for(SPEC) - before.quota_for(SPEC), after.managed - before.managed) == (quota_back, 2)
    assert out.coverage_not_after == first.not_after  # the term is certificate 1's year now
    assert out.plan_after.startswith(f"the plan now ends with {first.id}")
    assert "quota and managed credit came back instead of their certificates starting (PL-7)" in out.plan_after

    site.clock.now = first.not_after - 30 * DAY
    with rt.use(site.svc):
        scan()
    with site.session() as s:
        repo = Repository(s)
        (renewed,) = repo.orders_for_certificate(first.id)
        new = [c for c in repo.children(first.id) if c.state is Status.ISSUED]
        assert not [e for e in repo.ledger_for_order(renewed.id) if e.kind is LedgerKind.CHARGE]
    assert len(new) == 1 and new[0].not_before == site.clock.now
