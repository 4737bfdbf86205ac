"""Deployment tables (migration 0003): where certificates are served and the managed
deployment tasks of new certificates (DEP-1, DEP-2).

No secrets here: a target's `config` holds paths, commands, ARNs and endpoints, never keys or
credentials (`operations.deployments.add_target` refuses them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from certpilot.store import tables  # noqa: F401 - the foreign keys point at foundation tables
from certpilot.store.base import Base, UtcDateTime, utcnow


class DeploymentTargetRow(Base):
    """A place a certificate is served from; `certificate_id` is the certificate it serves (or served)."""

    __tablename__ = "deployment_targets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    certificate_id: Mapped[str] = mapped_column(ForeignKey("certificates.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255), default="")
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    endpoints: Mapped[list[list[Any]]] = mapped_column(JSON, default=list)
    """[[host, port, sni], ...] probed after a deployment (VER-1)."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class DeploymentTaskRow(Base):
    """One managed deployment of a new certificate to one target (DEP-2); one per pair, ever."""

    __tablename__ = "deployment_tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    certificate_id: Mapped[str] = mapped_column(ForeignKey("certificates.id"), index=True)
    target_id: Mapped[str] = mapped_column(ForeignKey("deployment_targets.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    progress: Mapped[int] = mapped_column(Integer, default=0)
    details: Mapped[str] = mapped_column(Text, default="")
    checkpoint: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    """What a target adapter must remember across a crash to roll back (public data only: the
    previous certificate's PEM, ARNs; never key material)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("certificate_id", "target_id", name="uq_deployment_tasks_certificate_target"),
    )
