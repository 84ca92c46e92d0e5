"""The simulated Youzan (有赞) shop: buyers, items and trades, seeded from the kit's fake data.

Shapes follow the Youzan Cloud open API as its SDKs and integrations use it: times are Beijing local
strings without an offset (``2024-01-01 08:00:00``), trade ids are strings (``E20240101…``), item prices
are integers in fen (分) while trade amounts are yuan strings (``"199.00"``), and a trade's buyer phone is
masked (``138****1234``) as the platform does for privacy. Buyers (``youzan.users.*``) carry the full
mobile number (the shop's own customer list).
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
import time
from typing import Any

from connectors.kit import fakedata
from connectors.kit.simulator import FaultConfig, share_one_time

BEIJING = dt.timezone(dt.timedelta(hours=8))
EPOCH_S = 1_704_067_200  # 2024-01-01T00:00:00Z
STREAMS = ("trades", "users", "items")
EDITED = {"trades": "buyer_message", "users": "remark", "items": "title"}
STATUSES = (
    "WAIT_BUYER_PAY",
    "WAIT_SELLER_SEND_GOODS",
    "WAIT_BUYER_CONFIRM_GOODS",
    "TRADE_SUCCESS",
    "TRADE_CLOSED",
)


def local_time(seconds: int) -> str:
    """Epoch seconds as Youzan writes times: Beijing local, no offset."""
    return dt.datetime.fromtimestamp(seconds, BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def parse_local(text: str) -> int:
    """``yyyy-MM-dd HH:mm:ss`` (Beijing) as epoch seconds; ValueError otherwise."""
    return int(dt.datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING).timestamp())


def mask(mobile: str) -> str:
    """A mobile number as a trade shows it: ``138****1234``."""
    return f"{mobile[:3]}****{mobile[7:]}"


class YouzanStore:
    """The seeded shop, thread-safe; each table kept in ``(updated, id)`` order for window queries."""

    def __init__(self, records: int, seed: int, faults: FaultConfig) -> None:
        self.lock = threading.Lock()
        self.tables: dict[str, list[dict[str, Any]]] = {s: [] for s in STREAMS}
        self._keys: dict[str, list[tuple[int, int]]] = {}
        self._by_id: dict[str, dict[Any, dict[str, Any]]] = {}
        rng = fakedata.FastRandom(f"{seed}:youzan")
        bad = fakedata.FastRandom(f"{seed}:youzan:malformed")
        rate = faults.value("malformed", 0.0)
        for i in range(max(1, records // 4)):
            kind = rng.choice(("龙井茶", "普洱茶", "黄酒", "月饼礼盒", "真丝围巾", "紫砂壶", "阳澄湖大闸蟹"))
            self.tables["items"].append(
                {
                    "item_id": 880_000_000 + i,
                    "alias": f"2x{i:06x}",
                    "title": f"{kind} {i + 1:03d}",
                    "item_no": f"YZ-{i:05d}",
                    "price": rng.randrange(990, 99_900),  # fen
                    "quantity": rng.randrange(0, 1000),
                    "item_type": 0,
                    "_created": EPOCH_S - 86400,
                    "_s": EPOCH_S + i * 11 + rng.randrange(11),
                    "_malformed": None,
                }
            )
        for i in range(max(1, records)):
            who = fakedata.person(rng)
            city = fakedata.company(i, rng, seed).city
            user = {
                "user_id": 6_000_000 + i,
                "yz_open_id": f"yz{seed:02d}{i:08x}",
                "name": who.name,
                "nick": f"{who.pinyin}{rng.randrange(100)}",
                "mobile": fakedata.mobile(rng),
                "gender": rng.choice((0, 1, 2)),
                "province": city.province,
                "city": city.name,
                "address": fakedata.address(rng, city),
                "remark": None,
                "_created": EPOCH_S - 7200 + i,
                "_s": EPOCH_S + i * 5 + rng.randrange(5),
                "_malformed": None,
            }
            if rate > 0 and bad.random() < rate:
                user["name"], user["mobile"], user["_malformed"] = "", None, "buyer has no name and no mobile"
            self.tables["users"].append(user)
        users, items = self.tables["users"], self.tables["items"]
        for i in range(records):
            buyer = users[rng.randrange(len(users))]
            lines = []
            total = 0
            for n in range(rng.randrange(1, 4)):
                item = items[rng.randrange(len(items))]
                num = rng.randrange(1, 4)
                total += num * item["price"]
                lines.append(
                    {
                        "oid": f"{2_900_000_000 + i * 10 + n}",
                        "item_id": item["item_id"],
                        "sku_id": 0,
                        "outer_item_id": item["item_no"],
                        "title": item["title"],
                        "num": num,
                        "price": f"{item['price'] / 100:.2f}",
                        "payment": f"{num * item['price'] / 100:.2f}",
                    }
                )
            created = EPOCH_S + int(i * (200 * 86400 / max(1, records)))
            seq = 20_240_101_000_000_000_000_000 + i
            trade = {
                "tid": f"E{seq}",
                "status": STATUSES[3] if rng.random() < 0.8 else rng.choice(STATUSES),
                "buyer_message": None,
                "yz_open_id": buyer["yz_open_id"],
                "buyer_phone": mask(buyer["mobile"] or "13000000000"),
                "fans_nickname": buyer["nick"],
                "receiver_name": buyer["name"] or "匿名",
                "receiver_tel": mask(buyer["mobile"] or "13000000000"),
                "delivery_province": buyer["province"],
                "delivery_city": buyer["city"],
                "delivery_address": buyer["address"],
                "total_fee": f"{total / 100:.2f}",
                "payment": f"{total / 100:.2f}",
                "post_fee": "0.00",
                "refund_state": 0,
                "orders": lines,
                "_seq": seq,
                "_created": created,
                "_s": created + rng.randrange(1, 7200),
                "_malformed": None,
            }
            if rate > 0 and bad.random() < rate:
                lines[0]["num"], trade["_malformed"] = "三", "orders[0].num: not a number"
            self.tables["trades"].append(trade)
        share_one_time(self.tables, faults, EPOCH_S + records * 20, seed)
        for stream in STREAMS:
            self._reindex(stream)
        self.seeded_now = max(r["_s"] for rs in self.tables.values() for r in rs) + 3600
        self._started = time.monotonic()

    @staticmethod
    def key_of(stream: str, row: dict[str, Any]) -> int:
        """The row's integer id (a trade's ``tid`` digits)."""
        return int(row["_seq"] if stream == "trades" else row["user_id" if stream == "users" else "item_id"])

    def _reindex(self, stream: str) -> None:
        rows = self.tables[stream]
        rows.sort(key=lambda r: (r["_s"], self.key_of(stream, r)))
        self._keys[stream] = [(r["_s"], self.key_of(stream, r)) for r in rows]
        self._by_id[stream] = {self.key_of(stream, r): r for r in rows}

    def now(self) -> int:
        """The shop's clock: an hour after the newest seeded change, then running."""
        return self.seeded_now + int(time.monotonic() - self._started)

    def public(self, stream: str, row: dict[str, Any]) -> dict[str, Any]:
        """A row as the API renders it (before the per-API envelope)."""
        out = {k: v for k, v in row.items() if not k.startswith("_")}
        if stream == "trades":
            out["created"], out["update_time"] = local_time(row["_created"]), local_time(row["_s"])
        elif stream == "users":
            out["created_at"], out["updated_at"] = local_time(row["_created"]), local_time(row["_s"])
        else:
            out["created_time"], out["update_time"] = row["_created"] * 1000, row["_s"] * 1000  # ms epoch
        return out

    def window(
        self, stream: str, start: int | None, end: int | None, status: str | None
    ) -> list[dict[str, Any]]:
        """Rows changed in ``[start, end]`` (seconds, inclusive), newest first, as the API lists them."""
        with self.lock:
            keys = self._keys[stream]
            lo = 0 if start is None else bisect.bisect_left(keys, (start, -1))
            hi = len(keys) if end is None else bisect.bisect_right(keys, (end, float("inf")))
            rows = self.tables[stream][lo:hi]
        if status:
            rows = [r for r in rows if r.get("status") == status]
        return rows[::-1]

    def get(self, stream: str, key: int) -> dict[str, Any] | None:
        """One row by its integer id."""
        with self.lock:
            return self._by_id[stream].get(key)

    def _stamp(self, stream: str) -> int:
        return max(self.now(), max((r["_s"] for r in self.tables[stream]), default=0) + 1)

    def modify(self, stream: str, count: int) -> dict[str, Any]:
        """Change ``count`` rows of ``stream`` (the first by id), one new second for all."""
        if stream not in STREAMS:
            raise KeyError(f"unknown stream {stream!r} (known: {', '.join(STREAMS)})")
        with self.lock:
            rows = sorted(self.tables[stream], key=lambda r: self.key_of(stream, r))[: max(0, count)]
            stamp = self._stamp(stream)
            for row in rows:
                row["_s"] = stamp
                row[EDITED[stream]] = f"{row[EDITED[stream]] or ''}·"
            self._reindex(stream)
        return {
            "stream": stream,
            "ids": [self.key_of(stream, r) for r in rows],
            "update_time": local_time(stamp),
        }

    def change_trade(self, tid: str, status: str) -> dict[str, Any]:
        """Move one trade to ``status`` (``TRADE_CLOSED`` for a cancellation; ``refund`` sets refund_state)."""
        if not tid.startswith("E") or not tid[1:].isdigit():
            raise ValueError(f"not a trade id: {tid!r}")
        with self.lock:
            row = self._by_id["trades"].get(int(tid[1:]))
            if row is None:
                raise KeyError(f"no trade {tid}")
            if status == "refund":
                row["refund_state"] = 2  # 全额退款
                row["status"] = "TRADE_CLOSED"
            elif status in STATUSES:
                row["status"] = status
            else:
                raise ValueError(f"unknown status {status!r} (one of {', '.join(STATUSES)}, or refund)")
            row["_s"] = self._stamp("trades")
            self._reindex("trades")
            return self.public("trades", row)

    def truth(self, stream: str, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Every row of ``stream`` in id order, with ``_malformed``."""
        if stream not in STREAMS:
            raise KeyError(f"unknown stream {stream!r} (known: {', '.join(STREAMS)})")
        with self.lock:
            rows = sorted(self.tables[stream], key=lambda r: self.key_of(stream, r))
        end = None if limit is None else offset + limit
        return [{**self.public(stream, r), "_malformed": r["_malformed"]} for r in rows[offset:end]]
