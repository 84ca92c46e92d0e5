"""The delivery ledger of alerts: one row per (tenant, channel, key, recipient).

It is what makes an alert go out once across restarts and processes: a delivery is *claimed*
(``sending``) in its own transaction before the channel is called and marked ``sent`` after, so a
second process, or the same one after a restart, skips it. Owned by migration ``0008_notifications``.
A claim left ``sending`` by a process that died mid-send is taken over after :data:`CLAIM_TIMEOUT_S`
(the alert may then go out twice; WeCom app messages are also deduplicated by WeCom itself).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from tongbu.db import Base

CLAIM_TIMEOUT_S = 120.0
MAX_ERROR_CHARS = 500

notification_deliveries = Table(
    "notification_deliveries",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("channel", String(64), nullable=False),
    Column("alert_key", String(255), nullable=False),
    Column("recipient", String(255), nullable=False),  # "*" for channels that post to one place
    Column("status", String(16), nullable=False),  # sending | sent | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("subject", Text),
    Column("last_error", Text),
    Column("claimed_at", Float, nullable=False),
    Column("sent_at", Float),
    UniqueConstraint("tenant_id", "channel", "alert_key", "recipient", name="uq_notification_delivery"),
    Index("ix_notification_deliveries_status", "tenant_id", "status"),
)


@dataclass(frozen=True)
class Delivery:
    """What happened to one recipient of one alert in this call."""

    channel: str
    key: str
    recipient: str
    status: str  # sent | already_sent | in_progress | failed
    error: str | None = None


class DeliveryLedger:
    """Claims and records deliveries for one tenant."""

    def __init__(self, engine: Engine, tenant: str) -> None:
        self.engine = engine
        self.tenant = tenant

    def claim(self, channel: str, key: str, recipient: str, subject: str) -> str:
        """``claimed`` (go ahead and send), ``already_sent`` or ``in_progress`` (another sender has it)."""
        t = notification_deliveries
        now = time.time()
        where = (
            t.c.tenant_id == self.tenant,
            t.c.channel == channel,
            t.c.alert_key == key,
            t.c.recipient == recipient,
        )
        with self.engine.begin() as conn:
            row = conn.execute(select(t.c.status, t.c.claimed_at).where(*where)).first()
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            t.insert().values(
                                tenant_id=self.tenant,
                                channel=channel,
                                alert_key=key,
                                recipient=recipient,
                                status="sending",
                                attempts=1,
                                subject=subject[:500],
                                claimed_at=now,
                            )
                        )
                except IntegrityError:  # another sender inserted it first
                    return "in_progress"
                return "claimed"
            if row.status == "sent":
                return "already_sent"
            if row.status == "sending" and now - float(row.claimed_at) < CLAIM_TIMEOUT_S:
                return "in_progress"
            # failed, or a stale claim: take it over only if nobody else did in between
            taken = conn.execute(
                update(t)
                .where(*where, t.c.status == row.status, t.c.claimed_at == row.claimed_at)
                .values(status="sending", claimed_at=now, attempts=t.c.attempts + 1)
            ).rowcount
            return "claimed" if taken else "in_progress"

    def finish(self, channel: str, key: str, recipient: str, *, error: str | None = None) -> None:
        """Record the outcome of a claimed delivery."""
        t = notification_deliveries
        values = (
            {"status": "sent", "sent_at": time.time(), "last_error": None}
            if error is None
            else {"status": "failed", "last_error": error[:MAX_ERROR_CHARS]}
        )
        with self.engine.begin() as conn:
            conn.execute(
                update(t)
                .where(
                    t.c.tenant_id == self.tenant,
                    t.c.channel == channel,
                    t.c.alert_key == key,
                    t.c.recipient == recipient,
                )
                .values(**values)
            )

    def failed(self, channel: str | None = None) -> list[dict[str, object]]:
        """Deliveries whose last attempt failed (oldest first)."""
        t = notification_deliveries
        q = select(t).where(t.c.tenant_id == self.tenant, t.c.status == "failed").order_by(t.c.id)
        if channel:
            q = q.where(t.c.channel == channel)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]
