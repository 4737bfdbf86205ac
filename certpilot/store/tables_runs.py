"""Which flow run works on which certificate (migration 0005): the scanner's way to tell a live
renewal from a dead one.

A renewal run claims its certificate when it starts (and again when it moves from the original
certificate to its order's new one); the latest claim wins. The scanner reads the claims of the
certificates whose work is unfinished and asks Prefect whether the claiming run still lives.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from certpilot.store import tables  # noqa: F401 - the foreign key points at a foundation table
from certpilot.store.base import Base, UtcDateTime


class WorkClaimRow(Base):
    """One row per certificate: the flow run that last claimed its work, and when."""

    __tablename__ = "work_claims"

    certificate_id: Mapped[str] = mapped_column(String(36), ForeignKey("certificates.id"), primary_key=True)
    flow_run_id: Mapped[str] = mapped_column(String(36))
    claimed_at: Mapped[datetime] = mapped_column(UtcDateTime())
