"""The table of the historical migration: one report row per backfilled time-window partition."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from tongbu.config import DEFAULT_TENANT
from tongbu.db import Base


class HistoryPartition(Base):
    """What backfilling one partition (a time window of the source's modification time) did."""

    __tablename__ = "history_partitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT, nullable=False)
    pipeline: Mapped[str] = mapped_column(String(128), nullable=False)
    partition_key: Mapped[str] = mapped_column(String(64), nullable=False)
    window_start: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    window_end: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    #: verified | mismatch | failed
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    source_rows: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    rows_read: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    rows_written: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    rows_unchanged: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    rows_quarantined: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    rows_cleaned: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    hub_rows: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    sampled: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    sample_mismatches: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    finished_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.current_timestamp(), nullable=False
    )
    __table_args__ = (
        UniqueConstraint("tenant_id", "pipeline", "partition_key", name="uq_history_partition"),
    )
