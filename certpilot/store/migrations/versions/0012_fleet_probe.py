"""Fleet probe: the last observation of every endpoint the scan probes (drift, expiring, broken).

Revision ID: 0012
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from certpilot.store.base import UtcDateTime

revision = "0012"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "probe_observations",
        sa.Column("endpoint", sa.String(300), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("sni", sa.String(255), nullable=True),
        sa.Column("target_id", sa.String(36), nullable=True),
        sa.Column("certificate_id", sa.String(36), nullable=True),
        sa.Column("expected_fingerprint", sa.String(64), nullable=True),
        sa.Column("served_fingerprint", sa.String(64), nullable=True),
        sa.Column("served_not_after", UtcDateTime(), nullable=True),
        sa.Column("earliest_expiry", UtcDateTime(), nullable=True),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("fault", sa.String(32), nullable=True),
        sa.Column("finding", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("reported", sa.String(200), nullable=True),
        sa.Column("observed_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("endpoint", name="pk_probe_observations"),
    )
    op.create_index("ix_probe_observations_certificate_id", "probe_observations", ["certificate_id"])


def downgrade() -> None:
    op.drop_table("probe_observations")
