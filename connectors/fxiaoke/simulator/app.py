"""The Fxiaoke OpenAPI over HTTP: both token generations and their limits, the CRM data and object
services, per-endpoint rate limits, the daily quota, and the control API."""

from __future__ import annotations

import asyncio
import collections
import json
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from connectors.fxiaoke.objects import OBJECTS
from connectors.fxiaoke.simulator.data import (
    ERR_PARAM,
    QueryError,
    TenantStore,
    WriteRefused,
)
from connectors.kit.simulator import API_FAULTS, FaultSpec, Simulator

#: errorCode values (HTTP 200 with errorCode != 0)
TOKEN_EXPIRED = 20016  # corpAccessToken / accessToken 已过期
TOKEN_INVALID = 20015  # token 无效
APP_SECRET_WRONG = 20001  # appId / appSecret / permanentCode 错误
TOKEN_FREQ = 20031  # 获取 token 过于频繁 (10 次/分钟)
TOKEN_CONCURRENT = 20032  # 获取 token 的并发调用
THROTTLED = 10009  # 接口调用频率超过限制 (100 次 / 20 秒 / 接口)
QUOTA_EXCEEDED = 30002  # 当日调用配额已用完
QUOTA_NOT_PURCHASED = 30003  # 未购买接口调用配额
BODY_LIMIT = 2 * 1024 * 1024
TOKEN_TTL = 7200
TOKEN_REUSE = 6600
DATA_ACTIONS = ("query", "get", "create", "update", "invalid", "delete", "changeOwner")
OPEN_USER_ID = "FSUID_1000"


@dataclass
class _Token:
    value: str
    generation: str  # "v2" | "oauth"
    issued: float
    calls: int = 0


