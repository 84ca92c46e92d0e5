"""Tables the IoT connector keeps beside the hub objects (``devices``, ``service_cases``): migration 0013_iot.

* ``device_usage_daily`` — per device and day (+08:00): running hours added, messages, faults;
* ``iot_message_ledger`` — the id of every message applied, so a redelivered one is applied once;
* ``iot_quarantine`` — messages that could not be applied, with the reason (timestamps in the future
  or before 2000, bad JSON, wrong types), for review;
* ``device_registrations`` — serial -> account from a registration record (warranty card, installer
  app), the second way a device finds its account besides the ERP's sales order lines.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import DateTime, Integer, Numeric, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from tongbu.config import DEFAULT_TENANT
from tongbu.db import Base


class DeviceUsageDaily(Base):
    """日用量: one device's usage on one day (China time)."""

    __tablename__ = "device_usage_daily"
    __table_args__ = (UniqueConstraint("tenant_id", "source_system", "device", "day"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT, nullable=False)
    source_system: Mapped[str] = mapped_column(String(32), nullable=False)
    device: Mapped[str] = mapped_column(String(128), nullable=False)
    day: Mapped[str] = mapped_column(String(10), nullable=False)  # YYYY-MM-DD, +08:00
    run_hours: Mapped[Decimal] = mapped_column(Numeric(14, 3), nullable=False, default=0)
    messages: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    faults: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    resets: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.current_timestamp(), nullable=False
    )


class IotMessageLedger(Base):
    """Ids of applied messages (per tenant); old entries are pruned after ``ledger_days``."""

    __tablename__ = "iot_message_ledger"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    applied_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)


class IotQuarantine(Base):
    """A device message that was not applied, with the reason and (the start of) its payload."""

    __tablename__ = "iot_quarantine"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT, nullable=False)
    source_system: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    device: Mapped[str | None] = mapped_column(String(128))
    topic: Mapped[str] = mapped_column(String(255), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    payload: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="open")
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class DeviceRegistration(Base):
    """A registration record: this serial number belongs to this account."""

    __tablename__ = "device_registrations"
    __table_args__ = (UniqueConstraint("tenant_id", "serial_no"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT, nullable=False)
    serial_no: Mapped[str] = mapped_column(String(64), nullable=False)
    account_ref: Mapped[str] = mapped_column(String(128), nullable=False)
    source: Mapped[str | None] = mapped_column(String(64))
    registered_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.current_timestamp(), nullable=False
    )
