"""The ``notices`` stream: procurement notices by publish time, from the site's HTML or a vendor feed.

Both sources give the same records (the same schema, the same values), incremental on the compound
cursor ``(publish_time, id)`` with the kit's lookback as the overlap:

* ``html`` — the search page over a date window (colon dates, 20 per page, newest first) is listed
  in full, sorted ascending, and every notice after the cursor gets its detail page read. Paging a
  newest-first list while notices are published can show an item twice (handled: dedupe by id) but
  never hides one, because new notices push older ones down, not up.
* ``vendor`` — the JSON feed, ascending by ``publishTime`` (ms epochs); ``content`` is the detail
  page's 正文 and goes through the same parser as the HTML.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, ClassVar

from singer_sdk import typing as th

from connectors.kit.errors import NotFound
from connectors.kit.streams import KeysetStream, utc_iso
from connectors.tender import parse
from connectors.tender.client import TenderClient
from connectors.tender.regions import province, zone_of

CST = dt.timezone(dt.timedelta(hours=8))
PAGE = 20
#: search parameters a user may pin in the ``search`` setting (the rest are the tap's)
SEARCH_KEYS = ("kw", "bidType", "pinMu", "zoneId", "displayZone", "buyerName", "agentName")

_S = th.StringType
_LOT = th.ObjectType(
    th.Property("lot_no", th.IntegerType),
    th.Property("supplier", _S),
    th.Property("supplier_address", _S),
    th.Property("amount", _S, description="元, two decimals"),
    th.Property("amount_raw", _S),
)
_ITEM = th.ObjectType(
    th.Property("lot_no", th.IntegerType),
    th.Property("name", _S),
    th.Property("brand", _S),
    th.Property("model", _S),
    th.Property("quantity", _S),
    th.Property("unit_price", _S, description="元, two decimals"),
    th.Property("unit_price_raw", _S),
)
SCHEMA = th.PropertiesList(
    th.Property("id", th.IntegerType, required=True, description="the detail page's numeric id"),
    th.Property("publish_time", th.DateTimeType, required=True, description="+08:00"),
    th.Property("url", _S),
    th.Property("title", _S),
    th.Property("notice_type", _S, description="公开招标公告, 中标公告, 更正公告, 终止公告 …"),
    th.Property("project_no", _S, description="项目编号: links revisions of one project"),
    th.Property("project_name", _S),
    th.Property("summary", _S),
    th.Property("region", _S, description="province, short name"),
    th.Property("city", _S),
    th.Property("zone_id", _S),
    th.Property("category", _S, description="品目, e.g. 货物/通用设备/…"),
    th.Property("buyer", _S),
    th.Property("buyer_credit_code", _S),
    th.Property("buyer_address", _S),
    th.Property("buyer_phone", _S),
    th.Property("agency", _S),
    th.Property("agency_address", _S),
    th.Property("agency_phone", _S),
    th.Property("contact_person", _S),
    th.Property("contact_phone", _S),
    th.Property("budget", _S, description="预算金额 in 元, two decimals"),
    th.Property("budget_raw", _S),
    th.Property("doc_time", _S),
    th.Property("bid_open_time", th.DateTimeType),
    th.Property("bid_open_place", _S),
    th.Property("original_title", _S),
    th.Property("first_notice_date", th.DateType),
    th.Property("correction_date", th.DateType),
    th.Property("correction_items", _S),
    th.Property("termination_reason", _S),
    th.Property("lots", th.ArrayType(_LOT)),
    th.Property("items", th.ArrayType(_ITEM)),
    th.Property("content", _S, description="the 正文 as text"),
    th.Property("parse_error", _S, description="why the detail page could not be read in full"),
).to_dict()


def local_date(utc: str) -> dt.date:
    """A UTC ISO time's calendar date at +08:00 (the site's dates)."""
    return dt.datetime.fromisoformat(utc.replace("Z", "+00:00")).astimezone(CST).date()


def _after(record: dict[str, Any], since: str | None, after_id: int | None) -> bool:
    if since is None:
        return True
    key = utc_iso(str(record["publish_time"]))
    if after_id is None:
        return key >= since
    return (key, int(record["id"])) > (since, after_id)


class NoticesStream(KeysetStream):
    """``notices``: every notice after the cursor, ascending ``(publish_time, id)``."""

    name = "notices"
    primary_keys = ("id",)
    replication_key = "publish_time"
    id_key: ClassVar[str] = "id"
    schema = SCHEMA
    default_page_size = 50

    def __init__(self, tap: Any) -> None:
        super().__init__(tap)
        self._listing: list[dict[str, Any]] | None = None
        self._listing_from: dt.date | None = None
        #: what the last read did, for the Dagster checks (listed vs parsed, backoffs)
        self.listed = 0
        self.parsed = 0
        self.missing = 0

    @property
    def client(self) -> TenderClient:
        """The tap's shared client."""
        return self._tap.client  # type: ignore[no-any-return]

    def get_records(self, context: Any) -> Any:
        """As :class:`KeysetStream`, with a fresh listing per read."""
        self._listing, self._listing_from = None, None
        self.listed = self.parsed = self.missing = 0
        yield from super().get_records(context)

    def fetch_page(self, since: str | None, after_id: int | None, limit: int) -> Sequence[dict[str, Any]]:
        """Up to ``limit`` notices after ``(since, after_id)`` from the configured source."""
        if self.config.get("source", "html") == "vendor":
            return self._vendor_page(since, after_id, limit)
        return self._html_page(since, after_id, limit)

    # -- HTML ------------------------------------------------------------------------------------------
    def _list(self, start: dt.date | None) -> list[dict[str, Any]]:
        """Every search result from ``start`` (a date at +08:00) to today, ascending, deduplicated."""
        if self._listing is not None and (start is None or (self._listing_from or start) <= start):
            return self._listing
        fixed = {k: v for k, v in (self.config.get("search") or {}).items() if v not in (None, "")}
        today = dt.datetime.now(CST).date() + dt.timedelta(days=1)
        params: dict[str, Any] = {
            "searchtype": 1,
            "bidSort": 0,
            "dbselect": "bidx",
            "timeType": 6,
            "start_time": f"{start:%Y:%m:%d}" if start else "2000:01:01",
            "end_time": f"{today:%Y:%m:%d}",
            **fixed,
        }
        seen: dict[int, dict[str, Any]] = {}
        page, pages = 1, 1
        while page <= pages:
            total, items = parse.search_page(self.client.page("/bxsearch", page_index=page, **params))
            pages = max(1, -(-total // PAGE))
            for item in items:
                seen.setdefault(item["id"], item)
            page += 1
        listing = sorted(seen.values(), key=lambda r: (utc_iso(r["publish_time"]), r["id"]))
        self._listing, self._listing_from = listing, start
        self.listed = len(listing)
        return listing

    def _html_page(self, since: str | None, after_id: int | None, limit: int) -> list[dict[str, Any]]:
        start = local_date(since) if since else None
        wanted = [r for r in self._list(start) if _after(r, since, after_id)][:limit]
        out = []
        for item in wanted:
            record = self._detail(item)
            if record is not None:
                out.append(record)
        return out

    def _detail(self, item: dict[str, Any]) -> dict[str, Any] | None:
        path = httpx_path(item["url"])
        try:
            fields = parse.detail_page(self.client.page(path))
            error = None
        except NotFound:
            self.missing += 1  # withdrawn between the listing and now: nothing to record
            self.logger.warning("tender: notice %s is gone (HTTP 404); skipped", item["id"])
            return None
        except parse.PageError as exc:
            fields, error = {}, str(exc)
        self.parsed += 1
        record = {**_empty(), **item, **{k: v for k, v in fields.items() if v is not None or k not in item}}
        record["publish_time"] = item["publish_time"]  # the cursor is the listed time
        record["notice_type"] = item["notice_type"]
        record["parse_error"] = error
        return record

    # -- vendor feed -----------------------------------------------------------------------------------
    def _vendor_page(self, since: str | None, after_id: int | None, limit: int) -> list[dict[str, Any]]:
        start = int(dt.datetime.fromisoformat(since).timestamp() * 1000) if since else 0
        size = min(200, max(limit, 20))
        out: list[dict[str, Any]] = []
        page = 1
        while len(out) < limit:
            data = self.client.vendor("/api/v1/bids", startTime=start, pageNo=page, pageSize=size)
            rows = list(data.get("list") or [])
            self.listed += len(rows)
            for bid in rows:
                record = vendor_record(bid)
                if _after(record, since, after_id):
                    out.append(record)
            if len(rows) < size:
                break
            page += 1
        self.parsed += len(out[:limit])
        return out[:limit]


def httpx_path(url: str) -> str:
    """The path of a detail URL (the client has the base)."""
    if "://" in url:
        url = "/" + url.split("://", 1)[1].split("/", 1)[-1]
    return url


def _empty() -> dict[str, Any]:
    return {name: ([] if name in ("lots", "items") else None) for name in SCHEMA["properties"]}


def _ms_iso(ms: Any) -> str | None:
    if ms in (None, ""):
        return None
    return dt.datetime.fromtimestamp(int(ms) / 1000, CST).isoformat(timespec="seconds")


def vendor_record(bid: dict[str, Any]) -> dict[str, Any]:
    """A vendor feed item (BidsModel names, ms epochs) as a ``notices`` record."""
    try:
        body = parse.content_html(str(bid.get("content") or ""))
        error = None
    except parse.PageError as exc:
        body, error = {}, str(exc)
    kind = parse.notice_kind(str(bid.get("announcementType") or ""))
    region = province(bid.get("administrativeRegion"))
    first = _ms_iso(bid.get("firstNoticeDate"))
    corrected = _ms_iso(bid.get("correctionDate"))
    record = {
        **_empty(),
        **body,
        "id": int(bid["id"]),
        "publish_time": _ms_iso(bid["publishTime"]),
        "url": bid.get("website"),
        "title": (bid.get("title") or "").strip(),
        "notice_type": bid.get("announcementType"),
        "project_no": bid.get("projectCode") or body.get("project_no"),
        "project_name": bid.get("procurementName"),
        "summary": bid.get("summary"),
        "region": region,
        "city": bid.get("cityName"),
        "zone_id": bid.get("zoneId") or zone_of(region),
        "category": bid.get("item"),
        "buyer": bid.get("procurementCompany"),
        "buyer_credit_code": bid.get("creditCode"),
        "buyer_address": bid.get("purchaseUnitAddress"),
        "buyer_phone": bid.get("purchaseUnitContact"),
        "agency": bid.get("agencyName"),
        "agency_address": bid.get("agencyAddress"),
        "agency_phone": bid.get("agencyContact"),
        "contact_person": bid.get("projectContactPerson"),
        "contact_phone": bid.get("projectContactTel"),
        "budget_raw": bid.get("budget") if kind == "tender" else None,
        "budget": parse.amount(bid.get("budget")) if kind == "tender" else None,
        "doc_time": bid.get("docTime"),
        "bid_open_time": _ms_iso(bid.get("deadline")) if kind == "tender" else None,
        "bid_open_place": bid.get("bidOpenPlace"),
        "parse_error": error,
    }
    if kind == "correction":
        record["first_notice_date"] = first[:10] if first else body.get("first_notice_date")
        record["correction_date"] = corrected[:10] if corrected else body.get("correction_date")
    return record
