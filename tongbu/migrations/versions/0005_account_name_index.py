"""drop the accounts.name index (no query uses it; it doubled the write cost of renamed accounts)

Revision ID: 0005_account_name_index
Revises: 0004_event_inbox
"""

from __future__ import annotations

from alembic import op

revision = "0005_account_name_index"
down_revision = "0004_event_inbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain DROP INDEX on both SQLite and PostgreSQL: no table rebuild, instant on a large hub.
    op.drop_index("ix_accounts_name", table_name="accounts")


def downgrade() -> None:
    op.create_index("ix_accounts_name", "accounts", ["name"], unique=False)
