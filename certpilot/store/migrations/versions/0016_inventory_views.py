"""Inventory views at scale: `certpilot list` filters and sorts in SQL (issue 16).

- ``ix_certificates_not_after_id`` (not_after, id): the list's order (soonest expiry first, then
  id) read straight from the index, and the date ranges LC-4 statuses map to;
- ``ix_certificates_state_not_after`` (state, not_after): a stored-state filter with its order.

Revision ID: 0016
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_certificates_not_after_id", "certificates", ["not_after", "id"])
    op.create_index("ix_certificates_state_not_after", "certificates", ["state", "not_after"])


def downgrade() -> None:
    op.drop_index("ix_certificates_state_not_after", table_name="certificates")
    op.drop_index("ix_certificates_not_after_id", table_name="certificates")
