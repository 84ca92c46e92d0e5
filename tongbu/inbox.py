"""The durable inbox of pushed events (``event_inbox``): its table and the queries other layers read.

Core, not part of ``tongbu serve``: a connector's rescan asks :func:`applied_since` which records the
event path changed while it scanned, and its Dagster checks read the backlog.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    select,
)

from tongbu.db import Base

# Owned by migration 0004_event_inbox (on the shared metadata, so Alembic sees it); it holds only
# transient delivery state, never business data.
event_inbox = Table(
    "event_inbox",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("source", String(64), nullable=False),  # the connection name, e.g. "wecom"
    Column("dedup_key", String(64), nullable=False),
    Column("record_key", String(160), nullable=False),
    Column("kind", String(96), nullable=False),
    Column("payload", JSON),
    Column("received_at", Float, nullable=False),  # epoch seconds, sub-second precision
    Column("status", String(16), nullable=False),  # pending | applied | quarantined | ignored | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("applied_at", Float),
    Column("error", Text),
    UniqueConstraint("tenant_id", "source", "dedup_key", name="uq_event_inbox_dedup"),
    Index("ix_event_inbox_status", "status", "received_at"),
    Index("ix_event_inbox_record", "source", "record_key", "applied_at"),
)
DONE_STATUSES = ("applied", "quarantined", "ignored")


def ensure_inbox(engine: Engine) -> None:
    """Create the inbox table if it is missing."""
    event_inbox.create(engine, checkfirst=True)  # normally already there: get_engine() migrates


def applied_since(
    conn: Connection, *, tenant: str, source: str, record_keys: Sequence[str], since: float
) -> set[str]:
    """Which ``record_keys`` the event path applied at or after ``since`` (epoch seconds).

    A full rescan asks this so it neither overwrites nor deletes what a callback changed while it was
    scanning. Returns an empty set when the inbox does not exist (no event path in this deployment).
    """
    if not record_keys or not inspect(conn).has_table("event_inbox"):
        return set()
    found: set[str] = set()
    for start in range(0, len(record_keys), 500):
        chunk = list(record_keys[start : start + 500])
        found.update(
            conn.execute(
                select(event_inbox.c.record_key).where(
                    event_inbox.c.tenant_id == tenant,
                    event_inbox.c.source == source,
                    event_inbox.c.record_key.in_(chunk),
                    event_inbox.c.applied_at >= since,
                )
            ).scalars()
        )
    return found
