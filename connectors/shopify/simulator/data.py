"""The simulated shop: customers, products and orders (with line items), seeded from the kit's fake data.

Shapes follow the Admin REST API's fixtures (``test/fixtures/order.json`` in ``ShopifyAPI``): ids are
large integers, prices are strings (``"199.00"``), times are ISO 8601 with whole seconds in the shop's
UTC offset (``2024-01-01T08:00:00+08:00``), an order embeds ``customer``, ``billing_address``,
``shipping_address`` and ``line_items``.

Rows live in memory with two indexes per resource, ``(updated_at, id)`` and ``id``, so a page costs
O(log n + page) whatever the size. Row-level faults apply at seeding: ``same_second`` stamps a share of
the rows with one second, ``malformed`` gives a row a bad value that ``truth`` names.
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
import time
from collections.abc import Iterator
from typing import Any

from connectors.kit import fakedata
from connectors.kit.simulator import FaultConfig, share_one_time

#: 2024-01-01T00:00:00Z, the first seeded change (seconds: Shopify times have no fraction)
EPOCH_S = 1_704_067_200
STREAMS = ("customers", "products", "orders")
#: the field ``modify`` edits in each resource
EDITED = {"customers": "note", "products": "title", "orders": "note"}
ID_BASE = {"customers": 207_119_551, "products": 632_910_392, "orders": 450_789_469}
SIXTY_DAYS_S = 60 * 86400
_CARRIERS = ("138", "139", "186", "137", "150", "177")


def shop_time(seconds: int, offset_min: int) -> str:
    """Epoch seconds as the API renders times: ISO 8601, whole seconds, the shop's offset."""
    tz = dt.timezone(dt.timedelta(minutes=offset_min))
    return dt.datetime.fromtimestamp(seconds, tz).isoformat(timespec="seconds")


def parse_time(text: str, offset_min: int) -> int:
    """A query-string time as epoch seconds; a time without an offset is in the shop's zone."""
    parsed = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone(dt.timedelta(minutes=offset_min)))
    return int(parsed.timestamp())


def money(value: float) -> str:
    """A price as Shopify sends it: a string with two decimals."""
    return f"{value:.2f}"


