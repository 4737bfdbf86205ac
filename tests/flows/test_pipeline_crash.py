"""Re-entrancy: the pipeline killed after each stage boundary, then run again, ends with one CA
order, one ledger debit per item and one deployment per target (PL-8's spirit for every stage;
PAY-4, DEP-2: a rerun continues, it never starts over)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from certpilot import runtime as rt
from certpilot.adapters.probe.tls import probe_sync
from certpilot.core.models import Status
from certpilot.core.verification import Endpoint
from certpilot.operations import applications, deployments, orders
from certpilot.store.repository import Repository
from tests.flows.pipeline_env import SITE, site  # noqa: F401 - fixture
from tests.flows.test_pipeline_forms import Resumer, _zero_quota_site

pytestmark = [pytest.mark.servers, pytest.mark.flows]


class Crash(BaseException):
    """The process dies here: not an Exception, so nothing on the way catches it."""


def crash_once(monkeypatch, owner, name: str, *, after: bool = False):
    """Make `owner.name` kill the run the first time it is called (before or after it runs)."""
    original = getattr(owner, name)
    state = {"armed": True}

    def wrapper(*args, **kwargs):
        if state["armed"] and not after:
            state["armed"] = False
            raise Crash(name)
        result = original(*args, **kwargs)
        if state["armed"]:
            state["armed"] = False
            raise Crash(name)
        return result

    monkeypatch.setattr(owner, name, wrapper)


def _target_class(site_):
    from certpilot.adapters.deploy.nginx import PemFilesTarget

    return PemFilesTarget


POINTS = {
    # stage 1
    "after-order": lambda mp, s: crash_once(mp, s.runtime, "notify"),  # the shortfall notice (order recorded, unpaid)
    "after-payment": lambda mp, s: crash_once(mp, applications, "create_key_and_csr"),
    # stage 2
    "after-key": lambda mp, s: crash_once(mp, applications, "submit"),
    "after-ca-order": lambda mp, s: crash_once(mp, s.issuer.dns_providers[0], "present"),
    "after-challenge-answered": lambda mp, s: crash_once(mp, s.issuer, "_finalize"),
    "after-issue": lambda mp, s: crash_once(mp, deployments, "plan_deployments"),
    # stage 3
    "after-deploy-commit": lambda mp, s: crash_once(mp, _target_class(s), "reload"),
    "after-verify": lambda mp, s: crash_once(mp, _target_class(s), "finalize"),
}


@pytest.mark.parametrize("point", list(POINTS))
def test_lc3_crash_after_each_stage_boundary_then_rerun(site, monkeypatch, point):  # noqa: F811
    """LC-3, PAY-4, DEP-2: kill the `renewal` run at `point`, run it again: it completes, and the
    store shows one CA order, one debit per ledger item and one deployment per target."""
    from flows.renewal import renewal

    submitted: list[str] = []
    real_submit = site.issuer.submit
    monkeypatch.setattr(site.issuer, "submit", lambda app: submitted.append(real_submit(app)) or submitted[-1])
    if point == "after-order":
        _zero_quota_site(site)
    POINTS[point](monkeypatch, site)
    with pytest.raises(Crash):
        renewal(site.cert_id, years=1)
    if point in ("after-deploy-commit", "after-verify"):
        # The killed deployment holds its lease; a rerun after it lapses takes the task over.
        later = site.runtime.clock() + timedelta(minutes=20)
        monkeypatch.setattr(site.runtime, "clock", lambda: later)
    resumer = Resumer({"approve": True, "approver": "ops"}) if point == "after-order" else None
    if resumer:
        resumer.start()  # the rerun finds the unpaid order again and asks for the payment
    out = renewal(site.cert_id, years=1)
    if resumer:
        resumer.join(5)

    with site.session() as s:
        repo = Repository(s)
        child, *reissues = sorted(repo.children(site.cert_id), key=lambda c: c.plan_index)
        assert child.state is Status.ISSUED
        # VA-5: the session's Pebble signs five years, which covers the term: the reissues the plan
        # foresaw are not needed (cancelled; a reissue cost nothing, so nothing is restored).
        assert all(r.state is Status.CANCELLED for r in reissues)
        assert len(set(submitted)) == len(submitted) == 1  # one CA order
        app = applications.application_state(s, child.id)
        assert app["order_ref"] == submitted[0]
        assert out.worked_on == child.id and out.verify.ok
        entries = repo.ledger_for_order(out.order.order_id)
        keys = [e.idempotency_key for e in entries]
        assert len(keys) == len(set(keys))
        consumed = sum(-e.delta for e in entries if e.kind.value == "quota" and e.delta < 0)
        assert consumed == 1  # one certificate's quota, once
        tasks = deployments.list_tasks(s, child.id)
        assert [t.state.value for t in tasks] == ["succeeded"]  # one deployment per target
        fp = child.fingerprint_sha256
    assert probe_sync(Endpoint("127.0.0.1", site.nginx.port, SITE), timeout=3).fingerprint == fp
    assert orders  # the operations module was exercised through the flow
    assert rt.services() is site.runtime
