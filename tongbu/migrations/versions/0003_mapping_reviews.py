"""mapping reviews: accept / reject decisions on suggested field mappings

Revision ID: 0003_mapping_reviews
Revises: 0001_foundation
Create Date: 2026-11-23 06:00:00

Hand-written to match ``mappings/suggest/store.py`` (a test compares the two).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_mapping_reviews"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mapping_reviews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source_system", sa.String(length=128), nullable=False),
        sa.Column("source_object", sa.String(length=255), nullable=False),
        sa.Column("target_system", sa.String(length=128), nullable=False),
        sa.Column("target_object", sa.String(length=255), nullable=False),
        sa.Column("source_field", sa.String(length=512), nullable=False),
        sa.Column("target_field", sa.String(length=512), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("probability", sa.Float(), nullable=True),
        sa.Column("features", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(length=128), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mapping_file", sa.String(length=1024), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mapping_reviews")),
    )
    op.create_index(
        "ix_mapping_reviews_pair", "mapping_reviews", ["source_system", "target_system"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_mapping_reviews_pair", table_name="mapping_reviews")
    op.drop_table("mapping_reviews")
