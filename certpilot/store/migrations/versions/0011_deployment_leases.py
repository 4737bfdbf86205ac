"""Deployment leases, target locks and target hosts: a run's lease is renewed by its heartbeat
(DEP-2), one task at a time holds a target's lock, a target names the host (work queue) that
deploys it, and a removed target is kept (its tasks' history) but no longer deployed to.

Revision ID: 0011
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from certpilot.store.base import UtcDateTime

revision = "0011"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite adds nullable columns in place; no table rebuild is needed.
    op.add_column("deployment_tasks", sa.Column("lease_until", UtcDateTime(), nullable=True))
    op.add_column("deployment_targets", sa.Column("host", sa.String(64), nullable=True))
    op.add_column("deployment_targets", sa.Column("lock_task_id", sa.String(36), nullable=True))
    op.add_column("deployment_targets", sa.Column("lock_until", UtcDateTime(), nullable=True))
    op.add_column("deployment_targets", sa.Column("removed_at", UtcDateTime(), nullable=True))
    op.create_index("ix_deployment_targets_name", "deployment_targets", ["name"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_deployment_targets_name", table_name="deployment_targets")
    with op.batch_alter_table("deployment_targets") as batch:
        for column in ("removed_at", "lock_until", "lock_task_id", "host"):
            batch.drop_column(column)
    with op.batch_alter_table("deployment_tasks") as batch:
        batch.drop_column("lease_until")
