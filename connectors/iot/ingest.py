"""Apply a batch of device readings to the hub in one transaction: devices, daily usage, service cases.

:meth:`IotWriter.write` runs inside the caller's transaction (the MQTT consumer commits it, then
acknowledges the messages; the HTTP push path runs it inside ``tongbu serve``'s). What it guarantees:

* **applied once** — every reading's ``dedup_key`` goes into ``iot_message_ledger`` in the same
  transaction (``INSERT … ON CONFLICT DO NOTHING RETURNING``): a message delivered again after a crash
  or a broker restart finds its key and changes nothing;
* **run hours never go down** — a counter reading lower than the last one, at a *later* device time,
  is a reset: the new raw value is the hours since the reset and is added as the delta; a lower
  reading at an *earlier* time is a late (out-of-order) message and moves no counter. Within a batch
  readings are applied in device-time order, so QoS 1 reordering inside a batch costs nothing;
* **one open case per device fault** — a fault (``ErrorCode`` > 0) opens a case keyed by device and
  fault identifier (``open_key``, unique while open), a repeat while open only counts, and the clear
  event (``ErrorCode`` 0) closes it;
* rejected messages (future or invalid timestamps, bad payloads) land in ``iot_quarantine``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from connectors.iot.models import DeviceRegistration, DeviceUsageDaily, IotMessageLedger, IotQuarantine
from connectors.iot.payloads import CHINA, Reading, Rejected
from tongbu.config import DEFAULT_TENANT
from tongbu.hub.models import Account, Device, ServiceCase

DEVICES: Table = Device.__table__  # type: ignore[assignment]
CASES: Table = ServiceCase.__table__  # type: ignore[assignment]
ACCOUNTS: Table = Account.__table__  # type: ignore[assignment]
USAGE: Table = DeviceUsageDaily.__table__  # type: ignore[assignment]
LEDGER: Table = IotMessageLedger.__table__  # type: ignore[assignment]
QUARANTINE: Table = IotQuarantine.__table__  # type: ignore[assignment]
REGISTRATIONS: Table = DeviceRegistration.__table__  # type: ignore[assignment]

#: attributes that become device columns (case-insensitive), the rest stays in ``telemetry``
_FIRMWARE = ("firmware", "fw", "fw_version", "firmwareversion", "version")
_MODEL = ("model", "devicetype", "device_type", "product_model")
_CHUNK = 500


def _dt(ts_ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC)


def _day(ts_ms: int) -> str:
    return dt.datetime.fromtimestamp(ts_ms / 1000, CHINA).strftime("%Y-%m-%d")


def _digest_text(*parts: str) -> str:
    import hashlib

    return hashlib.blake2b("\x00".join(parts).encode("utf-8", "replace"), digest_size=16).hexdigest()


def _insert(conn: Connection, table: Table) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


@dataclass
class CaseChange:
    """A service case opened, repeated or closed by this batch (what the alerting path reports)."""

    action: str  # opened | repeated | closed
    case_id: str
    device: str
    fault: str
    error_code: int | None
    account_ref: str | None
    owner: str | None
    title: str
    event_ts_ms: int
    received_at: float = 0.0


@dataclass
class IngestResult:
    """What one batch did."""

    readings: int = 0
    applied: int = 0
    duplicates: int = 0
    quarantined: int = 0
    late: int = 0  # out-of-order readings older than the device's newest counter reading
    resets: int = 0
    devices_new: int = 0
    devices_written: int = 0
    cases: list[CaseChange] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """The figures as the event inbox expects them."""
        return {
            "written": self.applied,
            "unchanged": self.duplicates,
            "deleted": 0,
            "quarantined": self.quarantined,
        }


class IotWriter:
    """Writes readings for one tenant and source system (the IoT connection's name)."""

    def __init__(self, *, tenant: str = DEFAULT_TENANT, source_system: str = "iot") -> None:
        self.tenant = tenant
        self.source_system = source_system

    # -- public ---------------------------------------------------------------------------------------
    def write(
        self,
        conn: Connection,
        readings: Sequence[Reading],
        rejected: Sequence[Rejected] = (),
        *,
        received_at: float | None = None,
    ) -> IngestResult:
        """Apply ``readings`` (and quarantine ``rejected``) in ``conn``'s transaction."""
        import time

        now = received_at if received_at is not None else time.time()
        res = IngestResult(readings=len(readings))
        # A rejected message redelivered (or published twice) is quarantined once: the ledger keeps
        # a digest of it too.
        by_digest = {"q:" + _digest_text(r.topic, r.payload): r for r in rejected}
        new_rejects = self._claim(conn, list(by_digest), now) if by_digest else set()
        self._quarantine(conn, [r for k, r in by_digest.items() if k in new_rejects], now)
        res.quarantined = len(new_rejects)
        unique: dict[str, Reading] = {}
        for r in readings:
            unique.setdefault(r.dedup_key, r)
        fresh_keys = self._claim(conn, list(unique), now)
        fresh = [r for k, r in unique.items() if k in fresh_keys]
        res.duplicates = len(readings) - len(fresh)
        res.applied = len(fresh)
        if not fresh:
            return res
        fresh.sort(key=lambda r: (r.device, r.ts_ms))
        by_device: dict[str, list[Reading]] = defaultdict(list)
        for r in fresh:
            by_device[r.device].append(r)
        existing = self._load_devices(conn, list(by_device))
        accounts = self._accounts_for(
            conn, [d for d in by_device if not (existing.get(d) or {}).get("account_ref")]
        )
        rows, usage, faults = [], defaultdict(lambda: [Decimal(0), 0, 0, 0]), []
        for device, items in by_device.items():
            row = dict(existing.get(device) or {})
            if not row:
                res.devices_new += 1
            row = self._apply(device, row, items, usage, faults, res)
            if not row.get("account_ref") and device in accounts:
                row["account_ref"] = accounts[device]
            rows.append(row)
        self._upsert_devices(conn, rows, now)
        res.devices_written = len(rows)
        self._upsert_usage(conn, usage, now)
        res.cases = self._cases(conn, faults, {r["source_id"]: r for r in rows}, now)
        return res

    # -- ledger and quarantine ---------------------------------------------------------------------------
    def _claim(self, conn: Connection, keys: list[str], now: float) -> set[str]:
        """Insert the keys into the ledger; return those that were not there yet.

        Look up, then a plain INSERT (not ON CONFLICT DO NOTHING): should another writer claim the same
        key between the two, the primary key makes this transaction fail, so the batch is redelivered
        and then finds the key, rather than both writers applying it. (Both statements compile once
        and are cached; a multi-row VALUES insert would be compiled anew for every batch.)
        """
        # Driver-level SQL: per-row parameter processing in SQLAlchemy cost more than the database.
        pg = conn.dialect.name == "postgresql"
        ph = "%s" if pg else "?"
        seen: set[str] = set()
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i : i + _CHUNK]
            sql = (
                f"SELECT dedup_key FROM iot_message_ledger WHERE tenant_id = {ph} "
                f"AND dedup_key IN ({', '.join([ph] * len(chunk))})"
            )
            seen.update(r[0] for r in conn.exec_driver_sql(sql, (self.tenant, *chunk)))
        fresh = [k for k in keys if k not in seen]
        if fresh:
            applied: Any = _dt(int(now * 1000))
            if not pg:  # SQLAlchemy's own storage format for DateTime on SQLite
                applied = applied.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
            conn.exec_driver_sql(
                f"INSERT INTO iot_message_ledger (tenant_id, dedup_key, applied_at) VALUES ({ph}, {ph}, {ph})",
                [(self.tenant, k, applied) for k in fresh],
            )
        return set(fresh)

    def _quarantine(self, conn: Connection, rejected: Iterable[Rejected], now: float) -> None:
        rows = [
            {
                "tenant_id": self.tenant,
                "source_system": self.source_system,
                "device": r.device,
                "topic": r.topic[:255],
                "reason": r.reason,
                "payload": r.payload[:2048],
                "status": "open",
                "received_at": _dt(int(now * 1000)),
            }
            for r in rejected
        ]
        if rows:
            conn.execute(QUARANTINE.insert(), rows)

    def prune_ledger(self, conn: Connection, older_than_days: float = 2.0) -> int:
        """Forget ledger entries older than the redelivery window (Alink ids repeat only after a day)."""
        import time

        cutoff = _dt(int((time.time() - older_than_days * 86400) * 1000))
        result = conn.execute(
            LEDGER.delete().where(LEDGER.c.tenant_id == self.tenant, LEDGER.c.applied_at < cutoff)
        )
        return int(result.rowcount or 0)

    # -- devices -----------------------------------------------------------------------------------------
    _DEVICE_COLS = (
        "source_id", "serial_no", "model", "product_code", "account_ref", "status", "last_seen_at",
        "telemetry", "firmware", "online", "location", "platform", "run_hours", "run_hours_raw",
        "run_hours_resets", "last_ts_ms", "counter_ts_ms",
    )  # fmt: skip

    def _load_devices(self, conn: Connection, devices: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        cols = [DEVICES.c[c] for c in self._DEVICE_COLS]
        for i in range(0, len(devices), _CHUNK):
            q = select(*cols).where(
                DEVICES.c.tenant_id == self.tenant,
                DEVICES.c.source_system == self.source_system,
                DEVICES.c.source_id.in_(devices[i : i + _CHUNK]),
            )
            for m in conn.execute(q).mappings():
                out[m["source_id"]] = dict(m)
        return out

    def _apply(
        self,
        device: str,
        row: dict[str, Any],
        items: list[Reading],
        usage: dict[tuple[str, str], list[Any]],
        faults: list[Reading],
        res: IngestResult,
    ) -> dict[str, Any]:
        row.setdefault("source_id", device)
        row["serial_no"] = row.get("serial_no") or device
        telemetry = dict(row.get("telemetry") or {})
        raw = row.get("run_hours_raw")
        total = Decimal(row.get("run_hours") or 0)
        resets = int(row.get("run_hours_resets") or 0)
        counter_ts = row.get("counter_ts_ms") or 0
        last_ts = row.get("last_ts_ms") or 0
        for r in items:
            row["platform"] = r.platform
            if r.product and not row.get("product_code"):
                row["product_code"] = r.product
            day = usage[(device, _day(r.ts_ms))]
            day[1] += 1
            if r.kind == "status":
                row["online"] = bool(r.values.get("online"))
                continue
            row["online"] = True
            if r.ts_ms >= last_ts:
                last_ts = r.ts_ms
            if r.kind == "attributes":
                self._attributes(row, r.values)
                continue
            if r.kind == "telemetry":
                for k, v in r.values.items():
                    telemetry[k] = v
                self._attributes(row, r.values)  # Alink reports firmware and position as properties
                hours = r.run_hours
                if hours is not None and hours >= 0:
                    value = Decimal(str(hours))
                    if r.ts_ms < counter_ts:
                        res.late += 1  # an older reading arriving late moves no counter
                    else:
                        if raw is None:
                            # The first counter reading is the starting point: the device's own total
                            # (unless the hub already had a total from elsewhere).
                            delta = Decimal(0)
                            if row.get("run_hours") is None:
                                total = value
                        elif value >= Decimal(raw):
                            delta = value - Decimal(raw)
                        else:  # the counter went down at a later time: a reset to 0, then `value` hours
                            delta = value
                            resets += 1
                            res.resets += 1
                            day[3] += 1
                        total += delta
                        day[0] += delta
                        raw = value
                        counter_ts = r.ts_ms
            if r.error_code is not None and r.event:
                faults.append(r)
                if r.error_code > 0:
                    day[2] += 1
        row["telemetry"] = telemetry
        row["run_hours"] = total if raw is not None else row.get("run_hours")
        row["run_hours_raw"] = raw
        row["run_hours_resets"] = resets
        row["counter_ts_ms"] = counter_ts or None
        row["last_ts_ms"] = last_ts or None
        row["last_seen_at"] = _dt(last_ts) if last_ts else row.get("last_seen_at")
        row["status"] = "online" if row.get("online") else "offline"
        return row

    @staticmethod
    def _attributes(row: dict[str, Any], values: dict[str, Any]) -> None:
        for k, v in values.items():
            key = k.lower()
            if key in _FIRMWARE and isinstance(v, str | int | float):
                row["firmware"] = str(v)[:64]
            elif key in _MODEL and isinstance(v, str):
                row["model"] = v[:64]
            elif key in ("serial", "serial_no", "serialnumber", "sn") and isinstance(v, str):
                row["serial_no"] = v[:64]
        IotWriter._location(row, values)

    @staticmethod
    def _location(row: dict[str, Any], values: dict[str, Any]) -> None:
        pos = values.get("Position") if isinstance(values.get("Position"), dict) else values
        lat, lon = pos.get("latitude"), pos.get("longitude")
        if (
            isinstance(lat, int | float)
            and isinstance(lon, int | float)
            and -90 <= lat <= 90
            and -180 <= lon <= 180
        ):
            row["location"] = {"latitude": lat, "longitude": lon}

    def _upsert_devices(self, conn: Connection, rows: list[dict[str, Any]], now: float) -> None:
        stamp = _dt(int(now * 1000))
        full = []
        for r in rows:
            full.append(
                {
                    **{c: r.get(c) for c in self._DEVICE_COLS},
                    "tenant_id": self.tenant,
                    "source_system": self.source_system,
                    # Telemetry changes on every message; the hash would only cost time here.
                    "row_hash": "iot",
                    "updated_at": stamp,
                }
            )
        stmt = _insert(conn, DEVICES)
        set_ = {c: stmt.excluded[c] for c in (*self._DEVICE_COLS, "updated_at") if c != "source_id"}
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "source_system", "source_id"], set_=set_
        )
        for i in range(0, len(full), _CHUNK):
            conn.execute(stmt, full[i : i + _CHUNK])

    def _upsert_usage(self, conn: Connection, usage: dict[tuple[str, str], list[Any]], now: float) -> None:
        if not usage:
            return
        rows = [
            {
                "tenant_id": self.tenant,
                "source_system": self.source_system,
                "device": device,
                "day": day,
                "run_hours": v[0],
                "messages": v[1],
                "faults": v[2],
                "resets": v[3],
                "updated_at": _dt(int(now * 1000)),
            }
            for (device, day), v in usage.items()
        ]
        stmt = _insert(conn, USAGE)
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "source_system", "device", "day"],
            set_={
                "run_hours": USAGE.c.run_hours + stmt.excluded.run_hours,
                "messages": USAGE.c.messages + stmt.excluded.messages,
                "faults": USAGE.c.faults + stmt.excluded.faults,
                "resets": USAGE.c.resets + stmt.excluded.resets,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        for i in range(0, len(rows), _CHUNK):
            conn.execute(stmt, rows[i : i + _CHUNK])

    # -- accounts ----------------------------------------------------------------------------------------
    def _accounts_for(self, conn: Connection, serials: list[str]) -> dict[str, str]:
        """Serial -> account for devices that have none yet (registration first, then ERP order lines)."""
        if not serials:
            return {}
        from connectors.iot.linking import accounts_for_serials

        return accounts_for_serials(conn, self.tenant, serials)

    # -- cases ---------------------------------------------------------------------------------------------
    def _open_key(self, device: str, fault: str) -> str:
        return f"{self.tenant}|{self.source_system}|{device}|{fault}"[:255]

    def _cases(
        self, conn: Connection, faults: list[Reading], devices: dict[str, dict[str, Any]], now: float
    ) -> list[CaseChange]:
        if not faults:
            return []
        keys = sorted({self._open_key(r.device, r.event or "") for r in faults})
        open_cases: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), _CHUNK):
            q = select(CASES.c.id, CASES.c.source_id, CASES.c.open_key, CASES.c.occurrences).where(
                CASES.c.open_key.in_(keys[i : i + _CHUNK])
            )
            for m in conn.execute(q).mappings():
                open_cases[m["open_key"]] = dict(m)
        owners = self._owners(conn, {d.get("account_ref") for d in devices.values() if d.get("account_ref")})
        changes: list[CaseChange] = []
        for r in faults:  # in device-time order per device
            fault, key = r.event or "", self._open_key(r.device, r.event or "")
            dev = devices.get(r.device, {})
            account = dev.get("account_ref")
            case = open_cases.get(key)
            when = _dt(r.ts_ms)
            if r.error_code and r.error_code > 0:
                title = f"设备 {dev.get('serial_no') or r.device} 故障 {fault} (ErrorCode {r.error_code})"
                if case is None:
                    source_id = f"{r.device}:{fault}:{r.ts_ms}"
                    conn.execute(
                        CASES.insert().values(
                            tenant_id=self.tenant, source_system=self.source_system, source_id=source_id,
                            row_hash="iot", title=title[:255], status="open", severity="warning",
                            device_ref=r.device, serial_no=dev.get("serial_no"), account_ref=account,
                            owner=owners.get(account or ""), fault=fault[:64], error_code=r.error_code,
                            occurrences=1, opened_at=when, last_event_at=when, open_key=key,
                            extra={"platform": r.platform, "values": r.values},
                        )
                    )  # fmt: skip
                    open_cases[key] = {"source_id": source_id, "open_key": key, "occurrences": 1}
                    changes.append(
                        CaseChange("opened", source_id, r.device, fault, r.error_code, account,
                                   owners.get(account or ""), title, r.ts_ms, now)
                    )  # fmt: skip
                else:
                    case["occurrences"] = int(case.get("occurrences") or 1) + 1
                    conn.execute(
                        update(CASES)
                        .where(CASES.c.open_key == key)
                        .values(occurrences=case["occurrences"], error_code=r.error_code, last_event_at=when,
                                updated_at=func.current_timestamp())
                    )  # fmt: skip
                    changes.append(
                        CaseChange("repeated", case["source_id"], r.device, fault, r.error_code, account,
                                   owners.get(account or ""), title, r.ts_ms, now)
                    )  # fmt: skip
            elif case is not None:  # ErrorCode 0: the clear event closes the open case
                conn.execute(
                    update(CASES)
                    .where(CASES.c.open_key == key)
                    .values(status="closed", closed_at=when, last_event_at=when, open_key=None,
                            updated_at=func.current_timestamp())
                )  # fmt: skip
                del open_cases[key]
                changes.append(
                    CaseChange("closed", case["source_id"], r.device, fault, 0, account,
                               owners.get(account or ""), f"设备 {r.device} {fault} 已恢复", r.ts_ms, now)
                )  # fmt: skip
        return changes

    def _owners(self, conn: Connection, accounts: set[str]) -> dict[str, str]:
        if not accounts:
            return {}
        q = select(ACCOUNTS.c.source_id, ACCOUNTS.c.owner).where(
            ACCOUNTS.c.tenant_id == self.tenant, ACCOUNTS.c.source_id.in_(sorted(accounts))
        )
        return {sid: owner for sid, owner in conn.execute(q) if owner}


def register_devices(conn: Connection, tenant: str, records: Iterable[tuple[str, str]], source: str) -> int:
    """Add or replace registration records (serial, account source id); returns how many."""
    rows = [{"tenant_id": tenant, "serial_no": s, "account_ref": a, "source": source} for s, a in records]
    if not rows:
        return 0
    stmt = _insert(conn, REGISTRATIONS)
    stmt = stmt.on_conflict_do_update(
        index_elements=["tenant_id", "serial_no"],
        set_={"account_ref": stmt.excluded.account_ref, "source": stmt.excluded.source},
    )
    conn.execute(stmt, rows)
    return len(rows)
