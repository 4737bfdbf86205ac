"""The coverage term is the plan's contract, on ISSUED certificates, through the flows (VA-1, VA-2,
VA-5, PL-4, PL-6): each certificate's window is computed from its predecessor's real expiry and
asked of the embedded private CA, which signs it to the second; a CA that signs less than planned
(90 days) gets reissues until the paid term is covered, at no extra quota or credit."""

from __future__ import annotations

from datetime import timedelta

import pytest

from certpilot import runtime as rt
from certpilot.core.models import LedgerKind, Status
from tests.flows.plan_env import SPEC, issued, plan_site

pytestmark = [pytest.mark.flows]

DAY = timedelta(days=1)


def run_plan_to_the_end(site, *, through_flows: int = 2, limit: int = 20) -> None:
    """Move the clock to each managed start (the last issued certificate at 30 days, PL-4) and start
    the next certificate, until no certificate of the plan waits: the first `through_flows` times
    through the scan flow (it starts the certificate and its renewal run issues it, inline); then,
    to keep the test fast, through the same doors the scan's and the run's tasks call (the scan's
    decision and managed start, the csr and validation stages)."""
    from certpilot.operations import pipeline
    from certpilot.operations import scan as scan_ops
    from flows.scan import scan

    for n in range(limit):
        certs = site.plan()
        if not any(c.state is Status.NOT_ACTIVATED for c in certs):
            return
        site.clock.now = issued(certs)[-1].not_after - 30 * DAY
        if n < through_flows:
            scan()
            continue
        (start,) = scan_ops.decide(site.svc).managed_starts
        assert scan_ops.start_managed(site.svc, start).kind.value == "started"
        pipeline.prepare(site.svc, start.certificate_id)
        assert pipeline.submit(site.svc, start.certificate_id).kind.value == "issued"
    raise AssertionError("the plan did not finish")


def test_va5_va2_two_year_plan_whose_ca_signs_90_days_still_covers_its_term(tmp_path, prefect_harness, monkeypatch):
    """VA-5: a 2-year renewal (20 days left) paid for the term old expiry + 2 × 365 days; the CA signs
    at most 90 days. Every certificate is planned from its predecessor's REAL expiry and started at
    its managed start (PL-4), so the issued certificates follow each other with a 30-day overlap and
    the last one ends exactly at the end of the term. VA-2: certificate 1 asks for old expiry + 365 d;
    the CA's cut is recorded as plan vs issued. Quota 2 and one managed credit are all it costs."""
    from flows.renewal import renewal

    monkeypatch.setenv("CERTPILOT_LAUNCH_MODE", "inline")
    site = plan_site(tmp_path, max_validity_days=90)
    with site.session() as s:
        from certpilot.store.repository import Repository

        old = Repository(s).certificate_model(site.cid)
    term_end = old.not_after + 2 * 365 * DAY
    before = site.balances()
    with rt.use(site.svc):
        out = renewal(site.cid, years=2)
        assert out.state is Status.ISSUED
        first = site.plan()[0]
        assert (first.planned_not_before, first.planned_not_after) == (site.clock.now, old.not_after + 365 * DAY)  # VA-2
        assert (first.not_before, first.not_after) == (site.clock.now, site.clock.now + 90 * DAY)  # the CA's cut
        run_plan_to_the_end(site)
    certs = site.plan()
    done = issued(certs)
    assert [c.state for c in certs] == [Status.ISSUED] * len(certs)
    assert done[-1].not_after == term_end  # the whole term, to the second
    for prev, nxt in zip(done, done[1:], strict=False):
        assert nxt.not_before == prev.not_after - 30 * DAY  # PL-4: started with 30 days left, no gap
    for c in done:  # the CA signed exactly what was asked, within its 90 days
        assert c.not_before == c.planned_not_before
        assert c.not_after == min(c.planned_not_after, c.planned_not_before + 90 * DAY)
    # 70 days past the old expiry, then 60 more per certificate, each cut at its year's end (A + 365 d):
    # 6 certificates to the end of year 1, 7 more to the end of year 2.
    assert len(done) == 13
    after = site.balances()
    assert before.quota_for(SPEC) - after.quota_for(SPEC) == 2 and before.managed - after.managed == 1
    with site.session() as s:
        from certpilot.store.repository import Repository

        order = Repository(s).get_order(done[0].order_id)
        assert order.coverage_not_after == term_end
        assert not [e for e in Repository(s).ledger_for_order(order.id) if e.kind is LedgerKind.CHARGE]
    # `certpilot show` says what was planned and what was issued (plan vs issued), and the term.
    shown = show_json(site, done[0].id, monkeypatch)
    assert shown["coverage_not_after"] == term_end.isoformat().replace("+00:00", "Z")
    pvi = shown["plan_vs_issued"]
    assert pvi["exact"] is False and pvi["short_seconds"] == int((old.not_after + 365 * DAY - (done[0].not_before + 90 * DAY)).total_seconds())
    assert "the plan's next certificate covers the rest of the term (VA-5)" in pvi["note"]


def show_json(site, cert_id: str, monkeypatch) -> dict:
    """`certpilot show ID --json` in-process against the site's store."""
    import json

    from certpilot.cli import main
    from certpilot.settings import get_settings

    monkeypatch.setenv("CERTPILOT_DATABASE_URL", site.db_url)
    get_settings.cache_clear()
    try:
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main(["show", cert_id, "--json"]) == 0
        return json.loads(buf.getvalue())
    finally:
        get_settings.cache_clear()
