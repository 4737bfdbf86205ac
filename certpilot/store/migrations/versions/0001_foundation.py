"""Foundation: keys, certificates, orders, ledger entries, audit log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Other areas branch from this revision (0002 issuance, 0003 deployments, 0004 pipeline).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from certpilot.store.base import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"

    op.create_table(
        "keys",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("public_fingerprint", sa.String(128), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("wrapped_dek", sa.LargeBinary(), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_keys"),
    )
    op.create_index("ix_keys_public_fingerprint", "keys", ["public_fingerprint"])

    # certificates.order_id -> orders and orders.certificate_id -> certificates form a cycle.
    # SQLite accepts a forward reference inline (and cannot ALTER one in); PostgreSQL gets it
    # added after `orders` exists.
    order_fk = (
        [sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_certificates_order_id_orders")]
        if sqlite
        else []
    )
    op.create_table(
        "certificates",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("common_name", sa.String(255), nullable=False),
        sa.Column("names", sa.JSON(), nullable=False),
        sa.Column("cert_type", sa.String(16), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("level", sa.String(4), nullable=False),
        sa.Column("brand", sa.String(64), nullable=False),
        sa.Column("key_algorithm", sa.String(16), nullable=False),
        sa.Column("not_before", UtcDateTime(), nullable=True),
        sa.Column("not_after", UtcDateTime(), nullable=True),
        sa.Column("serial", sa.String(64), nullable=True),
        sa.Column("fingerprint_sha256", sa.String(64), nullable=True),
        sa.Column("parent_id", sa.String(36), nullable=True),
        sa.Column("order_id", sa.String(36), nullable=True),
        sa.Column("plan_index", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("validation_method", sa.String(16), nullable=False),
        sa.Column("owner_email", sa.String(255), nullable=True),
        sa.Column("owner_name", sa.String(255), nullable=True),
        sa.Column("owner_phone", sa.String(64), nullable=True),
        sa.Column("temporary", sa.Boolean(), nullable=False),
        sa.Column("key_held", sa.Boolean(), nullable=False),
        sa.Column("publicly_trusted", sa.Boolean(), nullable=False),
        sa.Column("key_id", sa.String(36), nullable=True),
        sa.Column("leaf_pem", sa.Text(), nullable=True),
        sa.Column("chain_pem", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_certificates"),
        sa.UniqueConstraint("fingerprint_sha256", name="uq_certificates_fingerprint_sha256"),
        sa.ForeignKeyConstraint(["parent_id"], ["certificates.id"],
                                name="fk_certificates_parent_id_certificates"),
        sa.ForeignKeyConstraint(["key_id"], ["keys.id"], name="fk_certificates_key_id_keys"),
        *order_fk,
    )
    op.create_index("ix_certificates_common_name", "certificates", ["common_name"])
    op.create_index("ix_certificates_parent_id", "certificates", ["parent_id"])
    op.create_index("ix_certificates_order_id", "certificates", ["order_id"])
    op.create_index("ix_certificates_not_after", "certificates", ["not_after"])
    op.create_index("ix_certificates_state", "certificates", ["state"])

    op.create_table(
        "orders",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("certificate_id", sa.String(36), nullable=True),
        sa.Column("spec_key", sa.String(128), nullable=False),
        sa.Column("brand", sa.String(64), nullable=False),
        sa.Column("level", sa.String(4), nullable=False),
        sa.Column("cert_type", sa.String(16), nullable=False),
        sa.Column("years", sa.Integer(), nullable=False),
        sa.Column("csr_mode", sa.String(16), nullable=False),
        sa.Column("managed_services", sa.Integer(), nullable=False),
        sa.Column("managed_fee", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("payment", sa.JSON(), nullable=False),
        sa.Column("planned", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        sa.UniqueConstraint("idempotency_key", name="uq_orders_idempotency_key"),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"],
                                name="fk_orders_certificate_id_certificates"),
    )
    op.create_index("ix_orders_certificate_id", "orders", ["certificate_id"])
    op.create_index("ix_orders_state", "orders", ["state"])
    if not sqlite:
        op.create_foreign_key("fk_certificates_order_id_orders", "certificates", "orders",
                              ["order_id"], ["id"])

    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("spec_key", sa.String(128), nullable=True),
        sa.Column("delta", sa.Integer(), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("order_id", sa.String(36), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_entries"),
        sa.UniqueConstraint("idempotency_key", name="uq_ledger_entries_idempotency_key"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_ledger_entries_order_id_orders"),
    )
    op.create_index("ix_ledger_entries_order_id", "ledger_entries", ["order_id"])

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("entity_type", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.String(64), nullable=False),
        sa.Column("from_state", sa.String(32), nullable=True),
        sa.Column("to_state", sa.String(32), nullable=True),
        sa.Column("why", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_entity_id", "audit_log", ["entity_id"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("ledger_entries")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("fk_certificates_order_id_orders", "certificates", type_="foreignkey")
    op.drop_table("orders")
    op.drop_table("certificates")
    op.drop_table("keys")
