"""When automatic renewal starts (PL-1, PAY-2), through the scan flow and the renewal runs it
launches, on the embedded private CA with a clock the test moves: by default at 30 days left, so
no managed-service fee is paid; earlier only by the certificate's own policy, which pays it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from certpilot import runtime as rt
from certpilot.core.models import LedgerKind, Status
from certpilot.store.repository import Repository
from tests.flows.plan_env import plan_site

pytestmark = [pytest.mark.flows]

DAY = timedelta(days=1)


def renewal_orders(site):
    with site.session() as s:
        return Repository(s).orders_for_certificate(site.cid)


def live(site) -> list:
    """The plan's certificates that were not cancelled (the CA/B cap's reissues the plan foresaw are
    not needed once the private CA signed the whole year: cancelled, VA-5)."""
    return [c for c in site.plan() if c.state is not Status.CANCELLED]


def managed_used(site, order_id: str) -> int:
    with site.session() as s:
        return -sum(e.delta for e in Repository(s).ledger_for_order(order_id) if e.kind is LedgerKind.MANAGED
                    and e.delta < 0)


def test_pl1_pay2_automatic_renewal_waits_for_30_days_and_pays_no_fee(tmp_path, prefect_harness, monkeypatch):
    """PAY-2 avoided by default: at 45 days left the scan renews nothing (the certificate is expiring
    soon, LC-4, but its start point is 30 days); at 30 days it launches the renewal, whose order has
    no managed-service fee and whose certificate is issued at once (PL-1), valid old expiry + 365 d
    (VA-2) to the second."""
    from flows.scan import scan

    monkeypatch.setenv("CERTPILOT_LAUNCH_MODE", "inline")
    site = plan_site(tmp_path, name="fee", days_left=45)
    with site.session() as s:
        old = Repository(s).certificate_model(site.cid)
    with rt.use(site.svc):
        scan()
        assert renewal_orders(site) == []
        site.clock.now = old.not_after - 30 * DAY
        scan()
    (order,) = renewal_orders(site)
    assert order.managed_fee is False and order.managed_services == 0 and managed_used(site, order.id) == 0
    (new,) = live(site)
    assert new.state is Status.ISSUED
    assert (new.not_before, new.not_after) == (old.not_after - 30 * DAY, old.not_after + 365 * DAY)


def test_pl1_pay2_an_earlier_start_is_the_certificates_own_policy_and_pays_the_fee(tmp_path, prefect_harness,
                                                                                monkeypatch):
    """PAY-2 by choice: with the `policy` flow's start_days=45 (the UI; `certpilot policy ID --start-days
    45` on the CLI) the scan renews at 45 days left; the order
    carries the managed-service fee (one credit), and certificate 1 starts by itself at 30 days
    (PL-4), issued valid old expiry + 365 d."""
    from flows.scan import scan

    monkeypatch.setenv("CERTPILOT_LAUNCH_MODE", "inline")
    site = plan_site(tmp_path, name="early", days_left=45)
    with site.session() as s:
        old = Repository(s).certificate_model(site.cid)
    with rt.use(site.svc):
        from flows.admin import policy

        assert policy(site.cid, start_days=45).pays_fee  # the `policy` deployment's form (the UI)
        scan()
        (order,) = renewal_orders(site)
        assert order.managed_fee is True and managed_used(site, order.id) == 1
        assert live(site)[0].state is Status.PENDING_APPLICATION  # waits for its managed start
        site.clock.now = old.not_after - 30 * DAY
        scan()
    (new,) = live(site)
    assert new.state is Status.ISSUED
    assert (new.not_before, new.not_after) == (old.not_after - 30 * DAY, old.not_after + 365 * DAY)
