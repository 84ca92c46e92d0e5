"""A Youzan (有赞云) shop as its open API serves a self-use app (自用型应用).

* ``POST /auth/token`` ``{client_id, client_secret, authorize_type: "silent", grant_id}`` ->
  ``{success, code: 200, data: {access_token, expires (ms epoch), scope, authority_id}}``;
  ``refresh: true`` issues a new token. ``session_expiry`` makes a token die after N calls.
* ``POST /api/{name}/{version}?access_token=…`` with a JSON body of parameters, answered in the
  envelope ``{success, code, message, data, trace_id}``; gateway errors are HTTP 200 too:
  ``{"gw_err_resp": {"err_code": 4203, "err_msg": "access_token无效", "trace_id"}}`` (a dead token),
  ``err_code 4290`` for the call-rate limit ([U]: the code is this simulator's choice).
* ``youzan.trades.sold.get`` 4.0.0: ``page_no``, ``page_size`` ≤ 100, ``status``,
  ``start_update``/``end_update`` (``yyyy-MM-dd HH:mm:ss``, Beijing), newest change first, deep pages
  refused (``page_no × page_size`` > 10 000); ``data: {full_order_info_list: [{full_order_info:
  {order_info, buyer_info, address_info, pay_info, orders, remark_info}}], total_results}``. Buyer
  phones are masked (``138****1234``).
* ``youzan.users.customer.list`` 1.0.0 ([U] name): the shop's buyers with full mobiles, same windows.
* ``youzan.items.onsale.get`` 3.0.0: ``page_no``, ``page_size`` ≤ 300, ``update_time_start`` /
  ``update_time_end`` in **milliseconds**, prices in fen; ``data: {count, items}``.
* push messages to a subscribed URL: ``{client_id, id, kdt_id, kdt_name, mode, msg, sendCount, sign,
  status, test, type, version, msg_id}`` where ``msg`` is URL-encoded JSON and ``sign`` =
  ``md5(client_id + msg + client_secret)``; the receiver answers ``{"code": 0, "msg": "success"}``,
  anything else is retried.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
import uuid
from hashlib import md5
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from connectors.kit.simulator import API_FAULTS, FaultSpec, Simulator
from connectors.kit.simulator.push import Delivery, PushDispatcher
from connectors.youzan.simulator.data import STREAMS, YouzanStore, parse_local

MAX_DEPTH = 10_000
APIS: dict[tuple[str, str], tuple[str, int]] = {
    ("youzan.trades.sold.get", "4.0.0"): ("trades", 100),
    ("youzan.users.customer.list", "1.0.0"): ("users", 100),
    ("youzan.items.onsale.get", "3.0.0"): ("items", 300),
}
PUSH_TYPES = {
    "WAIT_BUYER_PAY": "trade_TradeCreate",
    "WAIT_SELLER_SEND_GOODS": "trade_TradeBuyerPay",
    "WAIT_BUYER_CONFIRM_GOODS": "trade_TradeSellerShip",
    "TRADE_SUCCESS": "trade_TradeSuccess",
    "TRADE_CLOSED": "trade_TradeClose",
}


def push_sign(client_id: str, msg: str, client_secret: str) -> str:
    """A push message's ``sign``: ``md5(client_id + msg + client_secret)``, lower-case hex."""
    return md5(f"{client_id}{msg}{client_secret}".encode()).hexdigest()


