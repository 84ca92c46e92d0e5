"""The tender feature's own tables (migration ``0012_tenders``), as SQLAlchemy Core tables.

* ``tender_notices`` — the local history every read adds to (one row per notice and tenant): the
  filter columns, ``title``/``summary``/``content`` as text, the rest of the record as JSON, and
  ``search_text``: title, summary and 正文 pre-segmented by jieba, which the full-text index covers
  (SQLite: the FTS5 table ``tender_notices_fts``; PostgreSQL: a GIN index on
  ``to_tsvector('simple', search_text)``);
* ``tender_subscriptions`` — saved searches per tenant and subscriber;
* ``tender_alerts`` — one row per (subscription, notice) that matched: the alert to send, and
  whether it went out (the notifier's ledger makes a delivery happen once per recipient).
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from tongbu.db import Base


class CompactJSON(sa.types.TypeDecorator[Any]):
    """JSON stored as UTF-8 text (no ``\\uXXXX`` escapes: Chinese text takes a third of the room)."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return None if value is None else json.loads(value)


metadata = Base.metadata

notices = sa.Table(
    "tender_notices",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("notice_id", sa.BigInteger, nullable=False),
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
    sa.Column("summary", sa.Text),
    sa.Column("content", sa.Text),
    # the rest of the record (everything but ``content``)
    sa.Column("record", CompactJSON, nullable=False),
    sa.Column("search_text", sa.Text, nullable=False),
    sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("tenant_id", "notice_id", name="uq_tender_notices_notice"),
    sa.Index("ix_tender_notices_time", "tenant_id", "publish_time"),
    sa.Index("ix_tender_notices_region_time", "tenant_id", "region", "publish_time"),
    sa.Index("ix_tender_notices_project", "tenant_id", "project_no"),
)

subscriptions = sa.Table(
    "tender_subscriptions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("subscriber", sa.String(128), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("channels", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("tenant_id", "name", name="uq_tender_subscriptions_name"),
)

alerts = sa.Table(
    "tender_alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("subscription_id", sa.Integer, nullable=False),
    sa.Column("notice_id", sa.BigInteger, nullable=False),
    sa.Column("matched_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Column("error", sa.String(255)),
    sa.UniqueConstraint("tenant_id", "subscription_id", "notice_id", name="uq_tender_alerts_pair"),
    sa.Index("ix_tender_alerts_pending", "tenant_id", "sent_at"),
)
