"""The Youzan streams: trades (with their order lines), buyers and items, incremental on the change time.

Each stream is read window by window (:func:`connectors.kit.windows.read_windows`: the API pages by
number inside ``start_update``/``end_update`` and refuses deep pages), from the bookmark to the shop's
present. Youzan lists a window newest first, so each window is sorted here and emitted oldest first;
the bookmark is the kit's compound ``(change time, id)`` cursor (a trade's id is its ``tid`` digits), and
because the window start is inclusive and whole-second, records at or before the cursor are skipped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from singer_sdk import typing as th

from connectors.kit.streams import KeysetStream, utc_iso
from connectors.kit.windows import read_windows
from connectors.youzan.client import YouzanClient

BEIJING = dt.timezone(dt.timedelta(hours=8))
#: the earliest change a full read asks for (Youzan opened in 2012)
FIRST = dt.datetime(2012, 1, 1, tzinfo=BEIJING)
MAX_DEPTH = 10_000
_STR, _INT, _TIME = th.StringType, th.IntegerType, th.DateTimeType


def beijing(text: str) -> str:
    """``yyyy-MM-dd HH:mm:ss`` (Beijing, as Youzan writes it) as ISO 8601 with ``+08:00``."""
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING).isoformat()


def _seconds(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def trade_record(raw: Mapping[str, Any], shop: str) -> dict[str, Any]:
    """A ``full_order_info`` entry (a list entry or a push's ``msg``) as the ``trades`` record."""
    full = raw.get("full_order_info") or {}
    info = full.get("order_info") or {}
    tid = str(info.get("tid") or "")
    return {
        "tid": tid,
        "tid_seq": int(tid[1:]) if tid[1:].isdigit() else 0,
        "status": info.get("status"),
        "refund_state": info.get("refund_state"),
        "created": beijing(info["created"]) if info.get("created") else None,
        "update_time": beijing(info["update_time"]),
        "buyer_info": full.get("buyer_info"),
        "address_info": full.get("address_info"),
        "pay_info": full.get("pay_info"),
        "buyer_message": (full.get("remark_info") or {}).get("buyer_message"),
        "orders": full.get("orders") or [],
        "shop": shop,
    }


class YouzanStream(KeysetStream):
    """One ``youzan.*`` list API read in change-time windows."""

    api: ClassVar[str]
    version: ClassVar[str]
    max_page_size: ClassVar[int | None] = 100
    #: the body key holding the list, and the total
    list_key: ClassVar[str]
    total_key: ClassVar[str]
    default_page_size = 100
    _tap: Any

    @property
    def client(self) -> YouzanClient:
        """The tap's shared client."""
        return self._tap.client  # type: ignore[no-any-return]

    def window_params(self, lo: int, hi: int) -> dict[str, Any]:
        """The window's parameters (``start_update``/``end_update`` in Beijing time)."""
        fmt = "%Y-%m-%d %H:%M:%S"
        return {
            "start_update": dt.datetime.fromtimestamp(lo, BEIJING).strftime(fmt),
            "end_update": dt.datetime.fromtimestamp(hi, BEIJING).strftime(fmt),
        }

    def flatten(self, raw: dict[str, Any]) -> dict[str, Any]:
        """One API list entry as the stream's record."""
        raise NotImplementedError

    def get_records(self, context: Mapping[str, Any] | None) -> Iterator[dict[str, Any]]:
        """Every record after the starting cursor, oldest change first."""
        after, since = self.read_start(context)
        lo = _seconds(since) if since else int(FIRST.timestamp())
        hi = int(dt.datetime.now(dt.UTC).timestamp()) + int(self.config.get("clock_skew_seconds") or 0)
        size = self.page_size

        def fetch(a: int, b: int, page_no: int) -> tuple[list[dict[str, Any]], int]:
            data = self.client.call(
                self.api, self.version, {**self.window_params(a, b), "page_no": page_no, "page_size": size}
            )
            data = data or {}
            return list(data.get(self.list_key) or []), int(data.get(self.total_key) or 0)

        rk, ik = self.replication_key, self.id_key
        for window in read_windows(
            fetch, lo, hi, page_size=size, max_depth=MAX_DEPTH, max_span=self.max_span()
        ):
            records = {}
            for raw in window:
                rec = self.flatten(raw)
                records[rec[ik]] = rec  # a record shifted across a page boundary comes twice
            for rec in sorted(records.values(), key=lambda r: (utc_iso(r[rk]), r[ik])):
                if not self.is_past(after, rec[rk], int(rec[ik])):
                    continue
                yield rec

    def max_span(self) -> int | None:
        """Largest window in seconds (config ``window_days``; None: one window, split on demand)."""
        days = self.config.get("window_days")
        return int(float(days) * 86400) if days else None


class TradesStream(YouzanStream):
    """``trades`` (``youzan.trades.sold.get`` 4.0.0): orders with their lines; buyer phones masked."""

    name = "trades"
    api, version = "youzan.trades.sold.get", "4.0.0"
    list_key, total_key = "full_order_info_list", "total_results"
    replication_key = "update_time"
    id_key = "tid_seq"
    primary_keys = ("tid",)
    schema = th.PropertiesList(
        th.Property("tid", _STR, required=True),
        th.Property("tid_seq", _INT, required=True, description="the tid's digits: the cursor's tie-break"),
        th.Property("status", _STR),
        th.Property("refund_state", _INT),
        th.Property("created", _TIME),
        th.Property("update_time", _TIME, required=True),
        th.Property(
            "buyer_info",
            th.ObjectType(
                th.Property("yz_open_id", _STR),
                th.Property("buyer_phone", _STR),
                th.Property("fans_nickname", _STR),
            ),
        ),
        th.Property(
            "address_info",
            th.ObjectType(
                *(
                    th.Property(k, _STR)
                    for k in (
                        "receiver_name",
                        "receiver_tel",
                        "delivery_province",
                        "delivery_city",
                        "delivery_address",
                    )
                )
            ),
        ),
        th.Property(
            "pay_info", th.ObjectType(*(th.Property(k, _STR) for k in ("total_fee", "payment", "post_fee")))
        ),
        th.Property("buyer_message", _STR),
        th.Property(
            "orders",
            th.ArrayType(
                th.ObjectType(
                    th.Property("oid", _STR, required=True),
                    th.Property("item_id", _INT),
                    th.Property("sku_id", _INT),
                    th.Property("outer_item_id", _STR),
                    th.Property("title", _STR),
                    th.Property("num", th.CustomType({"type": ["integer", "string", "null"]})),
                    th.Property("price", _STR),
                    th.Property("payment", _STR),
                )
            ),
        ),
        th.Property("shop", _STR, description="the shop (kdt_id) the trade belongs to"),
    ).to_dict()

    def flatten(self, raw: dict[str, Any]) -> dict[str, Any]:
        """``full_order_info`` as one record (``order_info`` fields at the top)."""
        return trade_record(raw, self._tap.shop)


class UsersStream(YouzanStream):
    """``users`` (``youzan.users.customer.list`` 1.0.0): the shop's buyers, with full mobiles."""

    name = "users"
    api, version = "youzan.users.customer.list", "1.0.0"
    list_key, total_key = "customers", "total"
    replication_key = "updated_at"
    id_key = "user_id"
    primary_keys = ("user_id",)
    schema = th.PropertiesList(
        th.Property("user_id", _INT, required=True),
        th.Property("yz_open_id", _STR),
        th.Property("name", _STR),
        th.Property("nick", _STR),
        th.Property("mobile", _STR),
        th.Property("gender", _INT),
        th.Property("province", _STR),
        th.Property("city", _STR),
        th.Property("address", _STR),
        th.Property("remark", _STR),
        th.Property("created_at", _TIME),
        th.Property("updated_at", _TIME, required=True),
    ).to_dict()

    def flatten(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Times as ISO 8601."""
        out = dict(raw)
        for key in ("created_at", "updated_at"):
            if out.get(key):
                out[key] = beijing(out[key])
        return out


class ItemsStream(YouzanStream):
    """``items`` (``youzan.items.onsale.get`` 3.0.0): products; prices in fen, times in milliseconds."""

    name = "items"
    api, version = "youzan.items.onsale.get", "3.0.0"
    max_page_size = 300
    list_key, total_key = "items", "count"
    replication_key = "update_time"
    id_key = "item_id"
    primary_keys = ("item_id",)
    schema = th.PropertiesList(
        th.Property("item_id", _INT, required=True),
        th.Property("alias", _STR),
        th.Property("title", _STR),
        th.Property("item_no", _STR),
        th.Property("price", _INT, description="fen (分)"),
        th.Property("quantity", _INT),
        th.Property("item_type", _INT),
        th.Property("created_time", _TIME),
        th.Property("update_time", _TIME, required=True),
    ).to_dict()

    def window_params(self, lo: int, hi: int) -> dict[str, Any]:
        """Items take the window in milliseconds."""
        return {"update_time_start": lo * 1000, "update_time_end": hi * 1000 + 999}

    def flatten(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Millisecond times as ISO 8601 (Beijing)."""
        out = dict(raw)
        for key in ("created_time", "update_time"):
            if out.get(key) is not None:
                out[key] = dt.datetime.fromtimestamp(int(out[key]) / 1000, BEIJING).isoformat()
        return out