class ShopifyStore:
    """The seeded resources, thread-safe (the API runs on the event loop, control calls in threads)."""

    def __init__(self, records: int, seed: int, faults: FaultConfig, offset_min: int = 480) -> None:
        self.lock = threading.Lock()
        self.offset_min = offset_min
        self.tables: dict[str, list[dict[str, Any]]] = {s: [] for s in STREAMS}
        self._by_key: dict[str, list[tuple[int, int]]] = {}
        self._rows: dict[str, dict[int, dict[str, Any]]] = {}
        rng = fakedata.FastRandom(f"{seed}:shopify")
        bad = fakedata.FastRandom(f"{seed}:shopify:malformed")
        rate = faults.value("malformed", 0.0)
        n_customers = max(1, records)
        n_products = max(1, records // 4 or 1)
        for i in range(n_products):
            self.tables["products"].append(self._product(i, rng))
        for i in range(n_customers):
            customer = self._customer(i, rng, seed)
            if rate > 0 and bad.random() < rate:
                customer["email"], customer["phone"] = None, None
                customer["first_name"] = customer["last_name"] = ""
                customer["_malformed"] = "customer has no name, email or phone"
            self.tables["customers"].append(customer)
        for i in range(records):
            order = self._order(i, rng, records)
            if rate > 0 and bad.random() < rate:
                order["line_items"][0]["quantity"] = "十"
                order["_malformed"] = "line_items[0].quantity: not a number"
            self.tables["orders"].append(order)
        share_one_time(self.tables, faults, EPOCH_S + records * 30, seed)
        for stream in STREAMS:
            self._reindex(stream)
        #: the shop's clock: the newest seeded change plus a day (the 60-day window counts back from it)
        self.seeded_now = max((r["_s"] for rs in self.tables.values() for r in rs), default=EPOCH_S) + 86400
        self._started = time.monotonic()

    # -- seeding ---------------------------------------------------------------------------------------
    def _product(self, i: int, rng: fakedata.FastRandom) -> dict[str, Any]:
        pid = ID_BASE["products"] + i
        kind = rng.choice(("茶叶", "白酒", "办公椅", "蓝牙耳机", "保温杯", "丝巾", "蜂蜜", "砚台"))
        variants = []
        for v in range(rng.randrange(1, 4)):
            variants.append(
                {
                    "id": 39_072_856 + i * 10 + v,
                    "product_id": pid,
                    "title": ("标准装", "礼盒装", "家庭装")[v],
                    "price": money(fakedata.amount(rng, 9, 3000)),
                    "sku": f"SP-{i:05d}-{v}",
                    "inventory_quantity": rng.randrange(0, 500),
                }
            )
        return {
            "id": pid,
            "title": f"{kind} {i + 1:04d}",
            "body_html": f"<p>{kind}</p>",
            "vendor": "同步商城",
            "product_type": kind,
            "handle": f"product-{i + 1}",
            "status": "active",
            "tags": "",
            "variants": variants,
            "_created": EPOCH_S - 86400 + i,
            "_s": EPOCH_S + i * 7 + rng.randrange(7),
            "_malformed": None,
        }

    def _customer(self, i: int, rng: fakedata.FastRandom, seed: int) -> dict[str, Any]:
        who = fakedata.person(rng)
        company = fakedata.company(i, rng, seed)
        mobile = fakedata.mobile(rng)
        surname, given = who.name[: len(who.surname)], who.name[len(who.surname) :]
        address = {
            "first_name": given,
            "last_name": surname,
            "company": company.name if rng.random() < 0.3 else None,
            "address1": fakedata.address(rng, company.city),
            "city": company.city.name,
            "province": company.city.province,
            "country_code": "CN",
            "zip": company.city.postcode,
            "phone": f"+86{mobile}",
        }
        return {
            "id": ID_BASE["customers"] + i,
            "email": f"{who.pinyin}{i}@example.cn",
            "first_name": given,
            "last_name": surname,
            "phone": f"+86{mobile}",
            "state": "enabled",
            "orders_count": 0,
            "total_spent": "0.00",
            "tags": "",
            "note": None,
            "verified_email": True,
            "tax_exempt": False,
            "currency": "CNY",
            "default_address": address,
            "addresses": [address],
            "_created": EPOCH_S - 3600 + i,
            "_s": EPOCH_S + i * 5 + rng.randrange(5),
            "_malformed": None,
        }

    def _order(self, i: int, rng: fakedata.FastRandom, records: int) -> dict[str, Any]:
        customers, products = self.tables["customers"], self.tables["products"]
        buyer = customers[rng.randrange(len(customers))]
        lines = []
        subtotal = 0.0
        for n in range(rng.randrange(1, 4)):
            product = products[rng.randrange(len(products))]
            variant = product["variants"][rng.randrange(len(product["variants"]))]
            qty = rng.randrange(1, 6)
            subtotal += qty * float(variant["price"])
            lines.append(
                {
                    "id": 466_157_049 + i * 10 + n,
                    "product_id": product["id"],
                    "variant_id": variant["id"],
                    "sku": variant["sku"],
                    "title": product["title"],
                    "variant_title": variant["title"],
                    "quantity": qty,
                    "price": variant["price"],
                }
            )
        tax = round(subtotal * 0.13, 2)
        status = rng.random()
        financial = "paid" if status < 0.85 else ("refunded" if status < 0.93 else "pending")
        # Orders are spread over the year before the shop's clock: old ones fall outside 60 days.
        created = EPOCH_S + int(i * (300 * 86400 / max(1, records)))
        return {
            "id": ID_BASE["orders"] + i,
            "name": f"#{1001 + i}",
            "order_number": 1001 + i,
            "email": buyer["email"],
            "phone": buyer["phone"],
            "currency": "CNY",
            "financial_status": financial,
            "fulfillment_status": "fulfilled" if financial == "paid" else None,
            "subtotal_price": money(subtotal),
            "total_tax": money(tax),
            "total_discounts": "0.00",
            "total_price": money(subtotal + tax),
            "tags": "",
            "note": None,
            "source_name": "web",
            "cancel_reason": None,
            "customer": {k: buyer[k] for k in ("id", "email", "first_name", "last_name", "phone")},
            "billing_address": dict(buyer["default_address"]),
            "shipping_address": dict(buyer["default_address"]),
            "line_items": lines,
            "_created": created,
            "_s": created + rng.randrange(1, 3600),
            "_cancelled": None,
            "_closed": None,
            "_malformed": None,
        }

    # -- indexes ---------------------------------------------------------------------------------------
    def _reindex(self, stream: str) -> None:
        rows = self.tables[stream]
        rows.sort(key=lambda r: (r["_s"], r["id"]))
        self._by_key[stream] = [(r["_s"], r["id"]) for r in rows]
        self._rows[stream] = {r["id"]: r for r in rows}

    def now(self) -> int:
        """The shop's clock (epoch seconds): a day after the newest seeded change, then running."""
        return self.seeded_now + int(time.monotonic() - self._started)

    def public(self, stream: str, row: dict[str, Any]) -> dict[str, Any]:
        """A row as the API sends it (internal ``_`` keys dropped, times rendered in the shop's offset)."""
        out = {k: v for k, v in row.items() if not k.startswith("_")}
        off = self.offset_min
        out["created_at"] = shop_time(row["_created"], off)
        out["updated_at"] = shop_time(row["_s"], off)
        if stream == "orders":
            out["cancelled_at"] = shop_time(row["_cancelled"], off) if row["_cancelled"] else None
            out["closed_at"] = shop_time(row["_closed"], off) if row["_closed"] else None
            out["processed_at"] = out["created_at"]
        if stream == "products":
            out["published_at"] = out["created_at"]
        return out

    def scan(
        self, stream: str, order: str, after: tuple[int, int] | None, descending: bool
    ) -> Iterator[dict]:
        """Rows of ``stream`` in ``order`` (``updated_at`` or ``id``) strictly after ``after``."""
        with self.lock:
            if order == "updated_at":
                keys = self._by_key[stream]
                rows = self.tables[stream]
            else:
                rows = sorted(self.tables[stream], key=lambda r: r["id"])
                keys = [(r["id"], r["id"]) for r in rows]
            if descending:
                start = len(keys) if after is None else bisect.bisect_left(keys, after)
                snapshot = rows[:start][::-1]
            else:
                start = 0 if after is None else bisect.bisect_right(keys, after)
                snapshot = rows[start:]
        yield from snapshot

    def get(self, stream: str, row_id: int) -> dict[str, Any] | None:
        """One row by id (None when there is none)."""
        with self.lock:
            return self._rows[stream].get(row_id)

    # -- changes ---------------------------------------------------------------------------------------
    def _stamp(self, stream: str) -> int:
        newest = max((r["_s"] for r in self.tables[stream]), default=0)
        return max(self.now(), newest + 1)

    def modify(self, stream: str, count: int) -> dict[str, Any]:
        """Change ``count`` rows of ``stream`` (the first ones by id), stamping them with one new second."""
        if stream not in STREAMS:
            raise KeyError(f"unknown stream {stream!r} (known: {', '.join(STREAMS)})")
        with self.lock:
            rows = sorted(self.tables[stream], key=lambda r: r["id"])[: max(0, count)]
            stamp = self._stamp(stream)
            for row in rows:
                row["_s"] = stamp
                row[EDITED[stream]] = f"{row[EDITED[stream]] or ''}·"  # a visible edit, never the defect
            self._reindex(stream)
            return {"stream": stream, "ids": [r["id"] for r in rows], "updated_at": shop_time(stamp, 0)}

    def update_order(self, order_id: int, change: str) -> dict[str, Any]:
        """Cancel, refund, close or edit one order as a merchant would; returns it as the API sends it."""
        with self.lock:
            row = self._rows["orders"].get(order_id)
            if row is None:
                raise KeyError(f"no order {order_id}")
            stamp = self._stamp("orders")
            if change == "cancel":
                row["_cancelled"], row["cancel_reason"], row["financial_status"] = stamp, "customer", "voided"
            elif change == "refund":
                row["financial_status"] = "refunded"
            elif change == "close":
                row["_closed"] = stamp
            elif change == "note":
                row["note"] = f"{row['note'] or ''}·"
            else:
                raise ValueError(f"unknown change {change!r} (cancel, refund, close, note)")
            row["_s"] = stamp
            self._reindex("orders")
            return self.public("orders", row)

    def update_fields(self, stream: str, row_id: int, fields: dict[str, Any]) -> dict[str, Any] | None:
        """``PUT``: the writable top-level fields given (others ignored), stamped now; None if no row."""
        with self.lock:
            row = self._rows[stream].get(row_id)
            if row is None:
                return None
            for key, value in fields.items():
                if key in row and not key.startswith("_") and key not in ("id", "line_items", "variants"):
                    row[key] = value
            row["_s"] = self._stamp(stream)
            self._reindex(stream)
            return self.public(stream, row)

    def truth(self, stream: str, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Every row of ``stream`` in id order, as served, plus ``_malformed`` (the defect, or None)."""
        if stream not in STREAMS:
            raise KeyError(f"unknown stream {stream!r} (known: {', '.join(STREAMS)})")
        with self.lock:
            rows = sorted(self.tables[stream], key=lambda r: r["id"])
        end = None if limit is None else offset + limit
        return [{**self.public(stream, r), "_malformed": r["_malformed"]} for r in rows[offset:end]]
