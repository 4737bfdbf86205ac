"""ACME Renewal Information (RFC 9773) against acme2certifier (issue 13).

acme2certifier serves renewalInfo: a certificate's window starts 10 % into its 90-day life and
lasts a day. certpilot asks for it (`operations.issuers.renewal_info`): the due point moves into
that window, well before the lifetime rule's (30 days left); a window already past makes the
renewal urgent (due now); and the renewal's new order carries `replaces` (the old certificate's
ARI identifier), which acme2certifier receives.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from certpilot import runtime as rt
from certpilot.adapters.issuers.acme import AcmeIssuer, ari_cert_id
from certpilot.core.issuers import renewal_due_at
from certpilot.core.outcomes import SubmitKind
from certpilot.operations import issuers, orders, pipeline
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

    info = issuers.renewal_info(svc, cid)

    assert info.window is not None and not info.urgent
    life = not_after - not_before
    assert abs(info.window.start - (not_before + life / 10)) < timedelta(minutes=2)
    assert info.window.end - info.window.start == timedelta(days=1)
    assert info.window.start <= info.due_at <= info.window.end
    assert info.due_at < renewal_due_at(not_before, not_after) - timedelta(days=40)  # day ~9, not day 60
    assert info.ask_again_at is not None

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
