"""Issuance: ACME accounts, CA applications, the embedded private CA and its revocations.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from certpilot.store.base import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acme_accounts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("directory_url", sa.String(512), nullable=False),
        sa.Column("account_url", sa.String(1024), nullable=False),
        sa.Column("key_id", sa.String(36), nullable=False),
        sa.Column("contact", sa.String(255), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_acme_accounts"),
        sa.UniqueConstraint("directory_url", name="uq_acme_accounts_directory_url"),
        sa.ForeignKeyConstraint(["key_id"], ["keys.id"], name="fk_acme_accounts_key_id_keys"),
    )
    op.create_table(
        "ca_applications",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("certificate_id", sa.String(36), nullable=False),
        sa.Column("issuer", sa.String(64), nullable=True),
        sa.Column("csr_mode", sa.String(16), nullable=False),
        sa.Column("csr_pem", sa.Text(), nullable=False),
        sa.Column("order_url", sa.String(1024), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ca_applications"),
        sa.UniqueConstraint("certificate_id", name="uq_ca_applications_certificate_id"),
        sa.ForeignKeyConstraint(["certificate_id"], ["certificates.id"],
                                name="fk_ca_applications_certificate_id_certificates"),
    )
    op.create_table(
        "private_ca",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("root_pem", sa.Text(), nullable=False),
        sa.Column("root_key_id", sa.String(36), nullable=False),
        sa.Column("intermediate_pem", sa.Text(), nullable=False),
        sa.Column("intermediate_key_id", sa.String(36), nullable=False),
        sa.Column("crl_number", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_private_ca"),
        sa.UniqueConstraint("name", name="uq_private_ca_name"),
        sa.ForeignKeyConstraint(["root_key_id"], ["keys.id"], name="fk_private_ca_root_key_id_keys"),
        sa.ForeignKeyConstraint(["intermediate_key_id"], ["keys.id"],
                                name="fk_private_ca_intermediate_key_id_keys"),
    )
    op.create_table(
        "private_ca_issued",
        sa.Column("ref", sa.String(64), nullable=False),
        sa.Column("ca_id", sa.String(36), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("names", sa.JSON(), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=False),
        sa.Column("submitted_at", UtcDateTime(), nullable=False),
        sa.Column("ready_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("ref", name="pk_private_ca_issued"),
        sa.UniqueConstraint("serial", name="uq_private_ca_issued_serial"),
        sa.ForeignKeyConstraint(["ca_id"], ["private_ca.id"], name="fk_private_ca_issued_ca_id_private_ca"),
    )
    op.create_table(
        "private_ca_revocations",
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("ca_id", sa.String(36), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("serial", name="pk_private_ca_revocations"),
        sa.ForeignKeyConstraint(["ca_id"], ["private_ca.id"],
                                name="fk_private_ca_revocations_ca_id_private_ca"),
    )


def downgrade() -> None:
    for table in ("private_ca_revocations", "private_ca_issued", "private_ca", "ca_applications",
                  "acme_accounts"):
        op.drop_table(table)
