"""Tables of the Prefect pipeline: exactly-once managed starts, notices sent, renewal policy.

The database, not the flow, is what makes the scanner safe to run twice at once or after a
crash: a managed start is a row with the certificate as primary key (PL-8), a notice a row
unique per (certificate, kind, threshold) (NT-1 "once each").
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from certpilot.store.base import Base, UtcDateTime


class ManagedStartRow(Base):
    """PL-8: one row per certificate whose managed application was started (never two)."""

    __tablename__ = "managed_starts"

    certificate_id: Mapped[str] = mapped_column(String(36), ForeignKey("certificates.id"), primary_key=True)
    order_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    predecessor_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    outcome: Mapped[str] = mapped_column(String(32))
    """started | waiting_manual (PL-5 refused: the owner was told why)."""
    detail: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())


class NoticeRow(Base):
    """A notification sent once: expiry thresholds (NT-1) and human steps (NT-2)."""

    __tablename__ = "notices_sent"
    __table_args__ = (UniqueConstraint("certificate_id", "kind", "threshold_days",
                                       name="uq_notices_sent_cert_kind_threshold"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    certificate_id: Mapped[str] = mapped_column(String(36), ForeignKey("certificates.id"))
    kind: Mapped[str] = mapped_column(String(32))
    threshold_days: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime] = mapped_column(UtcDateTime())
    detail: Mapped[str] = mapped_column(Text, default="")


class RenewalPolicyRow(Base):
    """Per-certificate renewal settings; a certificate without a row follows the defaults."""

    __tablename__ = "renewal_policies"

    certificate_id: Mapped[str] = mapped_column(String(36), ForeignKey("certificates.id"), primary_key=True)
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=True)
    years: Mapped[int] = mapped_column(Integer, default=1)
    start_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """Automatic renewal starts this many days before expiry (None: `Policy.auto_renew_start_days`,
    30, PAY-2's fee avoided); migration 0010."""
    validation_method: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """The operator's choice of validation method (None: `core.validation.choose_method`); 0010."""


class MessageRow(Base):
    """An in-product message (DEP-3, NT-1, NT-2): every notice is also kept here for the UI/CLI."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    kind: Mapped[str] = mapped_column(String(32))
    certificate_id: Mapped[str] = mapped_column(String(36))
    common_name: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    read: Mapped[bool] = mapped_column(Boolean, default=False)
