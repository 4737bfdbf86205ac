"""Inventories for the scanner's tests, built through the Repository with fixed dates.

No CA is involved: the scanner only reads dates and states, so certificates are written as the
orders operation would leave them (an original, a paid 2-year order, certificate 1 issued,
certificate 2 not activated, PL-3).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from certpilot.core.models import (
    Certificate,
    CertType,
    Contact,
    LedgerEntry,
    LedgerKind,
    Level,
    Order,
    OrderKind,
    OrderState,
    Origin,
    Spec,
    Status,
)
from certpilot.store.repository import Repository, new_id
from certpilot.store.tables import AuditRow, LedgerRow
from certpilot.store.tables_pipeline import ManagedStartRow, NoticeRow

NOW = datetime(2025, 9, 1, tzinfo=UTC)
DAY = timedelta(days=1)
OWNER = Contact(name="Ops", email="ops@example.test", phone="+81-3-0000-0000")


def certificate(cid: str, *, state: Status = Status.ISSUED, left: timedelta | None = None, level: Level = Level.DV,
                origin: Origin = Origin.OFFICIAL, order_id: str | None = None, index: int = 0,
                parent_id: str | None = None, owner: Contact | None = OWNER, names: list[str] | None = None,
                key_held: bool = True) -> Certificate:
    """A certificate expiring `left` after NOW (None: not issued yet)."""
    names = names if names is not None else [f"{cid}.example.test"]
    not_after = NOW + left if left is not None else None
    return Certificate(id=cid, common_name=names[0] if names else cid, names=names, cert_type=CertType.SINGLE,
                       origin=origin, level=level, brand="DigiCert",
                       not_before=not_after - 365 * DAY if not_after else None, not_after=not_after,
                       parent_id=parent_id, order_id=order_id, plan_index=index, state=state, owner=owner,
                       key_held=key_held)


def add_plan(repo: Repository, n: int, *, left: timedelta = 20 * DAY, kind: OrderKind = OrderKind.RENEWAL,
             level: Level = Level.DV, owner: Contact | None = OWNER, names: list[str] | None = None,
             prefix: str = "p") -> tuple[str, str, str]:
    """An original, a paid 2-year order renewing it, certificate 1 ISSUED with `left` to go and
    certificate 2 NOT_ACTIVATED. Returns (original, certificate 1, certificate 2) ids."""
    orig, c1, c2, oid = f"{prefix}{n}-orig", f"{prefix}{n}-c1", f"{prefix}{n}-c2", f"{prefix}{n}-order"
    repo.add_certificate(certificate(orig, left=left - 365 * DAY, level=level, owner=owner, names=names), now=NOW)
    repo.add_order(Order(id=oid, kind=kind, certificate_id=orig, spec=Spec(brand="DigiCert", level=level,
                                                                            cert_type=CertType.SINGLE),
                         years=2, managed_services=1, state=OrderState.PAID, created_at=NOW), now=NOW)
    repo.add_certificate(certificate(c1, left=left, level=level, order_id=oid, index=0, parent_id=orig, owner=owner,
                                     names=names), now=NOW)
    repo.add_certificate(certificate(c2, state=Status.NOT_ACTIVATED, level=level, order_id=oid, index=1,
                                     parent_id=orig, owner=owner, names=names), now=NOW)
    return orig, c1, c2


def add_managed_fee_order(repo: Repository, n: int, *, left: timedelta = 30 * DAY) -> tuple[str, str]:
    """PAY-2: an original with `left` to go, renewed early: certificate 1 PENDING_APPLICATION with the fee."""
    orig, c1, oid = f"f{n}-orig", f"f{n}-c1", f"f{n}-order"
    repo.add_certificate(certificate(orig, left=left), now=NOW)
    repo.add_order(Order(id=oid, kind=OrderKind.RENEWAL, certificate_id=orig,
                         spec=Spec(brand="DigiCert", level=Level.DV, cert_type=CertType.SINGLE), years=1,
                         managed_services=0, managed_fee=True, state=OrderState.PAID, created_at=NOW), now=NOW)
    repo.add_certificate(certificate(c1, state=Status.PENDING_APPLICATION, order_id=oid, index=0, parent_id=orig),
                         now=NOW)
    return orig, c1


def seed_ledger(repo: Repository) -> None:
    """Some quota and credits, so that 'the ledger is unchanged' means something."""
    repo.append_ledger([
        LedgerEntry(id=new_id(), kind=LedgerKind.QUOTA, spec_key="DigiCert/DV/single", delta=5, order_id=None,
                    idempotency_key="seed-quota", created_at=NOW),
        LedgerEntry(id=new_id(), kind=LedgerKind.MANAGED, spec_key=None, delta=3, order_id=None,
                    idempotency_key="seed-managed", created_at=NOW),
    ])


def counts(session) -> dict[str, int]:
    """Rows that prove exactly-once: managed starts, PENDING_APPLICATION transitions, ledger, notices."""
    return {
        "managed_starts": session.scalar(select(func.count()).select_from(ManagedStartRow)),
        "started": session.scalar(select(func.count()).select_from(ManagedStartRow)
                                  .where(ManagedStartRow.outcome == "started")),
        "transitions": session.scalar(select(func.count()).select_from(AuditRow).where(
            AuditRow.from_state == "not_activated", AuditRow.to_state == "pending_application")),
        "ledger": session.scalar(select(func.count()).select_from(LedgerRow)),
        "notices": session.scalar(select(func.count()).select_from(NoticeRow)),
    }
