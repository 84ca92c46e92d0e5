"""A public procurement site (中国政府采购网 and provincial sites) plus a vendor's JSON feed, served locally.

HTML, shaped like the national site (``docs/connectors/tender.md`` has the details):

* ``GET /bxsearch?searchtype=1&page_index=1&bidSort=0&kw=&start_time=2024:05:01&end_time=2024:05:08
  &timeType=6&bidType=0&pinMu=0&zoneId=&displayZone=&buyerName=&agentName=&projectId=&dbselect=bidx``:
  20 results per page, 1-based ``page_index``, newest first, the total in the result header. Dates
  use colons; ``bidType`` 0 is every type; ``pinMu`` 0/1/2/3 all/货物/工程/服务; ``zoneId`` a
  province code (``440000``) or ``displayZone`` its name. A bad parameter is an HTTP 400 page.
* ``GET /cggg/dfgg/{gkzb|zbgg|gzgg|qtgg}/index.htm`` (and ``index_1.htm`` …): channel lists.
* ``GET /cggg/dfgg/{channel}/{YYYYMM}/t{YYYYMMDD}_{id}.htm``: detail pages. Provinces that serve GBK
  (山东, 河南, 湖南) send GBK bytes with ``Content-Type: text/html`` and no charset anywhere.
* Anti-bot: more than ``antibot_per_min`` HTML requests in ``antibot_window`` seconds (60 by
  default) get the 安全验证 page (HTTP 200, no results) until the window has room again; ``throttle``
  serves it at random.

Vendor feed (BidsModel field names, ms-epoch dates):
``GET /api/v1/bids?startTime=MS&endTime=MS&pageNo=1&pageSize=100`` with header ``X-Api-Key``,
ascending by ``(publishTime, id)``: ``{"code": 0, "message": "success", "data": {"total", "pageNo",
"pageSize", "list": [...]}}``. Errors are HTTP 200 with ``code`` 40001 (bad key), 40002 (bad
parameter), 42900 (too many requests).
"""

from __future__ import annotations

import bisect
import collections
import datetime as dt
import re
import threading
import time
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from connectors.kit import fakedata
from connectors.kit.simulator import API_FAULTS, FaultSpec, Simulator, pick_rows
from connectors.tender.simulator import pages
from connectors.tender.simulator.data import (
    BID_TYPES,
    CST,
    NOTICE_TYPES,
    PINMU,
    REGIONS,
    NoticeStore,
    buyer_company,
    detail_path,
    public,
    supplier,
)

PAGE = 20
MAX_VENDOR_PAGE = 200
MAX_QUERY = 2048
_DETAIL = re.compile(r"^/cggg/dfgg/(gkzb|zbgg|gzgg|qtgg)/(\d{6})/t(\d{8})_(\d{1,12})\.htm$")
_CHANNEL = re.compile(r"^/cggg/dfgg/(gkzb|zbgg|gzgg|qtgg)/index(?:_(\d{1,6}))?\.htm$")
_COLON_DATE = re.compile(r"^(\d{4}):(\d{2}):(\d{2})$")


