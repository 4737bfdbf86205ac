"""End to end through the Prefect flows with real servers: Pebble (ACME DNS-01 via BIND RFC 2136),
nginx (deployment target), TLS probes (verification). LC-3's three stages in one run."""

from __future__ import annotations

from datetime import timedelta

import pytest

from certpilot import runtime as rt
from certpilot.adapters.probe.tls import probe_sync
from certpilot.core.models import OrderState, Status
from certpilot.core.verification import Endpoint
from certpilot.operations import deployments
from certpilot.store.db import reset_engines
from certpilot.store.repository import Repository
from tests.flows.pipeline_env import SITE, build_site
from tests.flows.plan_env import pebble_90d  # noqa: F401 - fixture

pytestmark = [pytest.mark.servers, pytest.mark.flows]


def served_fingerprint(nginx) -> str | None:
    return probe_sync(Endpoint("127.0.0.1", nginx.port, SITE), timeout=3).fingerprint


@pytest.fixture
def site(tmp_path, pebble_90d, bind_server, nginx_factory, nginx_ca, prefect_harness):  # noqa: F811
    """The served site of `pipeline_env`, its ACME CA a Pebble that signs 90 days (the session's Pebble
    signs five years, which would cover a 2-year plan with one certificate: VA-5)."""
    built = build_site(tmp_path, pebble=pebble_90d, bind_server=bind_server, nginx_factory=nginx_factory,
                       nginx_ca=nginx_ca)
    with rt.use(built.runtime):
        yield built
    reset_engines()


def children(s, cert_id):
    return sorted(Repository(s).children(cert_id), key=lambda c: c.plan_index)


def test_lc3_pl3_pl4_two_year_renewal_end_to_end(site, monkeypatch):
    """LC-3: order+payment → key, CSR, DNS-01 at Pebble through BIND → deploy to nginx → probe.

    A 2-year plan renewed with 20 days left, in one renewal run: certificate 1 is applied for at
    once (no managed fee, PAY-2), certificate 2 stays NOT_ACTIVATED (PL-3) until the scanner
    sees certificate 1 at 30 days (PL-4, the services' clock moved there), then its renewal run
    applies for it, deploys it and proves it served in turn.
    """
    from flows.renewal import renewal

    assert served_fingerprint(site.nginx) == site.old_fingerprint
    out = renewal(site.cert_id, years=2)
    assert out.order.state is OrderState.PAID and out.verify.ok
    with site.session() as s:
        kids = children(s, site.cert_id)
        first, second = kids[0], kids[1]
        # PL-3; VA-5: a publicly trusted plan bought today is cut by the CA/B cap into more
        # certificates (reissues), all waiting their turn behind the first.
        assert [k.state for k in kids] == [Status.ISSUED] + [Status.NOT_ACTIVATED] * (len(kids) - 1)
        # DV-1: the validation method defaults to the original certificate's (set at order time;
        # the issuer then writes the record through the zone's provider, DV-2).
        original = Repository(s).certificate_model(site.cert_id)
        assert {k.validation_method for k in kids} == {original.validation_method}
        # VA-2/VA-5: certificate 1 asked for the old expiry + 365 days; Pebble signs 90 days, and the
        # plan's next certificate is expected 30 days before that real expiry (plan vs issued).
        assert first.planned_not_after == original.not_after + timedelta(days=365)
        assert first.not_after - first.not_before <= timedelta(days=90, seconds=1)
        assert second.not_before == first.not_after - timedelta(days=30)
        tasks = deployments.list_tasks(s, first.id)
        assert [t.state.value for t in tasks] == ["succeeded"]
    assert served_fingerprint(site.nginx) == first.fingerprint_sha256  # VER-1: what clients now see
    # LC-1: the old certificate is untouched.
    with site.session() as s:
        assert Repository(s).certificate_model(site.cert_id).state is Status.ISSUED

    from flows.scan import scan

    monkeypatch.setenv("CERTPILOT_LAUNCH_MODE", "inline")
    early = first.not_after - timedelta(days=31)
    monkeypatch.setattr(site.runtime, "clock", lambda: early)
    scan()
    with site.session() as s:
        assert children(s, site.cert_id)[1].state is Status.NOT_ACTIVATED  # PL-4: not yet
    due = first.not_after - timedelta(days=30)
    monkeypatch.setattr(site.runtime, "clock", lambda: due)
    scan()
    with site.session() as s:
        second = children(s, site.cert_id)[1]
        assert second.state is Status.ISSUED
        assert [t.state.value for t in deployments.list_tasks(s, second.id)] == ["succeeded"]
    assert served_fingerprint(site.nginx) == second.fingerprint_sha256