class _Window:
    """Calls per key in a sliding window, and the most ever seen in one window (for the targets)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self.peak: dict[str, int] = collections.defaultdict(int)
        self.lock = threading.Lock()

    def add(self, key: str, now: float) -> int:
        """Record a call; the number of calls in the window ending now, this one included."""
        with self.lock:
            q = self.calls[key]
            while q and q[0] <= now - self.seconds:
                q.popleft()
            q.append(now)
            self.peak[key] = max(self.peak[key], len(q))
            return len(q)


class FxiaokeSimulator(Simulator):
    """A Fxiaoke (纷享销客) CRM OpenAPI server with seeded data, the kit's fault switches and its own.

    ``records`` is the number of accounts; contacts, leads, opportunities, sales orders (with 1-3
    product lines) and payments default to the same count. ``rate_limit`` calls per ``rate_window``
    seconds per endpoint (100 / 20 s, as documented) and ``token_limit`` token calls per
    ``token_window`` seconds (10 / 60 s) can be scaled down for tests. The clock can be moved (:meth:`advance`) to expire tokens without
    waiting two hours.
    """

    system: ClassVar[str] = "fxiaoke"
    FAULTS: ClassVar[tuple[str, ...]] = (*API_FAULTS, "lost_response")
    OWN_FAULTS: ClassVar[tuple[FaultSpec, ...]] = (
        FaultSpec("daily_quota", "COUNT", "after N data calls the day's quota is spent: errorCode 30002"),
        FaultSpec("quota_not_purchased", "RATE", "data calls answer errorCode 30003 (no quota bought)"),
    )
    STATS: ClassVar[tuple[str, ...]] = (
        "token_calls",
        "tokens_issued",
        "tokens_reused",
        "token_refused_rate",
        "token_refused_concurrent",
        "tokens_expired",
        "throttled",
        "quota_refused",
        "queries",
        "rows_returned",
        "gets",
        "creates",
        "updates",
        "invalids",
        "deletes",
        "change_owners",
        "describes",
        "write_errors",
        "lost_responses",
        "bad_requests",
    )
    APP_ID = "FSAID_131a8c5"
    APP_SECRET = "7f3e9c2a4b1d4e8f9a0b6c5d3e2f1a09"
    PERMANENT_CODE = "A1B2C3D4E5F60718293A4B5C6D7E8F90"
    CORP_ID = "FSCID_735610"
    EA = "735610"

    def __init__(
        self,
        *,
        contacts: int | None = None,
        leads: int | None = None,
        opportunities: int | None = None,
        orders: int | None = None,
        payments: int | None = None,
        rate_limit: int = 100,
        rate_window: float = 20.0,
        token_limit: int = 10,
        token_window: float = 60.0,
        token_latency: float = 0.02,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        n = self.records

        def pick(v: int | None) -> int:
            return max(0, int(n if v is None else v))

        counts = {
            "AccountObj": max(0, int(n)),
            "ContactObj": pick(contacts),
            "LeadsObj": pick(leads),
            "NewOpportunityObj": pick(opportunities),
            "SalesOrderObj": pick(orders),
            "PaymentObj": pick(payments),
        }
        self._offset = 0.0
        self.store = TenantStore(self.seed, counts, self.faults, self.clock)
        self.rate_limit, self.rate_window = rate_limit, rate_window
        self.token_limit, self.token_window, self.token_latency = token_limit, token_window, token_latency
        self._endpoint_window = _Window(rate_window)
        self._token_window = _Window(token_window)
        self._tokens: dict[str, _Token] = {}
        self._current: dict[str, _Token] = {}
        self._token_busy = False
        self._token_lock = threading.Lock()
        self._data_calls = 0

    # -- clock ------------------------------------------------------------------------------------
    def clock(self) -> float:
        """The server's wall clock (moved by :meth:`advance`)."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the server's clock forward (tokens age; the rate windows use real time)."""
        self._offset += float(seconds)

    # -- Simulator API ------------------------------------------------------------------------------
    def seed_data(self) -> None:
        """Seed every object once (row-level faults apply now)."""
        self.store.faults = self.faults
        self.store.populate()

    def credentials(self) -> dict[str, Any]:
        """The demo app's credentials (both token generations take the same three)."""
        return {
            "app_id": self.APP_ID,
            "app_secret": self.APP_SECRET,
            "permanent_code": self.PERMANENT_CODE,
            "open_user_id": OPEN_USER_ID,
        }

    def tap_config(self, **overrides: Any) -> dict[str, Any]:
        """A ready ``tap-fxiaoke`` config for this running simulator."""
        return {"base_url": self.base_url, **self.credentials(), **overrides}

    def truth_streams(self) -> tuple[str, ...]:
        """Object apiNames ``truth`` knows."""
        return tuple(OBJECTS)

    def truth(self, stream: str, *, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Every record of ``stream`` (an apiName) in ``_id`` order, with ``_malformed``."""
        self.seed_data()
        return self.store.truth(stream, offset, limit)

    def counts(self) -> dict[str, int]:
        """Records per object."""
        self.seed_data()
        with self.store.lock:
            return {k: len(v) for k, v in self.store.rows.items()}

    def stats(self) -> dict[str, Any]:  # type: ignore[override]
        """The counters, the store's, and the peaks: most calls to one endpoint in one rate window
        (``peak_calls_per_window``) and most token calls in one minute (``peak_token_calls_per_minute``)."""
        out: dict[str, Any] = {k: v for k, v in super().stats().items() if not k.startswith("api:")}
        out.update(self.store.stats)
        return out

    def peaks(self) -> dict[str, int]:
        """The most calls to one endpoint seen in one rate window (``calls_per_window``) and the
        most token calls seen in one minute (``token_calls_per_minute``): the limits' evidence."""
        return {
            "calls_per_window": max(self._endpoint_window.peak.values(), default=0),
            "token_calls_per_minute": max(self._token_window.peak.values(), default=0),
        }

    def calls_by_endpoint(self) -> dict[str, int]:
        """API calls per endpoint since the last reset."""
        return dict(sorted(self._calls_by_endpoint().items()))

    def _calls_by_endpoint(self) -> dict[str, int]:
        with self._stats_lock:
            return {k[4:]: v for k, v in self._stats.items() if k.startswith("api:")}

    def reset_stats(self) -> None:
        """Zero the counters and the peaks."""
        super().reset_stats()
        with self._stats_lock:
            for k in [k for k in self._stats if k.startswith("api:")]:
                del self._stats[k]
        for key in self.store.stats:
            self.store.stats[key] = 0
        self._endpoint_window = _Window(self.rate_window)
        self._token_window = _Window(self.token_window)

    def expire_tokens(self) -> int:
        """Drop every token (20016 on the next call with one); returns how many."""
        with self._token_lock:
            n = len(self._tokens)
            self._tokens.clear()
            self._current.clear()
            return n

    # control helpers for tests and the demo
    def edit(self, obj: str, rid: str, values: Mapping[str, Any], *, user: str = "FSUID_1001") -> None:
        """Change a record as a user in the CRM would (its ``last_modified_time`` moves)."""
        self.seed_data()
        self.store.edit(obj, rid, values, user=user)

    def tamper(self, obj: str, rid: str, values: Mapping[str, Any]) -> None:
        """Change a record behind the API's back (no new modification time: only a scan sees it)."""
        self.seed_data()
        self.store.edit(obj, rid, values, stamp=False)

    def approve(self, obj: str, rid: str, *, reject: bool = False) -> None:
        """Finish the approval flow of a record."""
        self.store.approve(obj, rid, reject=reject)

    def modify(self, stream: str, count: int) -> dict[str, Any]:
        """Edit ``count`` records of ``stream`` (the first ones in ``_id`` order): the standard suite's hook."""
        self.seed_data()
        field = {
            "ContactObj": "job_title",
            "LeadsObj": "company",
            "NewOpportunityObj": "name",
            "SalesOrderObj": "remark",
            "PaymentObj": "erp_bill_no__c",
        }.get(stream, "remark")
        ids = [r["_id"] for r in self.store.truth(stream, 0, count)]
        stamp = int(self.clock())
        for rid in ids:
            self.store.edit(stream, rid, {field: f"modified-{stamp}-{rid[-4:]}"})
        return {"stream": stream, "modified": len(ids)}

    # -- HTTP ---------------------------------------------------------------------------------------
    def api_routes(self) -> list[BaseRoute]:
        """The OpenAPI routes."""
        return [
            Route("/cgi/corpAccessToken/get/V2", self._token_v2, methods=["POST"]),
            Route("/oauth2.0/token", self._token_oauth, methods=["POST"]),
            Route("/cgi/crm/v2/object/list", self._object_list, methods=["POST"]),
            Route("/cgi/crm/v2/object/describe", self._describe, methods=["POST"]),
            Route("/cgi/crm/v2/data/{action}", self._data, methods=["POST"]),
            Route("/cgi/crm/custom/v2/data/{action}", self._custom_data, methods=["POST"]),
        ]

    def control_routes(self) -> list[BaseRoute]:
        """``/_sim/peaks``, ``/_sim/edit``, ``/_sim/approve``, ``/_sim/advance``, ``/_sim/expire-tokens``, ``/_sim/modify``."""
        return [
            Route("/_sim/peaks", self._sim_peaks, methods=["GET"]),
            Route("/_sim/edit", self._sim_edit, methods=["POST"]),
            Route("/_sim/approve", self._sim_approve, methods=["POST"]),
            Route("/_sim/advance", self._sim_advance, methods=["POST"]),
            Route("/_sim/expire-tokens", self._sim_expire, methods=["POST"]),
            Route("/_sim/modify", self._sim_modify, methods=["POST"]),
        ]

    def _answer(self, code: int, message: str, **data: Any) -> Response:
        return self.json({"errorCode": code, "errorMessage": message, "traceId": uuid.uuid4().hex, **data})

    async def _body(self, request: Request) -> dict[str, Any] | None:
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > BODY_LIMIT):
            return None
        raw = await request.body()
        if len(raw) > BODY_LIMIT:
            return None
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    # tokens ---------------------------------------------------------------------------------------
    async def _token_v2(self, request: Request) -> Response:
        return await self._token(request, "v2")

    async def _token_oauth(self, request: Request) -> Response:
        return await self._token(request, "oauth")

    async def _token(self, request: Request, generation: str) -> Response:
        failure = await self.transport_faults()
        if failure is not None:
            return failure
        self.count("token_calls")
        self._token_window.add("token", time.monotonic())
        body = await self._body(request)
        if body is None:
            self.count("bad_requests")
            return self._answer(ERR_PARAM, "请求体须为 JSON 对象")
        with self._token_lock:
            if self._token_busy:
                self.count("token_refused_concurrent")
                return self._answer(TOKEN_CONCURRENT, "获取token接口不允许并发调用")
            recent = len(
                [t for t in self._token_window.calls["token"] if t > time.monotonic() - self.token_window]
            )
            if recent > self.token_limit:
                self.count("token_refused_rate")
                return self._answer(
                    TOKEN_FREQ, f"获取token过于频繁: 每 {self.token_window:g} 秒最多 {self.token_limit} 次"
                )
            self._token_busy = True
        try:
            await asyncio.sleep(self.token_latency)  # the real endpoint takes a while: overlap shows
            if generation == "oauth" and body.get("grantType") != "app_secret":
                return self._answer(ERR_PARAM, "grantType 须为 app_secret")
            if (body.get("appId"), body.get("appSecret"), body.get("permanentCode")) != (
                self.APP_ID,
                self.APP_SECRET,
                self.PERMANENT_CODE,
            ):
                return self._answer(APP_SECRET_WRONG, "appId、appSecret 或 permanentCode 错误")
            now = self.clock()
            with self._token_lock:
                current = self._current.get(generation)
                if (
                    current is not None
                    and current.value in self._tokens
                    and now - current.issued < TOKEN_REUSE
                ):
                    self.count("tokens_reused")
                    token = current
                else:
                    token = _Token(secrets.token_hex(16), generation, now)
                    self._tokens[token.value] = token
                    self._current[generation] = token
                    self.count("tokens_issued")
            left = int(TOKEN_TTL - (now - token.issued))
            if generation == "v2":
                return self._answer(
                    0, "success", corpAccessToken=token.value, corpId=self.CORP_ID, expiresIn=left
                )
            return self._answer(0, "success", accessToken=token.value, ea=self.EA, expiresIn=left)
        finally:
            with self._token_lock:
                self._token_busy = False

    def _authorise(self, request: Request, body: Mapping[str, Any]) -> Response | None:
        """The token check of every data call (either generation); None when it passes."""
        auth = request.headers.get("authorization", "")
        if auth:
            value = auth.removeprefix("Bearer ").strip()
            if request.headers.get("x-fs-ea") != self.EA or not request.headers.get("x-fs-userid"):
                return self._answer(ERR_PARAM, "缺少 x-fs-ea / x-fs-userid 请求头")
            trace = request.query_params.get("thirdTraceId", "")
            if not 8 <= len(trace) <= 64:
                return self._answer(ERR_PARAM, "URL 须带 thirdTraceId (每次调用一个新的 UUID)")
            generation = "oauth"
        else:
            value = str(body.get("corpAccessToken") or "")
            if body.get("corpId") != self.CORP_ID or not str(body.get("currentOpenUserId") or "").startswith(
                "FSUID_"
            ):
                return self._answer(ERR_PARAM, "corpId 或 currentOpenUserId 缺失或错误")
            generation = "v2"
        with self._token_lock:
            token = self._tokens.get(value)
            if token is None or token.generation != generation:
                return self._answer(TOKEN_INVALID, "token 无效")
            if self.clock() - token.issued >= TOKEN_TTL:
                del self._tokens[value]
                self.count("tokens_expired")
                return self._answer(TOKEN_EXPIRED, "token 已过期")
            token.calls += 1
            expiry = int(self.faults.value("session_expiry", 0))
            if expiry and token.calls > expiry:
                del self._tokens[value]
                self._current.pop(generation, None)
                self.count("tokens_expired")
                return self._answer(TOKEN_EXPIRED, "token 已过期")
        return None

    async def _guard(self, request: Request, endpoint: str) -> tuple[dict[str, Any] | None, Response | None]:
        """Transport faults, the per-endpoint rate limit, the body, the token, the quota."""
        failure = await self.transport_faults()
        if failure is not None:
            return None, failure
        self.count(f"api:{endpoint}")
        in_window = self._endpoint_window.add(endpoint, time.monotonic())
        if in_window > self.rate_limit or self.chance("throttle"):
            self.count("throttled")
            return None, self._answer(
                THROTTLED, f"接口调用频率超过限制: 每 {self.rate_window:g} 秒最多 {self.rate_limit} 次"
            )
        body = await self._body(request)
        if body is None:
            self.count("bad_requests")
            return None, self._answer(ERR_PARAM, "请求体须为 JSON 对象 (最大 2 MB)")
        denied = self._authorise(request, body)
        if denied is not None:
            return None, denied
        if self.chance("quota_not_purchased"):
            self.count("quota_refused")
            return None, self._answer(QUOTA_NOT_PURCHASED, "未购买接口调用配额")
        quota = int(self.faults.value("daily_quota", 0))
        with self._stats_lock:
            self._data_calls += 1
            spent = quota and self._data_calls > quota
        if spent:
            self.count("quota_refused")
            return None, self._answer(QUOTA_EXCEEDED, "当日接口调用配额已用完")
        return body, None

    # object services ------------------------------------------------------------------------------
    async def _object_list(self, request: Request) -> Response:
        body, failure = await self._guard(request, "object/list")
        if failure is not None:
            return failure
        objects = [
            {"describeApiName": o.api_name, "describeDisplayName": o.label, "defineType": "package"}
            for o in OBJECTS.values()
        ]
        return self._answer(0, "OK", data={"objects": objects})

    async def _describe(self, request: Request) -> Response:
        body, failure = await self._guard(request, "object/describe")
        if failure is not None:
            return failure
        assert body is not None
        desc = OBJECTS.get(str(body.get("apiName")))
        if desc is None:
            return self._answer(ERR_PARAM, f"对象不存在: {str(body.get('apiName'))[:60]}")
        self.count("describes")
        return self._answer(0, "OK", data={"describe": desc.describe()})

    async def _custom_data(self, request: Request) -> Response:
        return await self._data_call(request, custom=True)

    async def _data(self, request: Request) -> Response:
        return await self._data_call(request, custom=False)

    async def _data_call(self, request: Request, *, custom: bool) -> Response:
        action = request.path_params["action"]
        prefix = "custom/data" if custom else "data"
        if action not in DATA_ACTIONS:
            return self._answer(ERR_PARAM, f"接口不存在: {action[:40]}")
        body, failure = await self._guard(request, f"{prefix}/{action}")
        if failure is not None:
            return failure
        assert body is not None
        self.seed_data()
        data = body.get("data")
        if not isinstance(data, dict):
            self.count("bad_requests")
            return self._answer(ERR_PARAM, "缺少 data")
        obj = str(
            data.get("dataObjectApiName") or (data.get("object_data") or {}).get("dataObjectApiName") or ""
        )
        if obj.endswith("__c") != custom:
            where = "/cgi/crm/custom/v2/data/" if obj.endswith("__c") else "/cgi/crm/v2/data/"
            return self._answer(ERR_PARAM, f"{obj[:60]}: 请使用 {where}{action}")
        user = str(body.get("currentOpenUserId") or request.headers.get("x-fs-userid") or OPEN_USER_ID)
        approval = body.get("triggerApprovalFlow", data.get("triggerApprovalFlow", True)) is not False
        workflow = body.get("triggerWorkFlow", data.get("triggerWorkFlow", True)) is not False
        loop = asyncio.get_running_loop()
        try:
            if action == "query":
                info = data.get("search_query_info") or {}
                if not isinstance(info, dict):
                    raise QueryError("search_query_info 须为对象")
                rows, total, offset, limit = await loop.run_in_executor(None, self.store.query, obj, info)
                self.count("queries")
                self.count("rows_returned", len(rows))
                return self._answer(
                    0, "OK", data={"dataList": rows, "total": total, "offset": offset, "limit": limit}
                )
            if action == "get":
                row = self.store.get(obj, str(data.get("objectDataId") or ""))
                self.count("gets")
                return self._answer(0, "OK", data=row)
            result = await loop.run_in_executor(
                None, lambda: self._write(action, obj, data, user, approval, workflow)
            )
        except QueryError as exc:
            self.count("bad_requests")
            return self._answer(exc.code, str(exc))
        except WriteRefused as exc:
            self.count("write_errors")
            return self._answer(exc.code, str(exc))
        if self.chance("lost_response"):
            self.count("lost_responses")
            return self.json("504 Gateway Time-out", status=504)
        return self._answer(0, "OK", **result)

    def _write(
        self, action: str, obj: str, data: Mapping[str, Any], user: str, approval: bool, workflow: bool
    ) -> dict[str, Any]:
        if action == "create":
            object_data = data.get("object_data")
            if not isinstance(object_data, dict):
                raise WriteRefused("缺少 object_data", ERR_PARAM)
            details = data.get("details") or {}
            rid = self.store.create(obj, object_data, details, user, approval=approval, workflow=workflow)
            self.count("creates")
            return {"dataId": rid}
        if action == "update":
            object_data = data.get("object_data")
            if not isinstance(object_data, dict) or not object_data.get("_id"):
                raise WriteRefused("缺少 object_data._id", ERR_PARAM)
            self.store.update(
                obj, object_data, data.get("details"), user, approval=approval, workflow=workflow
            )
            self.count("updates")
            return {"dataId": object_data["_id"]}
        if action == "invalid":
            self.store.invalid(obj, str(data.get("object_data_id") or ""), user)
            self.count("invalids")
            return {}
        if action == "delete":
            ids = data.get("idList")
            if not isinstance(ids, list) or not ids or len(ids) > 100:
                raise WriteRefused("idList 须为 1 到 100 个 id 的列表", ERR_PARAM)
            self.store.delete(obj, ids)
            self.count("deletes")
            return {}
        # changeOwner
        items = data.get("Data")
        if not isinstance(items, list) or not items or len(items) > 100:
            raise WriteRefused("Data 须为 [{objectDataId, ownerId: [..]}] 列表", ERR_PARAM)
        for item in items:
            if not isinstance(item, dict):
                raise WriteRefused("Data 的每一项须为对象", ERR_PARAM)
            self.store.change_owner(obj, str(item.get("objectDataId") or ""), item.get("ownerId"), user)
        self.count("change_owners")
        return {}

    # control ----------------------------------------------------------------------------------------
    async def _control_body(self, request: Request) -> dict[str, Any]:
        body = json.loads(await request.body() or b"{}")
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        return body

    async def _sim_peaks(self, request: Request) -> Response:
        return self.json({**self.peaks(), "calls_by_endpoint": self.calls_by_endpoint()})

    async def _sim_edit(self, request: Request) -> Response:
        try:
            body = await self._control_body(request)
            obj, rid, values = str(body["object"]), str(body["id"]), dict(body["values"])
        except (ValueError, KeyError, TypeError) as exc:
            return self.control_error(ValueError(f"body must be {{object, id, values}}: {exc}"))
        return await self.run_control(lambda: (self.edit(obj, rid, values), {"ok": True})[1])

    async def _sim_approve(self, request: Request) -> Response:
        try:
            body = await self._control_body(request)
            obj, rid, reject = str(body["object"]), str(body["id"]), bool(body.get("reject", False))
        except (ValueError, KeyError, TypeError) as exc:
            return self.control_error(ValueError(f"body must be {{object, id, reject?}}: {exc}"))
        return await self.run_control(lambda: (self.approve(obj, rid, reject=reject), {"ok": True})[1])

    async def _sim_advance(self, request: Request) -> Response:
        try:
            seconds = float((await self._control_body(request))["seconds"])
        except (ValueError, KeyError, TypeError) as exc:
            return self.control_error(ValueError(f"body must be {{seconds}}: {exc}"))
        self.advance(seconds)
        return self.json({"ok": True, "clock": self.clock()})

    async def _sim_expire(self, request: Request) -> Response:
        return self.json({"expired": self.expire_tokens()})

    async def _sim_modify(self, request: Request) -> Response:
        try:
            body = await self._control_body(request)
            stream, count = str(body["stream"]), int(body["count"])
        except (ValueError, KeyError, TypeError) as exc:
            return self.control_error(ValueError(f"body must be {{stream, count}}: {exc}"))
        return await self.run_control(self.modify, stream, count)
