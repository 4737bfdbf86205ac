"""Certificate events: the renewal stages emit `certpilot.certificate.issued` (and `renewed` for a
successor) through the services' event sink (`Services.extra["events"]`, the EventSink Protocol
whose real implementation sends Prefect events: tests/flows/test_fleet_drift.py checks those on a
Prefect server); notices are emitted as events too."""

from __future__ import annotations

import pytest

from certpilot.adapters.events import EventSink
from certpilot.core.models import Contact, Level
from certpilot.core.outcomes import SubmitKind
from certpilot.operations import notices, orders, pipeline
from tests.integration.orders.conftest import at


class Recorded:
    """An EventSink that keeps (what, certificate id, payload)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict]] = []

    def emit(self, what, *, certificate_id, common_name, payload) -> None:
        self.events.append((what, certificate_id, payload))


@pytest.fixture
def svc(store):
    from certpilot.runtime import local_services

    sink = Recorded()
    assert isinstance(sink, EventSink)
    return local_services(database_url=store.url, clock=lambda: at("2026-03-20"), extra={"events": sink})


def test_events_renewal_issued_and_renewed_then_expiry_notice_event(store, svc):
    """A renewal applied with the embedded private CA emits `issued` and `renewed` for the successor
    (its parent named); an NT-1 notice is emitted as `expiring`."""
    old = store.import_cert(["ev.example.com"], "2025-04-10", "2026-04-10")
    r = orders.renew(svc, old, years=1, approve_payment=True, actor="test")
    new = r.certificate_ids[0]  # the first certificate of the plan (later ones wait, PL-3)
    pipeline.prepare(svc, new, actor="test")
    assert pipeline.submit(svc, new, actor="test").kind is SubmitKind.ISSUED
    sink = svc.extra["events"]
    assert [(w, c, p["parent_id"]) for w, c, p in sink.events] == [("issued", new, old), ("renewed", new, old)]
    with svc.session() as s:
        notices.send(svc, notices.expiry(s, old, 21, 30), session=s)
    what, cid, payload = sink.events[-1]
    assert (what, cid) == ("expiring", old) and "expires in 21 days" in payload["subject"]


def test_events_purchase_issued_is_not_renewed(svc):
    """A first certificate (a purchase: no parent) is `issued` only."""
    r = orders.buy(svc, names=["new.example.com"], brand="DigiCert", level=Level.DV, years=1,
                   owner=Contact(name="Ops", email="ops@example.com", phone="+81-3-0000-0000"),
                   approve_payment=True)
    cid = r.certificate_ids[0]
    pipeline.prepare(svc, cid, actor="test")
    pipeline.submit(svc, cid, actor="test")
    assert [w for w, c, _ in svc.extra["events"].events if c == cid] == ["issued"]
