"""vault: encrypted secrets, wrapped data keys, manifest, token cache, audit, rotation progress

Revision ID: 0002_vault
Revises: 0001_foundation
Create Date: 2026-11-23 05:00:00

Hand-written to match ``tongbu/vault/models.py`` exactly (the vault test suite compares the two).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_vault"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vault_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("vault_id", sa.String(length=32), nullable=False),
        sa.Column("format_version", sa.Integer(), nullable=False),
        sa.Column("current_key_version", sa.Integer(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("manifest_key_version", sa.Integer(), nullable=False),
        sa.Column("manifest_body", sa.Text(), nullable=False),
        sa.Column("manifest_mac", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_state")),
    )
    op.create_table(
        "vault_master_keys",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("check_value", sa.LargeBinary(), nullable=False),
        sa.Column("kdf_params", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_vault_master_keys")),
    )
    op.create_table(
        "vault_data_keys",
        sa.Column("key_version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("wrapped_by", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_version", "wrapped_by", name=op.f("pk_vault_data_keys")),
    )
    op.create_table(
        "vault_secrets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("connection", sa.String(length=100), nullable=False),
        sa.Column("field", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_secrets")),
        sa.UniqueConstraint(
            "tenant", "connection", "field", name=op.f("uq_vault_secrets_tenant_connection_field")
        ),
    )
    op.create_index("ix_vault_secrets_key_version", "vault_secrets", ["key_version"], unique=False)
    op.create_table(
        "vault_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("connection", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_version", sa.Integer(), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=True),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("issued_at", sa.Float(), nullable=True),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("refresh_at", sa.Float(), nullable=True),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.Column("refresh_in_flight", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_tokens")),
        sa.UniqueConstraint(
            "tenant", "connection", "name", name=op.f("uq_vault_tokens_tenant_connection_name")
        ),
    )
    op.create_table(
        "vault_audit",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=True),
        sa.Column("connection", sa.String(length=100), nullable=True),
        sa.Column("field", sa.String(length=200), nullable=True),
        sa.Column("key_version", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=60), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_audit")),
    )
    op.create_index("ix_vault_audit_at", "vault_audit", ["at"], unique=False)
    op.create_index("ix_vault_audit_secret", "vault_audit", ["tenant", "connection", "field"], unique=False)
    op.create_table(
        "vault_rotations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=False),
        sa.Column("to_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_rotations")),
    )


def downgrade() -> None:
    op.drop_table("vault_rotations")
    op.drop_index("ix_vault_audit_secret", table_name="vault_audit")
    op.drop_index("ix_vault_audit_at", table_name="vault_audit")
    op.drop_table("vault_audit")
    op.drop_table("vault_tokens")
    op.drop_index("ix_vault_secrets_key_version", table_name="vault_secrets")
    op.drop_table("vault_secrets")
    op.drop_table("vault_data_keys")
    op.drop_table("vault_master_keys")
    op.drop_table("vault_state")
