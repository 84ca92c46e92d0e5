"""IoT devices: what devices report on ``devices``, service cases, daily usage, the message
ledger (applied once), the IoT quarantine and registration records

Revision ID: 0013_iot
Revises: 0012_tenders
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_iot"
down_revision = "0012_tenders"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_registrations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("serial_no", sa.String(length=64), nullable=False),
        sa.Column("account_ref", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column(
            "registered_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_registrations")),
        sa.UniqueConstraint(
            "tenant_id", "serial_no", name=op.f("uq_device_registrations_tenant_id_serial_no")
        ),
    )
    op.create_table(
        "device_usage_daily",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("device", sa.String(length=128), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("run_hours", sa.Numeric(precision=14, scale=3), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("faults", sa.Integer(), nullable=False),
        sa.Column("resets", sa.Integer(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_usage_daily")),
        sa.UniqueConstraint(
            "tenant_id",
            "source_system",
            "device",
            "day",
            name=op.f("uq_device_usage_daily_tenant_id_source_system_device_day"),
        ),
    )
    op.create_table(
        "iot_message_ledger",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("dedup_key", sa.String(length=200), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "dedup_key", name=op.f("pk_iot_message_ledger")),
    )
    with op.batch_alter_table("iot_message_ledger", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_iot_message_ledger_applied_at"), ["applied_at"], unique=False)

    op.create_table(
        "iot_quarantine",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("device", sa.String(length=128), nullable=True),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_iot_quarantine")),
    )
    with op.batch_alter_table("iot_quarantine", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_iot_quarantine_source_system"), ["source_system"], unique=False)

    op.create_table(
        "service_cases",
        sa.Column("title", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=True),
        sa.Column("device_ref", sa.String(length=128), nullable=True),
        sa.Column("serial_no", sa.String(length=64), nullable=True),
        sa.Column("account_ref", sa.String(length=128), nullable=True),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("fault", sa.String(length=64), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("occurrences", sa.Integer(), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("open_key", sa.String(length=255), nullable=True),
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=128), nullable=False),
        sa.Column("row_hash", sa.String(length=32), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.Column("source_modified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_cases")),
        sa.UniqueConstraint("open_key", name=op.f("uq_service_cases_open_key")),
        sa.UniqueConstraint(
            "tenant_id",
            "source_system",
            "source_id",
            name=op.f("uq_service_cases_tenant_id_source_system_source_id"),
        ),
    )
    with op.batch_alter_table("service_cases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_service_cases_account_ref"), ["account_ref"], unique=False)
        batch_op.create_index(batch_op.f("ix_service_cases_device_ref"), ["device_ref"], unique=False)
        batch_op.create_index(batch_op.f("ix_service_cases_status"), ["status"], unique=False)

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("firmware", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("online", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("location", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("platform", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("run_hours", sa.Numeric(precision=14, scale=3), nullable=True))
        batch_op.add_column(sa.Column("run_hours_raw", sa.Numeric(precision=14, scale=3), nullable=True))
        batch_op.add_column(sa.Column("run_hours_resets", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("last_ts_ms", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("counter_ts_ms", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("counter_ts_ms")
        batch_op.drop_column("last_ts_ms")
        batch_op.drop_column("run_hours_resets")
        batch_op.drop_column("run_hours_raw")
        batch_op.drop_column("run_hours")
        batch_op.drop_column("platform")
        batch_op.drop_column("location")
        batch_op.drop_column("online")
        batch_op.drop_column("firmware")

    with op.batch_alter_table("service_cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_cases_status"))
        batch_op.drop_index(batch_op.f("ix_service_cases_device_ref"))
        batch_op.drop_index(batch_op.f("ix_service_cases_account_ref"))

    op.drop_table("service_cases")
    with op.batch_alter_table("iot_quarantine", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_iot_quarantine_source_system"))

    op.drop_table("iot_quarantine")
    with op.batch_alter_table("iot_message_ledger", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_iot_message_ledger_applied_at"))

    op.drop_table("iot_message_ledger")
    op.drop_table("device_usage_daily")
    op.drop_table("device_registrations")
