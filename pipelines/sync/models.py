"""Tables of the two-way engine: entity stamps, the review queue and the hash-chained audit log.

The link of an entity to each system, with its base snapshot, is the hub's ``record_links`` table
(``tongbu/hub/models.py``); what the CRM itself records of its own edits is ``hub_changes``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from tongbu.config import DEFAULT_TENANT
from tongbu.db import Base


class SyncEntity(Base):
    """The engine's view of one hub entity of a two-way pair: who set each field, and the hub's hash.

    ``hub_hash`` is the hash of the synced hub fields as the engine last left them; a hub row whose
    values hash differently was edited since (through the CRM API, or directly in the database by
    another application) and is merged in the next cycle.
    """

    __tablename__ = "sync_entities"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT, nullable=False)
    pair: Mapped[str] = mapped_column(String(64), nullable=False)
    object: Mapped[str] = mapped_column(String(32), nullable=False)
    hub_id: Mapped[int] = mapped_column(Integer, nullable=False)
    #: field -> [origin, ISO time or null, author or null]
    stamps: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    hub_hash: Mapped[str | None] = mapped_column(String(32))
    #: The synced hub fields (canonical form) as the engine last left them.
    hub_snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.current_timestamp(), nullable=False
    )
    __table_args__ = (UniqueConstraint("tenant_id", "pair", "hub_id"),)


class SyncConflict(Base):
    """A true conflict (or an ambiguous identity match) waiting for a person, and how it was decided."""

    __tablename__ = "sync_conflicts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT, nullable=False)
    pair: Mapped[str] = mapped_column(String(64), nullable=False)
    object: Mapped[str] = mapped_column(String(32), nullable=False)
    hub_id: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # field | identity
    field: Mapped[str | None] = mapped_column(String(64))
    base: Mapped[Any] = mapped_column(JSON, nullable=True)
    hub_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    hub_origin: Mapped[str | None] = mapped_column(String(32))
    hub_author: Mapped[str | None] = mapped_column(String(128))
    hub_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    system: Mapped[str] = mapped_column(String(32), nullable=False)
    external_id: Mapped[str | None] = mapped_column(String(128))
    system_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    system_author: Mapped[str | None] = mapped_column(String(128))
    system_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), default="open", nullable=False)
    #: "<hub_id>:<field>" while open, NULL once decided: one open conflict per field, enforced.
    open_key: Mapped[str | None] = mapped_column(String(128))
    resolution: Mapped[Any] = mapped_column(JSON, nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(128))
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.current_timestamp(), nullable=False
    )
    __table_args__ = (
        UniqueConstraint("tenant_id", "pair", "open_key"),
        Index("ix_sync_conflicts_status", "tenant_id", "pair", "status"),
    )


class SyncAudit(Base):
    """Append-only, hash-chained log of every change the engine applied or refused."""

    __tablename__ = "sync_audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT, nullable=False)
    pair: Mapped[str] = mapped_column(String(64), nullable=False)
    run_id: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    object: Mapped[str] = mapped_column(String(32), nullable=False)
    hub_id: Mapped[int | None] = mapped_column(Integer)
    system: Mapped[str] = mapped_column(String(32), nullable=False)
    kind: Mapped[str] = mapped_column(String(24), nullable=False)
    field: Mapped[str | None] = mapped_column(String(64))
    old: Mapped[Any] = mapped_column(JSON, nullable=True)
    new: Mapped[Any] = mapped_column(JSON, nullable=True)
    detail: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)
    __table_args__ = (Index("ix_sync_audit_entity", "tenant_id", "pair", "hub_id"),)
