"""tender feeds: the local notice history with a Chinese full-text index, subscriptions, alerts

Revision ID: 0012_tenders
Revises: 0011_prod_history
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_tenders"
down_revision = "0011_prod_history"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tender_notices",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("notice_id", sa.BigInteger(), nullable=False),
        sa.Column("project_no", sa.String(64)),
        sa.Column("notice_type", sa.String(32)),
        sa.Column("kind", sa.String(16)),
        sa.Column("title", sa.String(512)),
        sa.Column("url", sa.String(512)),
        sa.Column("region", sa.String(16)),
        sa.Column("zone_id", sa.String(8)),
        sa.Column("category", sa.String(128)),
        sa.Column("buyer", sa.String(255)),
        sa.Column("buyer_key", sa.String(255)),
        sa.Column("buyer_credit_code", sa.String(18)),
        sa.Column("budget", sa.Numeric(18, 2)),
        sa.Column("publish_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("summary", sa.Text()),
        sa.Column("content", sa.Text()),
        sa.Column("record", sa.Text(), nullable=False),  # compact JSON (connectors/tender/models.py)
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "notice_id", name="uq_tender_notices_notice"),
    )
    op.create_index("ix_tender_notices_time", "tender_notices", ["tenant_id", "publish_time"])
    op.create_index(
        "ix_tender_notices_region_time", "tender_notices", ["tenant_id", "region", "publish_time"]
    )
    op.create_index("ix_tender_notices_project", "tender_notices", ["tenant_id", "project_no"])
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # External-content FTS5 over the jieba-segmented text (unicode61 splits on the spaces the
        # segmenter put in); triggers keep it in step with the table.
        op.execute(
            "CREATE VIRTUAL TABLE tender_notices_fts USING fts5("
            "search_text, content='tender_notices', content_rowid='id', tokenize='unicode61')"
        )
        op.execute(
            "CREATE TRIGGER tender_notices_ai AFTER INSERT ON tender_notices BEGIN "
            "INSERT INTO tender_notices_fts(rowid, search_text) VALUES (new.id, new.search_text); END"
        )
        op.execute(
            "CREATE TRIGGER tender_notices_ad AFTER DELETE ON tender_notices BEGIN "
            "INSERT INTO tender_notices_fts(tender_notices_fts, rowid, search_text) "
            "VALUES ('delete', old.id, old.search_text); END"
        )
        op.execute(
            "CREATE TRIGGER tender_notices_au AFTER UPDATE OF search_text ON tender_notices BEGIN "
            "INSERT INTO tender_notices_fts(tender_notices_fts, rowid, search_text) "
            "VALUES ('delete', old.id, old.search_text); "
            "INSERT INTO tender_notices_fts(rowid, search_text) VALUES (new.id, new.search_text); END"
        )
    elif bind.dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX ix_tender_notices_fts ON tender_notices "
            "USING gin (to_tsvector('simple', search_text))"
        )
    op.create_table(
        "tender_subscriptions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("subscriber", sa.String(128), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "name", name="uq_tender_subscriptions_name"),
    )
    op.create_table(
        "tender_alerts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.BigInteger(), nullable=False),
        sa.Column("matched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("error", sa.String(255)),
        sa.UniqueConstraint("tenant_id", "subscription_id", "notice_id", name="uq_tender_alerts_pair"),
    )
    op.create_index("ix_tender_alerts_pending", "tender_alerts", ["tenant_id", "sent_at"])


def downgrade() -> None:
    op.drop_table("tender_alerts")
    op.drop_table("tender_subscriptions")
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for trigger in ("tender_notices_ai", "tender_notices_ad", "tender_notices_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS tender_notices_fts")
    op.drop_table("tender_notices")
