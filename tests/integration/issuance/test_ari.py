"""ACME Renewal Information (RFC 9773) against acme2certifier (issue 13).

acme2certifier serves renewalInfo: a certificate's window starts 10 % into its 90-day life and
lasts a day. certpilot asks for it (`operations.issuers.renewal_info`, what the scanner runs first for the
certificates whose window is not kept or whose Retry-After passed): the due point moves into that
window, well before the lifetime rule's (30 days left), and the scanner schedules the renewal by
it; a window already past makes the renewal urgent (due now); the window is kept until the CA's
Retry-After; and the renewal's new order carries `replaces` (the old certificate's ARI
identifier), which acme2certifier receives.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from certpilot import runtime as rt
from certpilot.adapters.issuers.acme import AcmeIssuer, ari_cert_id
from certpilot.core.issuers import renewal_due_at
from certpilot.core.outcomes import SubmitKind
from certpilot.operations import issuers, orders, pipeline, scan
from certpilot.store.ports import SqlAcmeAccountStore
from certpilot.store.repository import Repository
from tests.integration.issuance.conftest import add_certificate

pytestmark = [pytest.mark.servers]


def _svc(acme2certifier, bind_dns, sessions, vault, db_url, clock=None) -> rt.Services:
    issuer = AcmeIssuer(acme2certifier.directory_url, accounts=SqlAcmeAccountStore(sessions), vault=vault,
                        allow_insecure=True, contact_email="ops@example.test", dns_providers=[bind_dns],
                        publicly_trusted=False, paid=False, validation_timeout=30)
    extra = {"clock": clock} if clock else {}
    return rt.local_services(database_url=db_url, vault=vault, issuers={"acme/a2c": issuer},
                             default_issuer="acme/a2c", dns_providers=[bind_dns], **extra)


def test_ari_window_moves_renewal_earlier_past_window_urgent_and_replaces_sent(
        acme2certifier, bind_dns, sessions, vault, db_url, unique_label):
    svc = _svc(acme2certifier, bind_dns, sessions, vault, db_url)
    cid = add_certificate(sessions, [f"{unique_label}.example.test"], brand="DigiCert")
    pipeline.prepare(svc, cid)
    assert pipeline.submit(svc, cid).kind is SubmitKind.ISSUED
    with svc.session(readonly=True) as s:
        row = Repository(s).get_certificate(cid)
        not_before, not_after, leaf = row.not_before, row.not_after, row.leaf_pem
    assert not_after - not_before == timedelta(days=90)
    fifty_left = not_after - timedelta(days=50)  # expiring soon; the lifetime rule says: due at 30 left
    assert cid not in [r.certificate_id for r in scan.decide(svc, at=fifty_left).renewals]
    assert issuers.renewal_info_due(svc) == (cid,)  # never read: the scanner reads it first

    info = issuers.renewal_info(svc, cid)

    assert info.window is not None and not info.urgent
    life = not_after - not_before
    assert abs(info.window.start - (not_before + life / 10)) < timedelta(minutes=2)
    assert info.window.end - info.window.start == timedelta(days=1)
    assert info.window.start <= info.due_at <= info.window.end
    assert info.due_at < renewal_due_at(not_before, not_after) - timedelta(days=40)  # day ~9, not day 60
    assert info.ask_again_at is not None

    assert issuers.renewal_info_due(svc) == ()  # kept until the CA's Retry-After (an hour)
    # The scanner schedules inside the window it keeps: at 50 days left the window is long over,
    # so the renewal is due now (ARI overrides the lifetime rule).
    assert cid in [r.certificate_id for r in scan.decide(svc, at=fifty_left).renewals]

    later = info.window.end + timedelta(hours=1)  # the CA's window is over: renew now
    past = issuers.renewal_info(svc, cid, now=later)
    assert past.urgent and past.due_at == later

    # The renewal (ordered when due; the clock injected) carries `replaces` in its new order.
    due = _svc(acme2certifier, bind_dns, sessions, vault, db_url, clock=lambda: not_after - timedelta(days=20))
    child = orders.renew(due, cid, years=1).certificate_ids[0]
    pipeline.prepare(due, child)
    assert pipeline.submit(due, child).kind is SubmitKind.ISSUED
    new_orders = acme2certifier.payloads("neworders")
    assert new_orders[-1].get("replaces") == ari_cert_id(leaf)  # the renewal's order, as the CA received it
    assert all("replaces" not in o for o in new_orders[:-1] if o["identifiers"] == new_orders[-1]["identifiers"])
