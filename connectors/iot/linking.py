"""Device ↔ account: which customer owns a device, by its serial number.

Two sources, in this order:

1. a **registration record** (``device_registrations``: warranty card, installer app, a CSV loaded
   with ``tongbu iot register``);
2. the **ERP's sales order lines**: a hub ``sales_order_lines`` row whose ``extra.serial_numbers``
   (a list, or a comma/semicolon/whitespace-separated string; ``extra.serial_no`` for one) names the
   serial; the account is the order's ``account_ref``. Kingdee carries the serials a line shipped in
   its 序列号 sub-entry (or the MTO number ``FMtoNo``); the mapping puts them into
   ``extra.serial_numbers``.

Devices no source links are *unlinked*: :func:`unlinked_devices` lists them for review (the Dagster
check ``unlinked_devices`` and ``tongbu iot unlinked``). :func:`silent_devices` / :func:`mark_silent`
are the other review: devices not heard from for a configured time.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update

from connectors.iot.models import DeviceRegistration
from tongbu.hub.models import Device, SalesOrder, SalesOrderLine

_SPLIT = re.compile(r"[,;\s，；]+")
#: how long the serial -> account index built from order lines is reused (seconds)
ORDER_INDEX_TTL_S = 60.0
_cache_lock = threading.Lock()
_order_index: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}


def serials_of(extra: Any) -> list[str]:
    """The serial numbers an order line's ``extra`` names."""
    if not isinstance(extra, dict):
        return []
    found: list[str] = []
    for key in ("serial_numbers", "serial_no", "serials"):
        value = extra.get(key)
        if isinstance(value, str):
            found += [s for s in _SPLIT.split(value) if s]
        elif isinstance(value, list):
            found += [str(s).strip() for s in value if str(s).strip()]
    return found


def _order_serials(conn: Connection, tenant: str) -> dict[str, str]:
    """Serial -> account_ref from every order line that names serials (cached for a minute)."""
    key = (str(conn.engine.url), tenant)
    with _cache_lock:
        hit = _order_index.get(key)
        if hit and time.monotonic() - hit[0] < ORDER_INDEX_TTL_S:
            return hit[1]
    lines, orders = SalesOrderLine.__table__, SalesOrder.__table__
    q = (
        select(lines.c.extra, orders.c.account_ref)
        .join(
            orders,
            (orders.c.source_id == lines.c.order_source_id) & (orders.c.tenant_id == lines.c.tenant_id),
        )
        .where(lines.c.tenant_id == tenant, lines.c.extra.is_not(None), lines.c.deleted_at.is_(None))
    )
    index: dict[str, str] = {}
    for extra, account in conn.execute(q):
        if account:
            for serial in serials_of(extra):
                index[serial] = account
    with _cache_lock:
        _order_index[key] = (time.monotonic(), index)
    return index


def forget_order_index() -> None:
    """Drop the cached index (after an ERP sync, or in tests)."""
    with _cache_lock:
        _order_index.clear()


def accounts_for_serials(conn: Connection, tenant: str, serials: list[str]) -> dict[str, str]:
    """Serial -> account source id, for the serials any source links."""
    regs = DeviceRegistration.__table__
    out: dict[str, str] = {}
    for i in range(0, len(serials), 500):
        q = select(regs.c.serial_no, regs.c.account_ref).where(
            regs.c.tenant_id == tenant, regs.c.serial_no.in_(serials[i : i + 500])
        )
        out.update({s: a for s, a in conn.execute(q)})
    missing = [s for s in serials if s not in out]
    if missing:
        index = _order_serials(conn, tenant)
        out.update({s: index[s] for s in missing if s in index})
    return out


def link_devices(conn: Connection, tenant: str, source_system: str | None = None) -> int:
    """Fill ``account_ref`` of every unlinked device a source now links; returns how many changed."""
    devices = Device.__table__
    q = select(devices.c.id, devices.c.serial_no, devices.c.source_id).where(
        devices.c.tenant_id == tenant, devices.c.account_ref.is_(None), devices.c.deleted_at.is_(None)
    )
    if source_system:
        q = q.where(devices.c.source_system == source_system)
    rows = conn.execute(q).all()
    found = accounts_for_serials(conn, tenant, sorted({r.serial_no or r.source_id for r in rows}))
    changed = 0
    for r in rows:
        account = found.get(r.serial_no or r.source_id)
        if account:
            conn.execute(devices.update().where(devices.c.id == r.id).values(account_ref=account))
            changed += 1
    return changed


def unlinked_devices(conn: Connection, tenant: str, source_system: str | None = None) -> list[dict[str, Any]]:
    """Devices no account owns (for review), oldest-seen first."""
    devices = Device.__table__
    q = (
        select(devices.c.source_system, devices.c.source_id, devices.c.serial_no, devices.c.model,
               devices.c.product_code, devices.c.last_seen_at)
        .where(devices.c.tenant_id == tenant, devices.c.account_ref.is_(None), devices.c.deleted_at.is_(None))
        .order_by(devices.c.last_seen_at)
    )  # fmt: skip
    if source_system:
        q = q.where(devices.c.source_system == source_system)
    return [dict(m) for m in conn.execute(q).mappings()]


def silent_devices(engine: Engine, tenant: str, connection: str, after_s: float) -> list[dict[str, Any]]:
    """Devices of ``connection`` whose last message is older than ``after_s`` seconds."""
    import datetime as dt

    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=after_s)
    t = Device.__table__
    with engine.connect() as conn:
        q = select(t.c.source_id, t.c.serial_no, t.c.account_ref, t.c.last_seen_at).where(
            t.c.tenant_id == tenant, t.c.source_system == connection, t.c.deleted_at.is_(None),
            (t.c.last_seen_at < cutoff) | t.c.last_seen_at.is_(None),
        )  # fmt: skip
        return [dict(m) for m in conn.execute(q.order_by(t.c.last_seen_at)).mappings()]


def mark_silent(engine: Engine, tenant: str, connection: str, after_s: float) -> int:
    """Set ``online`` false on the silent devices of ``connection``."""
    silent = [d["source_id"] for d in silent_devices(engine, tenant, connection, after_s)]
    t = Device.__table__
    with engine.begin() as conn:
        n = 0
        for i in range(0, len(silent), 500):
            n += conn.execute(
                update(t)
                .where(t.c.tenant_id == tenant, t.c.source_system == connection,
                       t.c.source_id.in_(silent[i : i + 500]), t.c.online.is_not(False))
                .values(online=False, status="offline", updated_at=func.current_timestamp())
            ).rowcount or 0  # fmt: skip
    return n
