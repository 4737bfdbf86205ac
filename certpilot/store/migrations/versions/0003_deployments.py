"""Deployments: deployment targets and managed deployment tasks (DEP-1, DEP-2).

Revision ID: 0003
Revises: 0001
Create Date: 2025-01-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from certpilot.store.base import UtcDateTime

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployment_targets",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("certificate_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("endpoints", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deployment_targets"),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"],
                                name="fk_deployment_targets_certificate_id_certificates"),
    )
    op.create_index("ix_deployment_targets_certificate_id", "deployment_targets", ["certificate_id"])
    op.create_table(
        "deployment_tasks",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("certificate_id", sa.String(36), nullable=False),
        sa.Column("target_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("checkpoint", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=True),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deployment_tasks"),
        sa.UniqueConstraint("certificate_id", "target_id", name="uq_deployment_tasks_certificate_target"),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"],
                                name="fk_deployment_tasks_certificate_id_certificates"),
        sa.ForeignKeyConstraint(["target_id"], ["deployment_targets.id"],
                                name="fk_deployment_tasks_target_id_deployment_targets"),
    )
    op.create_index("ix_deployment_tasks_certificate_id", "deployment_tasks", ["certificate_id"])
    op.create_index("ix_deployment_tasks_target_id", "deployment_tasks", ["target_id"])


def downgrade() -> None:
    op.drop_table("deployment_tasks")
    op.drop_table("deployment_targets")