class TenderSimulator(Simulator):
    """The procurement site and vendor feed with seeded notices, anti-bot pages, GBK provinces."""

    system = "tender"
    # a public site has no session to expire
    FAULTS: ClassVar[tuple[str, ...]] = tuple(f for f in API_FAULTS if f != "session_expiry")
    OWN_FAULTS: ClassVar[tuple[FaultSpec, ...]] = (
        FaultSpec(
            "antibot_per_min",
            "COUNT",
            "more than N HTML requests within `antibot_window` seconds get the anti-bot page",
        ),
        FaultSpec(
            "antibot_window", "SECONDS", "the window `antibot_per_min` counts requests in", default=60.0
        ),
    )
    STATS: ClassVar[tuple[str, ...]] = ("antibot", "throttled", "searches", "details", "vendor_calls")
    API_KEY = "tender-vendor-demo-key"

    def __init__(self, *, records: int = 100, faults: Any = None, seed: int = 7) -> None:
        super().__init__(records=records, faults=faults, seed=seed)
        self.store: NoticeStore | None = None
        self._seed_lock = threading.Lock()
        self._recent: collections.deque[float] = collections.deque()
        self._recent_lock = threading.Lock()
        self._malformed: dict[int, str] = {}

    # -- data ------------------------------------------------------------------------------------------
    def seed_data(self) -> None:
        """Seed the notices once (row-level faults apply now)."""
        with self._seed_lock:
            if self.store is not None:
                return
            store = NoticeStore(self.records, self.seed)
            rng = fakedata.FastRandom(f"{self.seed}:tender:malformed")
            rate = self.faults.value("malformed", 0.0)
            for n in store.notices:
                if rate > 0 and rng.random() < rate:
                    n["title"], self._malformed[n["id"]] = " ", "title: missing"
            share = self.faults.value("same_second", 0.0)
            if share and store.notices:
                tie = store.notices[len(store.notices) // 2]["publish_time"]
                for i in pick_rows(
                    len(store.notices), share, fakedata.FastRandom(f"{self.seed}:tender:same")
                ):
                    store.notices[i]["publish_time"] = tie
                store.notices.sort(key=lambda n: (n["publish_time"], n["id"]))
            self.store = store

    @property
    def data(self) -> NoticeStore:
        """The seeded notices."""
        self.seed_data()
        assert self.store is not None
        return self.store

    def buyer_companies(self, count: int = 2000) -> list[fakedata.Company]:
        """The company buyers notices draw from (a test seeds some into the CRM as accounts)."""
        return [buyer_company(i, self.seed) for i in range(count)]

    def suppliers(self, count: int = 300) -> list[fakedata.Company]:
        """The suppliers awards name as winners."""
        return [supplier(i, self.seed) for i in range(count)]

    # -- routes ----------------------------------------------------------------------------------------
    def api_routes(self) -> list[BaseRoute]:
        """The site's pages and the vendor feed."""
        return [
            Route("/bxsearch", self._search, methods=["GET"]),
            Route("/api/v1/bids", self._vendor, methods=["GET"]),
            Route("/cggg/{path:path}", self._cggg, methods=["GET"]),
        ]

    def control_routes(self) -> list[BaseRoute]:
        """``POST /_sim/publish {count}``: new notices appear now (``/_sim/modify`` is the same)."""
        return [
            Route("/_sim/publish", self._sim_publish, methods=["POST"]),
            Route("/_sim/modify", self._sim_publish, methods=["POST"]),
        ]

    def credentials(self) -> dict[str, Any]:
        """The vendor feed's demo key."""
        return {"api_key": self.API_KEY}

    def tap_config(self, **overrides: Any) -> dict[str, Any]:
        """A ready ``tap-tender`` config for this running simulator (the HTML source)."""
        return {"base_url": self.base_url, **overrides}

    def vendor_config(self, **overrides: Any) -> dict[str, Any]:
        """A ``tap-tender`` config reading the vendor feed of this simulator."""
        return {"base_url": self.base_url, "source": "vendor", "api_key": self.API_KEY, **overrides}

    # -- HTML ------------------------------------------------------------------------------------------
    @staticmethod
    def html(text: str, *, gbk: bool = False, status: int = 200) -> Response:
        """An HTML response: UTF-8 declared in the header, or GBK bytes with no charset at all."""
        if gbk:
            return Response(text.encode("gbk"), status_code=status, headers={"content-type": "text/html"})
        return Response(text.encode(), status_code=status, media_type="text/html; charset=utf-8")

    def _antibot(self) -> bool:
        """Whether this HTML request gets the anti-bot page (and count it)."""
        limit = int(self.faults.value("antibot_per_min", 0))
        blocked = False
        if limit:
            window = self.faults.value("antibot_window", 60.0)
            now = time.monotonic()
            with self._recent_lock:
                while self._recent and self._recent[0] <= now - window:
                    self._recent.popleft()
                if len(self._recent) >= limit:
                    blocked = True
                else:
                    self._recent.append(now)
        if not blocked and self.chance("throttle"):
            self.count("throttled")
            blocked = True
        if blocked:
            self.count("antibot")
        return blocked

    async def _search(self, request: Request) -> Response:
        failure = await self.transport_faults()
        if failure is not None:
            return failure
        if self._antibot():
            return self.html(pages.antibot_page())
        self.count("searches")
        q = request.query_params
        if len(str(request.url.query)) > MAX_QUERY:
            return self.html("<p>请求参数过长</p>", status=400)
        try:
            page_index = int(q.get("page_index") or 1)
            if page_index < 1:
                raise ValueError("page_index starts at 1")
            start = _colon_date(q.get("start_time"), "start_time")
            end = _colon_date(q.get("end_time"), "end_time")
            bid_type = int(q.get("bidType") or 0)
            if bid_type and bid_type not in BID_TYPES:
                raise ValueError(f"unknown bidType {bid_type}")
            pinmu = int(q.get("pinMu") or 0)
            if pinmu and pinmu not in PINMU:
                raise ValueError(f"unknown pinMu {pinmu}")
            zone = q.get("zoneId") or ""
            region = q.get("displayZone") or ""
            if zone and zone not in {z for z, _ in REGIONS.values()}:
                raise ValueError(f"unknown zoneId {zone}")
        except ValueError as exc:
            return self.html(f"<p>参数错误：{pages.esc(str(exc))}</p>", status=400)
        kw, buyer, agent = q.get("kw") or "", q.get("buyerName") or "", q.get("agentName") or ""
        project = q.get("projectId") or ""

        def keep(n: dict[str, Any]) -> bool:
            day = n["publish_time"][:10]
            return (
                (start is None or day >= start)
                and (end is None or day <= end)
                and (not bid_type or NOTICE_TYPES[n["notice_type"]][1] == bid_type)
                and (not pinmu or n["_pinmu"] == PINMU[pinmu])
                and (not zone or n["zone_id"] == zone)
                and (not region or n["region"] == region)
                and (not kw or kw in n["title"] or kw in n["content"])
                and (not buyer or buyer in n["buyer"])
                and (not agent or agent in n["agency"])
                and (not project or project == n["project_no"])
            )

        hits = [n for n in reversed(self.data.snapshot()) if keep(n)]  # newest first (bidSort=0)
        items = hits[(page_index - 1) * PAGE : page_index * PAGE]
        return self.html(pages.search_page(self._public_base(), kw, len(hits), page_index, items))

    async def _cggg(self, request: Request) -> Response:
        failure = await self.transport_faults()
        if failure is not None:
            return failure
        path = request.url.path
        if self._antibot():
            return self.html(pages.antibot_page())
        if m := _DETAIL.match(path):
            self.count("details")
            notice = self.data.by_id.get(int(m.group(4)))
            if notice is None or detail_path(notice) != path:
                return self.html("<p>您访问的页面不存在</p>", status=404)
            return self.html(pages.detail_page(notice), gbk=notice["_gbk"])
        if m := _CHANNEL.match(path):
            channel, page = m.group(1), int(m.group(2) or 0)
            rows = [n for n in reversed(self.data.snapshot()) if NOTICE_TYPES[n["notice_type"]][2] == channel]
            total_pages = max(1, -(-len(rows) // PAGE))
            if page >= total_pages:
                return self.html("<p>您访问的页面不存在</p>", status=404)
            items = rows[page * PAGE : (page + 1) * PAGE]
            return self.html(pages.channel_page(self._public_base(), channel, page, total_pages, items))
        return self.html("<p>您访问的页面不存在</p>", status=404)

    def _public_base(self) -> str:
        return self.base_url

    # -- vendor JSON -----------------------------------------------------------------------------------
    async def _vendor(self, request: Request) -> Response:
        failure = await self.transport_faults()
        if failure is not None:
            return failure
        self.count("vendor_calls")
        if request.headers.get("x-api-key") != self.API_KEY:
            return self.json({"code": 40001, "message": "apikey 无效", "data": None})
        if self.chance("throttle"):
            self.count("throttled")
            return self.json({"code": 42900, "message": "请求过于频繁，请稍后再试", "data": None})
        q = request.query_params
        try:
            start = int(q.get("startTime") or 0)
            end = int(q["endTime"]) if q.get("endTime") else None
            page_no = int(q.get("pageNo") or 1)
            size = int(q.get("pageSize") or 50)
            if page_no < 1 or not 1 <= size <= MAX_VENDOR_PAGE:
                raise ValueError(f"pageNo >= 1 and pageSize 1..{MAX_VENDOR_PAGE}")
        except ValueError as exc:
            return self.json({"code": 40002, "message": f"参数错误: {exc}", "data": None})
        rows = self.data.snapshot()  # ascending (publish_time, id)
        keys = [_ms(n["publish_time"]) for n in rows]
        lo = bisect.bisect_left(keys, start)
        hi = len(rows) if end is None else bisect.bisect_right(keys, end)
        window = rows[lo:hi]
        chunk = window[(page_no - 1) * size : page_no * size]
        data = {
            "total": len(window),
            "pageNo": page_no,
            "pageSize": size,
            "list": [self._bids(n) for n in chunk],
        }
        return self.json({"code": 0, "message": "success", "data": data})

    def _bids(self, n: dict[str, Any]) -> dict[str, Any]:
        """A notice as the vendor sends it: BidsModel names, ms epochs, the 正文 HTML in ``content``."""
        first = n["first_notice_date"] or n["publish_time"][:10]
        return {
            "id": n["id"],
            "title": n["title"],
            "projectCode": n["project_no"],
            "procurementName": n["project_name"],
            "administrativeRegion": n["region"],
            "cityName": n["city"],
            "zoneId": n["zone_id"],
            "announcementType": n["notice_type"],
            "projectContactPerson": n["contact_person"],
            "projectContactTel": n["contact_phone"],
            "procurementCompany": n["buyer"],
            "creditCode": n["buyer_credit_code"],
            "purchaseUnitAddress": n["buyer_address"],
            "purchaseUnitContact": n["buyer_phone"],
            "agencyName": n["agency"],
            "agencyAddress": n["agency_address"],
            "agencyContact": n["agency_phone"],
            "budget": n["budget_raw"],
            "docTime": n["doc_time"],
            "deadline": _ms(n["bid_open_time"]) if n["bid_open_time"] else None,
            "bidOpenPlace": n["bid_open_place"],
            "publishTime": _ms(n["publish_time"]),
            "firstNoticeDate": _ms(first + "T00:00:00+08:00"),
            "correctionDate": _ms(n["correction_date"] + "T00:00:00+08:00") if n["correction_date"] else None,
            "item": n["category"],
            "website": self.base_url + detail_path(n),
            "summary": n["summary"],
            "content": pages.content_html(n),
        }

    # -- control and truth -----------------------------------------------------------------------------
    async def _sim_publish(self, request: Request) -> Response:
        return await self.control_call(request, self.publish, {"count": int})

    def publish(self, count: int) -> dict[str, Any]:
        """Publish ``count`` new notices now; returns their ids."""
        notices = self.data.publish(count)
        return {
            "ids": [n["id"] for n in notices],
            "publish_time": notices[-1]["publish_time"] if notices else None,
        }

    def modify(self, stream: str, count: int) -> dict[str, Any]:
        """The standard suite's edit: on a procurement site that is ``count`` new notices."""
        if stream != "notices":
            raise KeyError(f"unknown stream {stream!r} (known: notices)")
        return self.publish(count)

    def truth_streams(self) -> tuple[str, ...]:
        """The streams ``truth`` knows."""
        return ("notices",)

    def truth(self, stream: str, *, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Every published notice in ``(publish_time, id)`` order, as parsed values, with ``url`` and
        ``_malformed``."""
        if stream != "notices":
            raise KeyError(f"unknown stream {stream!r} (known: notices)")
        rows = self.data.snapshot()
        end = None if limit is None else offset + limit
        base = self.base_url
        return [
            {**public(n), "url": base + detail_path(n), "_malformed": self._malformed.get(n["id"])}
            for n in rows[offset:end]
        ]

    def counts(self) -> dict[str, int]:
        """Notices published."""
        return {"notices": len(self.data.snapshot())}


def _colon_date(text: str | None, name: str) -> str | None:
    """``2024:05:01`` as ``2024-05-01`` (None when blank); anything else is a ValueError."""
    if not text:
        return None
    m = _COLON_DATE.match(text)
    if not m:
        raise ValueError(f"{name} must look like 2024:05:01")
    return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))).isoformat()


def _ms(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso).astimezone(CST).timestamp() * 1000)
