"""Builders shared by the store tests: a fixed clock and minimal valid models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from certpilot.core.models import (
    Certificate,
    CertType,
    Contact,
    LedgerKind,
    Level,
    Order,
    OrderKind,
    Origin,
    PaymentLine,
    PlannedCertificate,
    Spec,
    Status,
)

NOW = datetime(2025, 9, 10, 12, 0, tzinfo=UTC)
SPEC = Spec(brand="DigiCert", level=Level.DV, cert_type=CertType.SINGLE)


def day(iso: str) -> datetime:
    """Midnight UTC of an ISO date."""
    return datetime.fromisoformat(iso).replace(tzinfo=UTC)


def cert(cid: str, *, state: Status = Status.ISSUED, parent_id: str | None = None,
         order_id: str | None = None, plan_index: int = 0, not_after: str | None = "2025-09-30",
         fingerprint: str | None = None, cn: str = "www.example.test") -> Certificate:
    """A single-name DV certificate valid one year up to `not_after`."""
    end = day(not_after) if not_after else None
    return Certificate(
        id=cid, common_name=cn, names=[cn], cert_type=CertType.SINGLE, origin=Origin.OFFICIAL,
        level=Level.DV, brand="DigiCert", not_before=end - timedelta(days=364) if end else None,
        not_after=end, serial="0a1b" if end else None, fingerprint_sha256=fingerprint,
        parent_id=parent_id, order_id=order_id, plan_index=plan_index, state=state,
        owner=Contact(name="Ops", email="ops@example.test", phone="+81-3-0000-0000"),
    )


def order(oid: str, *, certificate_id: str | None = None, years: int = 2) -> Order:
    """A renewal order awaiting payment with a two-line bill and a planned certificate."""
    return Order(
        id=oid, kind=OrderKind.RENEWAL, certificate_id=certificate_id, spec=SPEC, years=years,
        managed_services=years - 1, managed_fee=True,
        planned=[PlannedCertificate(index=1, state=Status.PENDING_APPLICATION,
                                    not_before=day("2025-09-10"), not_after=day("2026-09-30"))],
        payment=[PaymentLine(kind=LedgerKind.QUOTA, spec_key=SPEC.key, needed=years, from_balance=years,
                             shortfall=0)],
        created_at=NOW,
    )
