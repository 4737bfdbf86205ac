"""The fleet probe's table: the last observation of each probed endpoint (migration 0012)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from certpilot.store.base import Base, UtcDateTime


class ProbeObservationRow(Base):
    """What an endpoint served at the last fleet probe, what was expected, and what was reported.

    `reported` is the key of the finding last told (inbox, notice, event): a finding is told once,
    when its key first differs from it; an endpoint found fine again clears it, so the same fault
    coming back later is told again.
    """

    __tablename__ = "probe_observations"

    endpoint: Mapped[str] = mapped_column(String(300), primary_key=True)
    """`host:port/sni`: one row per endpoint, whatever target lists it."""
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    sni: Mapped[str | None] = mapped_column(String(255), nullable=True)
    target_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    certificate_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    expected_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    served_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    served_not_after: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    earliest_expiry: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    """The earliest notAfter of the served chain (blackbox_exporter's probe_ssl_earliest_cert_expiry)."""
    outcome: Mapped[str] = mapped_column(String(24))
    fault: Mapped[str | None] = mapped_column(String(32), nullable=True)
    finding: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")
    reported: Mapped[str | None] = mapped_column(String(200), nullable=True)
    observed_at: Mapped[datetime] = mapped_column(UtcDateTime)
