"""Foundation tables (migration 0001): certificates, orders, ledger, audit log, sealed keys.

Enum-valued columns are stored as their string values (no database enum types) so that other
parts can add members without a migration. Every datetime column is `UtcDateTime`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from certpilot.store.base import Base, UtcDateTime, utcnow


class KeyRow(Base):
    """A sealed private key (CSR-5): AES-GCM ciphertext + wrapped DEK; never plaintext."""

    __tablename__ = "keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    public_fingerprint: Mapped[str] = mapped_column(String(128), index=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_dek: Mapped[bytes] = mapped_column(LargeBinary)
    provider: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    def __repr__(self) -> str:  # never show the blobs
        return f"KeyRow(id={self.id!r}, algorithm={self.algorithm!r}, provider={self.provider!r})"


class CertificateRow(Base):
    """One certificate of the inventory; `parent_id` is its lineage (LC-2)."""

    __tablename__ = "certificates"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    common_name: Mapped[str] = mapped_column(String(255), index=True)
    names: Mapped[list[str]] = mapped_column(JSON)
    cert_type: Mapped[str] = mapped_column(String(16))
    origin: Mapped[str] = mapped_column(String(16))
    level: Mapped[str] = mapped_column(String(4))
    brand: Mapped[str] = mapped_column(String(64))
    key_algorithm: Mapped[str] = mapped_column(String(16))
    not_before: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    not_after: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    serial: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fingerprint_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("certificates.id"), nullable=True, index=True
    )
    # use_alter: certificates <-> orders reference each other; break the cycle for DDL sorting.
    order_id: Mapped[str | None] = mapped_column(
        ForeignKey("orders.id", use_alter=True), nullable=True, index=True
    )
    plan_index: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(32))
    validation_method: Mapped[str] = mapped_column(String(16))
    owner_email: Mapped[str | None] = mapped_column(String(255), nullable=True)
    owner_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    owner_phone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    temporary: Mapped[bool] = mapped_column(Boolean, default=False)
    key_held: Mapped[bool] = mapped_column(Boolean, default=True)
    publicly_trusted: Mapped[bool] = mapped_column(Boolean, default=True)
    key_id: Mapped[str | None] = mapped_column(ForeignKey("keys.id"), nullable=True)
    leaf_pem: Mapped[str | None] = mapped_column(Text, nullable=True)
    chain_pem: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # The window asked of the CA at submission (migration 0010): plan vs issued (VA-5).
    planned_not_before: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    planned_not_after: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    # The scanner filters by expiry and state (one query over 100k rows).
    __table_args__ = (
        Index("ix_certificates_not_after", "not_after"),
        Index("ix_certificates_state", "state"),
        # PAY-4: an order's certificates are created once; a retried or concurrent payer of the
        # same order cannot add a second certificate at the same plan index (migration 0006).
        Index("uq_certificates_order_plan_index", "order_id", "plan_index", unique=True),
    )


class OrderRow(Base):
    """A renewal, purchase or emergency order (stage 1 of LC-3)."""

    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    certificate_id: Mapped[str | None] = mapped_column(
        ForeignKey("certificates.id"), nullable=True, index=True
    )
    spec_key: Mapped[str] = mapped_column(String(128))
    brand: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(4))
    cert_type: Mapped[str] = mapped_column(String(16))
    years: Mapped[int] = mapped_column(Integer)
    csr_mode: Mapped[str] = mapped_column(String(16))
    managed_services: Mapped[int] = mapped_column(Integer, default=0)
    managed_fee: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(32), index=True)
    payment: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    planned: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # A purchase keeps what it buys (migration 0006): its certificates are created from these
    # once it is paid, whenever that is.
    names: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    owner_email: Mapped[str | None] = mapped_column(String(255), nullable=True)
    owner_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    owner_phone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The plan's coverage term (VA-5) and a manual CSR (CSR-2), kept on the order (migration 0010).
    coverage_not_after: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    csr_pem: Mapped[str | None] = mapped_column(Text, nullable=True)

    # `certpilot orders` lists newest first, optionally by state (10,000 orders in well under 1 s).
    __table_args__ = (
        Index("ix_orders_created_at", "created_at"),
        Index("ix_orders_state_created_at", "state", "created_at"),
    )


class LedgerRow(Base):
    """One append-only movement of quota, credits or money (PAY-4). Never updated or deleted."""

    __tablename__ = "ledger_entries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    spec_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    delta: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(Integer, default=0)
    order_id: Mapped[str | None] = mapped_column(ForeignKey("orders.id"), nullable=True, index=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    note: Mapped[str] = mapped_column(Text, default="")


class AuditRow(Base):
    """Who changed what, when, from which state to which, and why."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(128))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64), index=True)
    from_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    to_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    why: Mapped[str] = mapped_column(Text, default="")
