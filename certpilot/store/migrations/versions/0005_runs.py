"""Runs: which flow run last claimed each certificate's work (the scanner's liveness check).

Revision ID: 0005
Revises: 0001
Create Date: 2025-01-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from certpilot.store.base import UtcDateTime

revision = "0005"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "work_claims",
        sa.Column("certificate_id", sa.String(36), nullable=False),
        sa.Column("flow_run_id", sa.String(36), nullable=False),
        sa.Column("claimed_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("certificate_id", name="pk_work_claims"),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"],
                                name="fk_work_claims_certificate_id_certificates"),
    )


def downgrade() -> None:
    op.drop_table("work_claims")
