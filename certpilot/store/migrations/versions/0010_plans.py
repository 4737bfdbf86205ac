"""Plans that keep their promises (issue 10): plan vs issued windows, the coverage term and the
manual CSR on the order, per-certificate automatic-renewal start and validation method.

Revision ID: 0010
Revises: 0004 (renewal_policies; certificates and orders come from 0001, which 0004 follows)
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from certpilot.store.base import UtcDateTime

revision = "0010"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite adds nullable columns in place; no table rebuild is needed.
    op.add_column("certificates", sa.Column("planned_not_before", UtcDateTime(), nullable=True))
    op.add_column("certificates", sa.Column("planned_not_after", UtcDateTime(), nullable=True))
    op.add_column("orders", sa.Column("coverage_not_after", UtcDateTime(), nullable=True))
    op.add_column("orders", sa.Column("csr_pem", sa.Text(), nullable=True))
    op.add_column("renewal_policies", sa.Column("start_days", sa.Integer(), nullable=True))
    op.add_column("renewal_policies", sa.Column("validation_method", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("renewal_policies") as batch:
        batch.drop_column("validation_method")
        batch.drop_column("start_days")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("csr_pem")
        batch.drop_column("coverage_not_after")
    with op.batch_alter_table("certificates") as batch:
        batch.drop_column("planned_not_after")
        batch.drop_column("planned_not_before")
