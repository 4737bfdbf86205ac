"""Issuance tables (migration 0002): ACME accounts, CA applications, the embedded private CA.

Nothing here holds key material: keys live sealed in `keys` and are referenced by id.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from certpilot.store import tables  # noqa: F401 - the foreign keys point at foundation tables
from certpilot.store.base import Base, UtcDateTime, utcnow


class AcmeAccountRow(Base):
    """One ACME account per directory URL; its account key is sealed in `keys`."""

    __tablename__ = "acme_accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    directory_url: Mapped[str] = mapped_column(String(512), unique=True)
    account_url: Mapped[str] = mapped_column(String(1024))
    key_id: Mapped[str] = mapped_column(ForeignKey("keys.id"))
    contact: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class CaApplicationRow(Base):
    """A certificate's application to its CA: the re-entrancy record of stage 2.

    `order_url` is committed before any challenge is answered, so a rerun resumes the same CA
    order instead of opening a second one.
    """

    __tablename__ = "ca_applications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    certificate_id: Mapped[str] = mapped_column(ForeignKey("certificates.id"), unique=True)
    issuer: Mapped[str | None] = mapped_column(String(64), nullable=True)
    csr_mode: Mapped[str] = mapped_column(String(16))
    csr_pem: Mapped[str] = mapped_column(Text)
    order_url: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    state: Mapped[str] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Migration 0013: the "submitting" marker is committed before the CA is asked for an order
    # (a rerun that finds it recovers that order instead of placing a second one); `retry_at`
    # is when the CA may be asked again after it said "not before" (Retry-After).
    submitting_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    submit_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    submit_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The flow run holding the certificate's work claim when the marker was set ("" without one)."""
    retry_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    retry_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class CertificateIssuerRow(Base):
    """Which issuer a certificate is applied to (`certpilot policy ID --issuer NAME`) and the
    ordered fallbacks tried when it cannot take the order (migration 0013). A certificate
    without a row inherits its parent's choice, else gets one by origin."""

    __tablename__ = "certificate_issuers"

    certificate_id: Mapped[str] = mapped_column(ForeignKey("certificates.id"), primary_key=True)
    issuer: Mapped[str] = mapped_column(String(128))
    fallbacks: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class RenewalWindowRow(Base):
    """The renewal window a CA suggested for a certificate (ARI, RFC 9773), kept until
    `next_check_at` (the CA's Retry-After): the scanner asks again only then (migration 0013).
    `start`/`end` are NULL when the CA serves no window for it."""

    __tablename__ = "renewal_windows"

    certificate_id: Mapped[str] = mapped_column(ForeignKey("certificates.id"), primary_key=True)
    start: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    end: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    explanation_url: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    checked_at: Mapped[datetime] = mapped_column(UtcDateTime)
    next_check_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class PrivateCaRow(Base):
    """The embedded private CA: root and intermediate certificates, their keys' ids."""

    __tablename__ = "private_ca"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    root_pem: Mapped[str] = mapped_column(Text)
    root_key_id: Mapped[str] = mapped_column(ForeignKey("keys.id"))
    intermediate_pem: Mapped[str] = mapped_column(Text)
    intermediate_key_id: Mapped[str] = mapped_column(ForeignKey("keys.id"))
    crl_number: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class PrivateCaIssuedRow(Base):
    """A request to the private CA and, once signed, its certificate (`ref` is the order reference)."""

    __tablename__ = "private_ca_issued"

    ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    ca_id: Mapped[str] = mapped_column(ForeignKey("private_ca.id"))
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    names: Mapped[list[str]] = mapped_column(JSON)
    cert_pem: Mapped[str] = mapped_column(Text)
    submitted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ready_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PrivateCaRevocationRow(Base):
    """A certificate the private CA revoked (listed in its CRL)."""

    __tablename__ = "private_ca_revocations"

    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    ca_id: Mapped[str] = mapped_column(ForeignKey("private_ca.id"))
    revoked_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(String(32))
