"""Orders first-class: a purchase keeps its names and owner; listing indexes; one certificate per
order and plan index (PAY-4).

Revision ID: 0006
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite adds nullable columns in place; no table rebuild is needed.
    op.add_column("orders", sa.Column("names", sa.JSON(), nullable=True))
    op.add_column("orders", sa.Column("owner_email", sa.String(255), nullable=True))
    op.add_column("orders", sa.Column("owner_name", sa.String(255), nullable=True))
    op.add_column("orders", sa.Column("owner_phone", sa.String(64), nullable=True))
    op.create_index("ix_orders_created_at", "orders", ["created_at"])
    op.create_index("ix_orders_state_created_at", "orders", ["state", "created_at"])
    # NULL order ids (imported certificates) never conflict: NULLs are distinct in a unique index.
    op.create_index("uq_certificates_order_plan_index", "certificates", ["order_id", "plan_index"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_certificates_order_plan_index", table_name="certificates")
    op.drop_index("ix_orders_state_created_at", table_name="orders")
    op.drop_index("ix_orders_created_at", table_name="orders")
    with op.batch_alter_table("orders") as batch:
        for column in ("owner_phone", "owner_name", "owner_email", "names"):
            batch.drop_column(column)
