"""lead-to-cash: a CRM sales order carries its lines and the ERP's bill number and status;
a link remembers an update in flight

Revision ID: 0007_sales_order_erp
Revises: 0006_sync_engine
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_sales_order_erp"
down_revision = "0006_sync_engine"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sales_orders") as batch:
        # The ERP's own number and document status (Kingdee FBillNo / FDocumentStatus), written
        # back to the CRM order it was created from; owned by the ERP in a two-way sync.
        batch.add_column(sa.Column("erp_number", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("erp_status", sa.String(length=32), nullable=True))
        # The order's lines as the two-way engine syncs them (one value per order, with each line's
        # ERP entry id once known); sales_order_lines stays the one-way, per-line reporting copy.
        batch.add_column(sa.Column("lines", sa.JSON(), nullable=True))
        batch.create_index("ix_sales_orders_erp_number", ["erp_number"], unique=False)
    with op.batch_alter_table("record_links") as batch:
        # The values of an update decided but not yet known to be applied in that system.
        batch.add_column(sa.Column("pending", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("record_links") as batch:
        batch.drop_column("pending")
    with op.batch_alter_table("sales_orders") as batch:
        batch.drop_index("ix_sales_orders_erp_number")
        batch.drop_column("lines")
        batch.drop_column("erp_status")
        batch.drop_column("erp_number")
