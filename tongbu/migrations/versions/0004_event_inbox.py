"""event inbox of the real-time path; merges the vault and mapping-review branches

Revision ID: 0004_event_inbox
Revises: 0002_vault, 0003_mapping_reviews
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_event_inbox"
down_revision = ("0002_vault", "0003_mapping_reviews")
branch_labels = None
depends_on = None


def upgrade() -> None:
    # `tongbu serve` created this table itself before it had a migration: keep such databases working.
    if sa.inspect(op.get_bind()).has_table("event_inbox"):
        return
    op.create_table(
        "event_inbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("dedup_key", sa.String(length=64), nullable=False),
        sa.Column("record_key", sa.String(length=160), nullable=False),
        sa.Column("kind", sa.String(length=96), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("applied_at", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_inbox")),
        sa.UniqueConstraint("tenant_id", "source", "dedup_key", name="uq_event_inbox_dedup"),
    )
    op.create_index("ix_event_inbox_status", "event_inbox", ["status", "received_at"], unique=False)
    op.create_index(
        "ix_event_inbox_record", "event_inbox", ["source", "record_key", "applied_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_event_inbox_record", table_name="event_inbox")
    op.drop_index("ix_event_inbox_status", table_name="event_inbox")
    op.drop_table("event_inbox")
