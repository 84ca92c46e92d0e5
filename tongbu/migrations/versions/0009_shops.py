"""shops: a contact has an address; a sales order names its buyer, channel and shop; a line its product; buyer identity links
and the identity review queue

Revision ID: 0009_shops
Revises: 0008_notifications
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_shops"
down_revision = "0008_notifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("address", sa.String(length=255), nullable=True))
    with op.batch_alter_table("sales_orders") as batch:
        # A shop order's buyer (the contact's source id), channel (shopify, youzan) and shop name.
        batch.add_column(sa.Column("contact_ref", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("channel", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("shop", sa.String(length=128), nullable=True))
        batch.create_index("ix_sales_orders_contact_ref", ["contact_ref"], unique=False)
    with op.batch_alter_table("sales_order_lines") as batch:
        batch.add_column(sa.Column("product_ref", sa.String(length=128), nullable=True))
        batch.create_index("ix_sales_order_lines_product_ref", ["product_ref"], unique=False)
    op.create_table(
        "buyer_links",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=128), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("score", sa.Numeric(5, 3), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "source_system", "source_id", name="uq_buyer_links_buyer"),
    )
    op.create_index("ix_buyer_links_contact_id", "buyer_links", ["contact_id"], unique=False)
    op.create_table(
        "identity_reviews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("candidates", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_contact_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "source_system", "source_id", name="uq_identity_reviews_buyer"),
    )
    op.create_index("ix_identity_reviews_status", "identity_reviews", ["tenant_id", "status"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_identity_reviews_status", table_name="identity_reviews")
    op.drop_table("identity_reviews")
    op.drop_index("ix_buyer_links_contact_id", table_name="buyer_links")
    op.drop_table("buyer_links")
    with op.batch_alter_table("sales_order_lines") as batch:
        batch.drop_index("ix_sales_order_lines_product_ref")
        batch.drop_column("product_ref")
    with op.batch_alter_table("sales_orders") as batch:
        batch.drop_index("ix_sales_orders_contact_ref")
        batch.drop_column("shop")
        batch.drop_column("channel")
        batch.drop_column("contact_ref")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("address")