class YouzanSimulator(Simulator):
    """A local Youzan shop with the kit's fault switches, ``/_sim`` control and push delivery."""

    system = "youzan"
    FAULTS: ClassVar[tuple[str, ...]] = API_FAULTS
    OWN_FAULTS: ClassVar[tuple[FaultSpec, ...]] = (
        FaultSpec("push_duplicate", "RATE", "a push message is sent twice (same msg_id)"),
        FaultSpec("push_fail", "RATE", "a push attempt is dropped before it is sent (then retried)"),
    )
    STATS: ClassVar[tuple[str, ...]] = (
        "throttled",
        "tokens_issued",
        "tokens_expired",
        "push_deliveries",
        "push_retries",
    )
    CLIENT_ID = "youzan-demo-client"
    CLIENT_SECRET = "youzan-demo-client-secret"
    GRANT_ID = "91357810"  # the shop's kdt_id
    SHOP_NAME = "同步有赞小店"

    def __init__(
        self, *, records: int = 100, faults: Any = None, seed: int = 7, push_retry_s: float = 0.05
    ) -> None:
        super().__init__(records=records, faults=faults, seed=seed)
        self.store: YouzanStore | None = None
        self._tokens: dict[str, int] = {}
        self._lock = threading.Lock()
        self.pushes = PushDispatcher(
            self, self._push, prefix="push", accepted=_push_accepted, retry_s=push_retry_s
        )

    def seed_data(self) -> None:
        """Seed the shop once."""
        if self.store is None:
            self.store = YouzanStore(self.records, self.seed, self.faults)

    @property
    def data(self) -> YouzanStore:
        """The seeded shop."""
        self.seed_data()
        assert self.store is not None
        return self.store

    def close(self) -> None:
        """Stop pushes, then the server."""
        self.pushes.close()
        super().close()

    # -- API -------------------------------------------------------------------------------------------
    def api_routes(self) -> list[BaseRoute]:
        """The token endpoint and the API gateway."""
        return [
            Route("/auth/token", self._token, methods=["POST"]),
            Route("/api/{name}/{version}", self._api, methods=["POST", "GET"]),
        ]

    def control_routes(self) -> list[BaseRoute]:
        """``/_sim/modify {stream, count}``, ``/_sim/trade {tid, status}``, ``/_sim/push``."""
        return [
            Route("/_sim/modify", self._sim_modify, methods=["POST"]),
            Route("/_sim/trade", self._sim_trade, methods=["POST"]),
            Route("/_sim/push", self._sim_push, methods=["GET", "POST"]),
        ]

    @staticmethod
    def gateway_error(code: int, message: str) -> Response:
        """The gateway's error, with HTTP 200 as Youzan sends it."""
        return Simulator.json(
            {"gw_err_resp": {"err_code": code, "err_msg": message, "trace_id": uuid.uuid4().hex}}
        )

    @staticmethod
    def envelope(data: Any = None, *, code: int = 200, message: str = "successful") -> Response:
        """An API answer in Youzan's envelope (business errors have ``success: false``)."""
        return Simulator.json(
            {
                "success": code == 200,
                "code": code,
                "message": message,
                "data": data,
                "trace_id": uuid.uuid4().hex,
            }
        )

    async def _token(self, request: Request) -> Response:
        failure = await self.transport_faults()
        if failure is not None:
            return failure
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return self.json(
                {"success": False, "code": 40001, "message": "请求体不是合法的 JSON", "data": None}
            )
        if not isinstance(body, dict) or body.get("authorize_type") != "silent":
            return self.json(
                {"success": False, "code": 40002, "message": "authorize_type 不支持", "data": None}
            )
        if (body.get("client_id"), body.get("client_secret"), str(body.get("grant_id"))) != (
            self.CLIENT_ID,
            self.CLIENT_SECRET,
            self.GRANT_ID,
        ):
            return self.json(
                {"success": False, "code": 40003, "message": "client_id 或 client_secret 错误", "data": None}
            )
        token = secrets.token_hex(16)
        with self._lock:
            self._tokens[token] = 0
        self.count("tokens_issued")
        expires = int(time.time() * 1000) + 7 * 86400 * 1000
        data = {
            "access_token": token,
            "expires": expires,
            "scope": "trade user item",
            "authority_id": self.GRANT_ID,
        }
        return self.json({"success": True, "code": 200, "message": None, "data": data})

    async def _api(self, request: Request) -> Response:
        failure = await self.transport_faults()
        if failure is not None:
            return failure
        name, version = request.path_params["name"], request.path_params["version"]
        token = request.query_params.get("access_token", "")
        with self._lock:
            if token not in self._tokens:
                return self.gateway_error(4203, "access_token无效")
            self._tokens[token] += 1
            expiry = int(self.faults.value("session_expiry", 0))
            if expiry and self._tokens[token] > expiry:
                del self._tokens[token]
                self.count("tokens_expired")
                return self.gateway_error(4203, "access_token无效")
        if self.chance("throttle"):
            self.count("throttled")
            return self.gateway_error(4290, "接口调用频率超限，请稍后再试")
        if (name, version) not in APIS:
            return self.gateway_error(4004, f"api {name}:{version} 不存在")
        try:
            raw = await request.body()
            params = json.loads(raw) if raw else dict(request.query_params)
            if not isinstance(params, dict):
                raise ValueError("参数必须是 JSON 对象")
            stream, max_size = APIS[(name, version)]
            return self.envelope(self._page(stream, max_size, params))
        except (ValueError, TypeError) as exc:
            return self.envelope(code=141500101, message=f"参数错误: {exc}")

    def _page(self, stream: str, max_size: int, p: dict[str, Any]) -> dict[str, Any]:
        page_no, page_size = int(p.get("page_no", 1)), int(p.get("page_size", 20))
        if page_no < 1 or not 1 <= page_size <= max_size:
            raise ValueError(f"page_no 从 1 开始, page_size 为 1..{max_size}")
        if page_no * page_size > MAX_DEPTH:
            raise ValueError(f"page_no * page_size 不能超过 {MAX_DEPTH}，请缩小时间范围")
        if stream == "items":
            start = int(p["update_time_start"]) // 1000 if p.get("update_time_start") else None
            end = int(p["update_time_end"]) // 1000 if p.get("update_time_end") else None
        else:
            start = parse_local(str(p["start_update"])) if p.get("start_update") else None
            end = parse_local(str(p["end_update"])) if p.get("end_update") else None
        status = p.get("status") if stream == "trades" else None
        rows = self.data.window(stream, start, end, status)
        chunk = [self.render(stream, r) for r in rows[(page_no - 1) * page_size : page_no * page_size]]
        if stream == "trades":
            return {"full_order_info_list": chunk, "total_results": len(rows)}
        if stream == "items":
            return {"items": chunk, "count": len(rows)}
        return {"customers": chunk, "total": len(rows), "page_no": page_no}

    def render(self, stream: str, row: dict[str, Any]) -> dict[str, Any]:
        """One row as its API nests it (a trade as ``full_order_info``)."""
        flat = self.data.public(stream, row)
        if stream != "trades":
            return flat
        return {
            "full_order_info": {
                "order_info": {
                    k: flat[k] for k in ("tid", "status", "created", "update_time", "refund_state")
                },
                "buyer_info": {k: flat[k] for k in ("yz_open_id", "buyer_phone", "fans_nickname")},
                "address_info": {
                    k: flat[k]
                    for k in (
                        "receiver_name",
                        "receiver_tel",
                        "delivery_province",
                        "delivery_city",
                        "delivery_address",
                    )
                },
                "pay_info": {k: flat[k] for k in ("total_fee", "payment", "post_fee")},
                "remark_info": {"buyer_message": flat["buyer_message"]},
                "orders": flat["orders"],
            }
        }

    # -- pushes ------------------------------------------------------------------------------------------
    def _push(self, item: Delivery) -> tuple[dict[str, str], bytes]:
        trade = item.payload
        msg = urllib.parse.quote(json.dumps(trade, ensure_ascii=False, separators=(",", ":")))
        info = trade["full_order_info"]["order_info"]
        body = {
            "client_id": self.CLIENT_ID,
            "id": info["tid"],
            "kdt_id": int(self.GRANT_ID),
            "kdt_name": self.SHOP_NAME,
            "mode": 1,
            "msg": msg,
            "sendCount": item.attempt,
            "sign": push_sign(self.CLIENT_ID, msg, item.secret),
            "status": info["status"],
            "test": False,
            "type": item.topic,
            "version": int(parse_local(info["update_time"])),
            "msg_id": item.delivery_id,
        }
        return {"Content-Type": "application/json"}, json.dumps(body, ensure_ascii=False).encode()

    def emit_trade(self, tid: str) -> list[str]:
        """Push the current state of one trade."""
        row = self.data.get("trades", int(tid[1:]))
        if row is None:
            return []
        return self.pushes.emit(
            PUSH_TYPES.get(row["status"], "trade_TradeUpdate"), self.render("trades", row)
        )

    # -- control and truth -------------------------------------------------------------------------------
    async def _sim_modify(self, request: Request) -> Response:
        return await self.control_call(request, self.modify, {"stream": str, "count": int})

    async def _sim_trade(self, request: Request) -> Response:
        return await self.control_call(request, self.change_trade, {"tid": str, "status": str})

    async def _sim_push(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                body = json.loads(await request.body() or b"{}")
                self.pushes.subscribe(str(body["address"]), self.CLIENT_SECRET, body.get("types"))
            except (ValueError, KeyError, TypeError) as exc:
                return self.control_error(ValueError(f"body must be {{address, types?}}: {exc}"))
        return self.json(self.pushes.describe())

    def modify(self, stream: str, count: int) -> dict[str, Any]:
        """Edit ``count`` records of ``stream``; edited trades are pushed."""
        result = self.data.modify(stream, count)
        if stream == "trades":
            for key in result["ids"]:
                self.emit_trade(f"E{key}")
        return result

    def change_trade(self, tid: str, status: str) -> dict[str, Any]:
        """Move a trade to ``status`` (or ``refund``), as buyer and merchant would; it is pushed."""
        trade = self.data.change_trade(tid, status)
        self.emit_trade(tid)
        return trade

    def credentials(self) -> dict[str, Any]:
        """The self-use app's credentials."""
        return {"client_id": self.CLIENT_ID, "client_secret": self.CLIENT_SECRET, "grant_id": self.GRANT_ID}

    def tap_config(self, **overrides: Any) -> dict[str, Any]:
        """A ready ``tap-youzan`` config for this running simulator."""
        return {"base_url": self.base_url, **self.credentials(), **overrides}

    def truth_streams(self) -> tuple[str, ...]:
        """The streams ``truth`` knows."""
        return STREAMS

    def truth(self, stream: str, *, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Every record of ``stream`` (flat), with ``_malformed``."""
        return self.data.truth(stream, offset, limit)

    def counts(self) -> dict[str, int]:
        """Records per stream."""
        return {s: len(rows) for s, rows in self.data.tables.items()}


def _push_accepted(response: Any) -> bool:
    try:
        return response.status_code == 200 and response.json().get("code") == 0
    except ValueError:
        return False
