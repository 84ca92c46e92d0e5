"""The simulated Youzan 有赞 data: customers, contacts and orders with lines, seeded from the kit's fake data.

Rows live in memory in ``(updated_at, id)`` order (a sorted key list, bisected per page), so a keyset
page costs O(log n + page). Row-level fault switches apply when the data is seeded: ``same_second``
stamps a share of the rows with one time, ``malformed`` gives a row a bad value that ``truth`` names.
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
import time
from typing import Any

from connectors.kit import fakedata
from connectors.kit.simulator import FaultConfig, pick_rows

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z, the first seeded change
KEYSET_STREAMS = ("customers", "orders")
STREAMS = ("customers", "contacts", "orders")
#: the field ``modify`` edits in each stream
EDITED = {"customers": "owner", "contacts": "email", "orders": "order_no"}


def iso(ms: int) -> str:
    """Milliseconds since the epoch as the API sends times (UTC, fixed width)."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


def parse_ms(text: str) -> int:
    """An ISO time from a query string as milliseconds (ValueError when it is not one)."""
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp() * 1000)


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the API sends it (internal ``_`` keys dropped, ``updated_at`` rendered)."""
    out = {k: v for k, v in row.items() if not k.startswith("_")}
    if "_ms" in row:
        out["updated_at"] = iso(row["_ms"])
    return out


class YouzanStore:
    """The seeded tables, thread-safe (the API runs on the event loop, control calls in threads)."""

    def __init__(self, records: int, seed: int, faults: FaultConfig) -> None:
        self.lock = threading.Lock()
        self.tables: dict[str, list[dict[str, Any]]] = {s: [] for s in STREAMS}
        self._keys: dict[str, list[tuple[int, int]]] = {}
        rng = fakedata.FastRandom(f"{seed}:youzan")
        bad = fakedata.FastRandom(f"{seed}:youzan:malformed")
        rate = faults.value("malformed", 0.0)
        for i in range(records):
            company = fakedata.company(i, rng, seed)
            boss = fakedata.person(rng)
            customer = {
                "id": i + 1,
                "name": company.name,
                "credit_code": company.credit_code,
                "industry": company.industry,
                "phone": fakedata.landline(rng, company.city),
                "address": fakedata.address(rng, company.city),
                "owner": fakedata.person(rng).name,
                "_ms": EPOCH_MS + i * 1000 + rng.randrange(1000),
                "_malformed": None,
            }
            contact = {
                "id": 10_000 + i,
                "customer_id": i + 1,
                "name": boss.name,
                "mobile": fakedata.mobile(rng),
                "email": f"{boss.pinyin}@{company.domain}",
                "_malformed": None,
            }
            lines: list[dict[str, Any]] = []
            total = 0.0
            for n in range(1, rng.randrange(1, 5) + 1):
                qty, price = rng.randrange(1, 50), fakedata.amount(rng, 10, 5000)
                total += qty * price
                sku = f"SKU-{rng.randrange(1, 500):04d}"
                line_id = (i + 1) * 100 + n
                lines.append({"line_id": line_id, "line_no": n, "sku": sku, "qty": qty, "unit_price": price})
            order = {
                "id": 50_000 + i,
                "order_no": f"SO{2024_000_000 + i}",
                "customer_id": i + 1,
                "amount": fakedata.round2(total),
                "lines": lines,
                "_ms": EPOCH_MS + i * 1000 + rng.randrange(1000),
                "_malformed": None,
            }
            if rate > 0 and bad.random() < rate:
                customer["name"], customer["_malformed"] = "", "name: missing"
            if rate > 0 and bad.random() < rate:
                contact["name"], contact["_malformed"] = " ", "name: missing"
            if rate > 0 and bad.random() < rate:
                lines[0]["qty"], order["_malformed"] = "十", "lines[0].qty: not a number"
            self.tables["customers"].append(customer)
            self.tables["contacts"].append(contact)
            self.tables["orders"].append(order)
        share = faults.value("same_second", 0.0)
        for stream in KEYSET_STREAMS:
            rows = self.tables[stream]
            for index in pick_rows(len(rows), share, fakedata.FastRandom(f"{seed}:{stream}:same")):
                rows[index]["_ms"] = EPOCH_MS + records * 500
            self._reindex(stream)

    def _reindex(self, stream: str) -> None:
        rows = self.tables[stream]
        rows.sort(key=lambda r: (r["_ms"], r["id"]))
        self._keys[stream] = [(r["_ms"], r["id"]) for r in rows]

    def changed_after(
        self, stream: str, since_ms: int | None, after_id: int | None, limit: int
    ) -> list[dict[str, Any]]:
        """Rows strictly after ``(since, after_id)`` (``after_id`` None: at or after ``since``)."""
        with self.lock:
            keys = self._keys[stream]
            if since_ms is None:
                start = 0
            elif after_id is None:
                start = bisect.bisect_left(keys, (since_ms, -1))
            else:
                start = bisect.bisect_right(keys, (since_ms, after_id))
            return [public(r) for r in self.tables[stream][start : start + limit]]

    def page(self, stream: str, offset: int, limit: int) -> list[dict[str, Any]]:
        """Rows ``offset`` .. ``offset + limit`` in id order (the cursor-paged stream)."""
        with self.lock:
            return [public(r) for r in self.tables[stream][offset : offset + limit]]

    def modify(self, stream: str, count: int) -> dict[str, Any]:
        """Change ``count`` rows of ``stream`` (the first ones by id), stamping them with one new time."""
        if stream not in STREAMS:
            raise KeyError(f"unknown stream {stream!r} (known: {', '.join(STREAMS)})")
        with self.lock:
            rows = sorted(self.tables[stream], key=lambda r: r["id"])[: max(0, count)]
            newest = max((r.get("_ms", 0) for r in self.tables[stream]), default=0)
            stamp = max(int(time.time() * 1000), newest + 1)
            for row in rows:
                if "_ms" in row:
                    row["_ms"] = stamp
                row[EDITED[stream]] = f"{row[EDITED[stream]]}·"  # a visible edit, never the defect
            if stream in KEYSET_STREAMS:
                self._reindex(stream)
            return {"stream": stream, "ids": [r["id"] for r in rows], "updated_at": iso(stamp)}

    def truth(self, stream: str, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Every row of ``stream`` in id order, as served, plus ``_malformed`` (the defect, or None)."""
        if stream not in STREAMS:
            raise KeyError(f"unknown stream {stream!r} (known: {', '.join(STREAMS)})")
        with self.lock:
            rows = sorted(self.tables[stream], key=lambda r: r["id"])
        end = None if limit is None else offset + limit
        return [{**public(r), "_malformed": r["_malformed"]} for r in rows[offset:end]]
