"""Retry-After honoured (issue 13): a CA's "rateLimited, Retry-After: 3600" is recorded as
"retry at" on the application; with an injected clock, no request reaches the CA before that
time — not from the renewal's submit stage run again, not from the scanner, which leaves the
application alone until then and resumes it afterwards.

The CA is the embedded private CA (real signing, real store) behind a wrapper that answers the
first order like a rate-limited ACME CA (a TransientError carrying the Retry-After, as the ACME
adapter raises it) and counts every request.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certpilot import runtime as rt
from certpilot.adapters.issuers.private_ca import PrivateCa
from certpilot.core.errors import TransientError
from certpilot.core.models import Level, Origin, Status
from certpilot.core.outcomes import SubmitKind
from certpilot.operations import orders, pipeline, scan
from certpilot.operations.importing import import_certificate
from certpilot.store.ports import SqlPrivateCaStore
from certpilot.store.repository import Repository
from tests.servers.certs import make_ca, make_leaf

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


class RateLimitedOnce:
    """A CA that answers its first order "rateLimited" with a Retry-After, then works; every
    request (submit, advance, poll, fetch) is logged with the clock's time."""

    name = "rate-limited-ca"
    publicly_trusted = False
    paid = False

    def __init__(self, inner: PrivateCa, clock, retry_after: float) -> None:
        self.inner, self.clock, self.retry_after = inner, clock, retry_after
        self.requests: list[tuple[str, datetime]] = []

    def submit(self, application):
        self.requests.append(("submit", self.clock()))
        if len(self.requests) == 1:
            raise TransientError("placing the ACME order: the CA answered rateLimited: too many new orders; "
                                 "retry later", retry_after=self.retry_after)
        return self.inner.submit(application)

    def advance(self, ref, application):
        self.requests.append(("advance", self.clock()))
        return self.inner.advance(ref, application)

    def poll(self, ref):
        self.requests.append(("poll", self.clock()))
        return self.inner.poll(ref)

    def fetch_chain(self, ref):
        self.requests.append(("fetch", self.clock()))
        return self.inner.fetch_chain(ref)


@pytest.fixture
def world(db_url, sessions, vault):
    now = {"t": T0}
    clock = lambda: now["t"]  # noqa: E731 - the injected clock
    ca = RateLimitedOnce(PrivateCa(SqlPrivateCaStore(sessions), vault, clock=clock), clock, 3600)
    svc = rt.local_services(database_url=db_url, vault=vault, issuers={"acme/limited": ca},
                            default_issuer="acme/limited", clock=clock)
    old = make_leaf(make_ca("issue13 retry CA"), ["retry.example.test"], not_before=T0 - timedelta(days=70),
                    not_after=T0 + timedelta(days=20))
    with sessions() as s:
        cid = import_certificate(s, cert_pem=old.cert_pem, key_pem=old.key_pem, chain_pem=b"".join(old.chain_pems),
                                 origin=Origin.OFFICIAL, level=Level.DV, brand="DigiCert", owner="ops@example.test",
                                 now=T0, vault=vault).certificate.id
    child = orders.renew(svc, cid, years=1).certificate_ids[0]  # a free issuer: paid at once
    pipeline.prepare(svc, child)
    return svc, ca, now, child


def test_rate_limited_retry_after_3600_no_request_before_then(world):
    svc, ca, now, child = world
    assert child in scan.decide(svc, at=T0).resume_applications  # pending: the scanner would resume it

    out = pipeline.submit(svc, child)

    assert out.kind is SubmitKind.RETRY_LATER and out.retry_at == T0 + timedelta(seconds=3600)
    assert ca.requests == [("submit", T0)]
    for minutes in (1, 30, 59):  # the renewal run again, and the scanner: nothing reaches the CA
        now["t"] = T0 + timedelta(minutes=minutes)
        assert pipeline.submit(svc, child).kind is SubmitKind.RETRY_LATER
        plan = scan.decide(svc)
        assert child not in plan.resume_applications
        assert any(line.id == child and "waits for the CA until 2026-11-30 10:00Z" in line.next_action
                   for line in plan.lines)
    assert ca.requests == [("submit", T0)]
    with svc.session(readonly=True) as s:
        repo = Repository(s)
        assert repo.certificate_model(child).state is Status.PENDING_APPLICATION
        assert any("retry at 2026-11-30 10:00:00Z" in a.why for a in repo.audit(child))

    now["t"] = T0 + timedelta(seconds=3600)  # the time the CA gave: resumed, and issued
    assert child in scan.decide(svc).resume_applications
    assert pipeline.submit(svc, child).kind is SubmitKind.ISSUED
    assert [what for what, _ in ca.requests] == ["submit", "submit", "advance", "fetch"]
    assert all(at >= T0 + timedelta(seconds=3600) for _, at in ca.requests[1:])


def test_short_retry_after_is_left_to_the_task_retries(world):
    """A Retry-After a worker may wait (≤ 60 s) is not parked: the TransientError goes to the
    task's ordinary retries, with the CA's delay."""
    svc, ca, now, child = world
    ca.retry_after = 30
    with pytest.raises(TransientError) as raised:
        pipeline.submit(svc, child)
    assert raised.value.retry_after == 30
    assert pipeline.submit(svc, child).kind is SubmitKind.ISSUED  # the retry goes to the CA at once
