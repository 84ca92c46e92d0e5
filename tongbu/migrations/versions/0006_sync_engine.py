"""two-way engine: link states and intents, CRM change history, entity stamps, review queue, audit

Revision ID: 0006_sync_engine
Revises: 0005_account_name_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_sync_engine"
down_revision = "0005_account_name_index"
branch_labels = None
depends_on = None

_TENANT = sa.Column("tenant_id", sa.String(length=64), nullable=False)


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("credit_limit", sa.Numeric(18, 2), nullable=True))
        batch.add_column(sa.Column("receivable_balance", sa.Numeric(18, 2), nullable=True))
    with op.batch_alter_table("record_links") as batch:
        batch.add_column(sa.Column("state", sa.String(length=16), server_default="linked", nullable=False))
        batch.add_column(sa.Column("intent_key", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("source_modified_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_unique_constraint(
            "uq_record_links_tenant_id_object_system_hub_id", ["tenant_id", "object", "system", "hub_id"]
        )
    op.create_table(
        "hub_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _TENANT.copy(),
        sa.Column("object", sa.String(length=32), nullable=False),
        sa.Column("hub_id", sa.Integer(), nullable=False),
        sa.Column("op", sa.String(length=8), nullable=False),
        sa.Column("values", sa.JSON(), nullable=True),
        sa.Column("author", sa.String(length=128), nullable=False),
        sa.Column("origin", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hub_changes")),
    )
    op.create_index("ix_hub_changes_entity", "hub_changes", ["tenant_id", "object", "hub_id", "id"])
    op.create_table(
        "sync_entities",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _TENANT.copy(),
        sa.Column("pair", sa.String(length=64), nullable=False),
        sa.Column("object", sa.String(length=32), nullable=False),
        sa.Column("hub_id", sa.Integer(), nullable=False),
        sa.Column("stamps", sa.JSON(), nullable=True),
        sa.Column("hub_hash", sa.String(length=32), nullable=True),
        sa.Column("hub_snapshot", sa.JSON(), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_entities")),
        sa.UniqueConstraint(
            "tenant_id", "pair", "hub_id", name=op.f("uq_sync_entities_tenant_id_pair_hub_id")
        ),
    )
    op.create_table(
        "sync_conflicts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _TENANT.copy(),
        sa.Column("pair", sa.String(length=64), nullable=False),
        sa.Column("object", sa.String(length=32), nullable=False),
        sa.Column("hub_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=True),
        sa.Column("base", sa.JSON(), nullable=True),
        sa.Column("hub_value", sa.JSON(), nullable=True),
        sa.Column("hub_origin", sa.String(length=32), nullable=True),
        sa.Column("hub_author", sa.String(length=128), nullable=True),
        sa.Column("hub_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("system", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=True),
        sa.Column("system_value", sa.JSON(), nullable=True),
        sa.Column("system_author", sa.String(length=128), nullable=True),
        sa.Column("system_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("open_key", sa.String(length=128), nullable=True),
        sa.Column("resolution", sa.JSON(), nullable=True),
        sa.Column("resolved_by", sa.String(length=128), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_conflicts")),
        sa.UniqueConstraint(
            "tenant_id", "pair", "open_key", name=op.f("uq_sync_conflicts_tenant_id_pair_open_key")
        ),
    )
    op.create_index("ix_sync_conflicts_status", "sync_conflicts", ["tenant_id", "pair", "status"])
    op.create_table(
        "sync_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _TENANT.copy(),
        sa.Column("pair", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("object", sa.String(length=32), nullable=False),
        sa.Column("hub_id", sa.Integer(), nullable=True),
        sa.Column("system", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=True),
        sa.Column("old", sa.JSON(), nullable=True),
        sa.Column("new", sa.JSON(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_audit")),
    )
    op.create_index("ix_sync_audit_entity", "sync_audit", ["tenant_id", "pair", "hub_id"])


def downgrade() -> None:
    op.drop_index("ix_sync_audit_entity", table_name="sync_audit")
    op.drop_table("sync_audit")
    op.drop_index("ix_sync_conflicts_status", table_name="sync_conflicts")
    op.drop_table("sync_conflicts")
    op.drop_table("sync_entities")
    op.drop_index("ix_hub_changes_entity", table_name="hub_changes")
    op.drop_table("hub_changes")
    with op.batch_alter_table("record_links") as batch:
        batch.drop_constraint("uq_record_links_tenant_id_object_system_hub_id", type_="unique")
        batch.drop_column("source_modified_at")
        batch.drop_column("intent_key")
        batch.drop_column("state")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("receivable_balance")
        batch.drop_column("credit_limit")
