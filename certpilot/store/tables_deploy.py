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
    name: Mapped[str] = mapped_column(String(255), default="", index=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    endpoints: Mapped[list[list[Any]]] = mapped_column(JSON, default=list)
    """[[host, port, sni], ...] probed after a deployment (VER-1)."""
    host: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The host (Prefect work queue) whose worker deploys this target; None: any worker (0011)."""
    lock_task_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    """The deployment task holding the target (one at a time, DEP-2); None when free (0011)."""
    lock_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    """When the holder's lock lapses unless its heartbeat renews it (0011)."""
    removed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    """When an operator removed the target (`certpilot target remove`): kept for its tasks' history (0011)."""
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
    """The fencing token: each claim increments it, and a run's writes require its own value."""
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    """A RUNNING task's lease, renewed by its run's heartbeat; past it the run is taken for dead (0011)."""
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("certificate_id", "target_id", name="uq_deployment_tasks_certificate_target"),
    )
