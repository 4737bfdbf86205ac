"""Issuers per certificate: the chosen issuer and its fallbacks; an application's "submitting"
marker and its "retry at"; the CA's renewal windows (ARI) and when to ask again (issue 13).

Revision ID: 0013
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from certpilot.store.base import UtcDateTime

revision = "0013"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "certificate_issuers",
        sa.Column("certificate_id", sa.String(36), nullable=False),
        sa.Column("issuer", sa.String(128), nullable=False),
        sa.Column("fallbacks", sa.JSON(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("certificate_id", name="pk_certificate_issuers"),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"],
                                name="fk_certificate_issuers_certificate_id_certificates"),
    )
    op.create_table(
        "renewal_windows",
        sa.Column("certificate_id", sa.String(36), nullable=False),
        sa.Column("start", UtcDateTime(), nullable=True),
        sa.Column("end", UtcDateTime(), nullable=True),
        sa.Column("explanation_url", sa.String(1024), nullable=True),
        sa.Column("checked_at", UtcDateTime(), nullable=False),
        sa.Column("next_check_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("certificate_id", name="pk_renewal_windows"),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"],
                                name="fk_renewal_windows_certificate_id_certificates"),
    )
    op.create_index("ix_renewal_windows_next_check_at", "renewal_windows", ["next_check_at"])
    # SQLite adds nullable columns in place; no table rebuild is needed.
    op.add_column("ca_applications", sa.Column("submitting_at", UtcDateTime(), nullable=True))
    op.add_column("ca_applications", sa.Column("submit_token", sa.String(64), nullable=True))
    op.add_column("ca_applications", sa.Column("submit_owner", sa.String(64), nullable=True))
    op.add_column("ca_applications", sa.Column("retry_at", UtcDateTime(), nullable=True))
    op.add_column("ca_applications", sa.Column("retry_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ca_applications") as batch:
        for column in ("retry_reason", "retry_at", "submit_owner", "submit_token", "submitting_at"):
            batch.drop_column(column)
    op.drop_index("ix_renewal_windows_next_check_at", table_name="renewal_windows")
    op.drop_table("renewal_windows")
    op.drop_table("certificate_issuers")
