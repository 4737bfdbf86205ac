"""Pipeline: managed starts (PL-8), notices sent (NT-1/NT-2), per-certificate renewal policy,
the in-product inbox (DEP-3).

Revision ID: 0004
Revises: 0001
Create Date: 2025-01-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from certpilot.store.base import UtcDateTime

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "managed_starts",
        sa.Column("certificate_id", sa.String(36), nullable=False),
        sa.Column("order_id", sa.String(36), nullable=True),
        sa.Column("predecessor_id", sa.String(36), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False, server_default=""),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("certificate_id", name="pk_managed_starts"),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"],
                                name="fk_managed_starts_certificate_id_certificates"),
    )
    op.create_table(
        "notices_sent",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("certificate_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("threshold_days", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("sent_at", UtcDateTime(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name="pk_notices_sent"),
        sa.UniqueConstraint("certificate_id", "kind", "threshold_days",
                            name="uq_notices_sent_cert_kind_threshold"),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"],
                                name="fk_notices_sent_certificate_id_certificates"),
    )
    op.create_table(
        "renewal_policies",
        sa.Column("certificate_id", sa.String(36), nullable=False),
        sa.Column("auto_renew", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("years", sa.Integer(), nullable=False, server_default="1"),
        sa.PrimaryKeyConstraint("certificate_id", name="pk_renewal_policies"),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"],
                                name="fk_renewal_policies_certificate_id_certificates"),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("certificate_id", sa.String(36), nullable=False),
        sa.Column("common_name", sa.String(255), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("read", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
    )
    op.create_index("ix_messages_read_at", "messages", ["read", "at"])


def downgrade() -> None:
    op.drop_index("ix_messages_read_at", "messages")
    op.drop_table("messages")
    op.drop_table("renewal_policies")
    op.drop_table("notices_sent")
    op.drop_table("managed_starts")
