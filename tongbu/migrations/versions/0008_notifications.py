"""alert delivery ledger (each alert once per recipient, across restarts)

Revision ID: 0008_notifications
Revises: 0007_sales_order_erp
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_notifications"
down_revision = "0007_sales_order_erp"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notification_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("alert_key", sa.String(length=255), nullable=False),
        sa.Column("recipient", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("claimed_at", sa.Float(), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_deliveries")),
        sa.UniqueConstraint(
            "tenant_id", "channel", "alert_key", "recipient", name="uq_notification_delivery"
        ),
    )
    op.create_index(
        "ix_notification_deliveries_status", "notification_deliveries", ["tenant_id", "status"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_notification_deliveries_status", table_name="notification_deliveries")
    op.drop_table("notification_deliveries")
