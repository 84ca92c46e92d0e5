"""A Shopify-compatible shop: the REST Admin API as ``ShopifyAPI`` (the official client) and apps see it.

* ``GET /admin/api/{version}/{orders|customers|products}.json`` with ``X-Shopify-Access-Token``;
  filters ``status`` (orders; default ``open``, so a sync passes ``status=any``), ``updated_at_min/max``,
  ``created_at_min/max`` (an offset-less time is in the shop's zone), ``since_id``, ``ids``, ``fields``,
  ``order`` (``updated_at asc``…), ``limit`` 1..250 (default 50);
* cursor pages: the ``Link`` header carries ``<…?limit=N&page_info=…>; rel="next"`` (and ``previous``);
  ``page_info`` is opaque, holds the first request's filters, and any filter sent beside it is a 400;
* ``/{resource}/count.json``, ``/{resource}/{id}.json`` (GET and PUT), ``/shop.json``;
* a leaky bucket per token (``bucket`` calls, leaking ``leak_rate`` per second): every answer carries
  ``X-Shopify-Shop-Api-Call-Limit: used/bucket``; a call over it is HTTP 429 with ``Retry-After: 2.0``;
* without the ``read_all_orders`` scope only orders created in the last 60 days exist;
* tokens: a fixed admin token (``shpat_…``), or ``POST /admin/oauth/access_token`` with
  ``grant_type=client_credentials`` for an expiring one (``session_expiry`` drops it after N calls:
  HTTP 401 ``{"errors": "[API] Invalid API key or access token …"}``);
* webhooks (the kit's :class:`~connectors.kit.simulator.push.PushDispatcher`): subscriptions by
  ``POST /_sim/webhooks``, delivered at least once with retries, signed ``X-Shopify-Hmac-Sha256``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from connectors.kit.simulator import API_FAULTS, FaultSpec, Simulator
from connectors.kit.simulator.push import Delivery, PushDispatcher
from connectors.shopify.simulator.data import SIXTY_DAYS_S, STREAMS, ShopifyStore, parse_time

MAX_LIMIT = 250
DEFAULT_LIMIT = 50
#: what the real API answers for an API version it does not know (and the versions it does)
_VERSION = re.compile(r"^20\d\d-(01|04|07|10)$")
_FILTERS = (
    "status",
    "updated_at_min",
    "updated_at_max",
    "created_at_min",
    "created_at_max",
    "since_id",
    "ids",
)
_PAGE_ONLY = {"page_info", "limit", "fields"}
_ORDER = re.compile(r"^(updated_at|created_at|id) (asc|desc)$")
_BAD_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"


def sign(secret: str, body: bytes) -> str:
    """``X-Shopify-Hmac-Sha256`` of ``body``: base64 of HMAC-SHA256 with the app's secret."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


class _Bucket:
    """Shopify's leaky bucket: ``capacity`` calls, leaking ``rate`` per second."""

    def __init__(self, capacity: int, rate: float) -> None:
        self.capacity, self.rate = capacity, rate
        self.level, self.at = 0.0, time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> tuple[bool, float, int]:
        """(admitted, seconds until a slot frees, used after this call)."""
        with self.lock:
            now = time.monotonic()
            self.level = max(0.0, self.level - (now - self.at) * self.rate)
            self.at = now
            if self.level + 1 > self.capacity:
                return False, (self.level + 1 - self.capacity) / self.rate, self.capacity
            self.level += 1
            return True, 0.0, max(1, math.ceil(self.level))


class ShopifySimulator(Simulator):
    """A local shop speaking the Shopify Admin REST API, with the kit's faults and ``/_sim`` control."""

    system = "shopify"
    FAULTS: ClassVar[tuple[str, ...]] = API_FAULTS
    OWN_FAULTS: ClassVar[tuple[FaultSpec, ...]] = (
        FaultSpec(
            "webhook_duplicate", "RATE", "a webhook delivery is sent twice (same X-Shopify-Webhook-Id)"
        ),
        FaultSpec("webhook_fail", "RATE", "a webhook attempt is dropped before it is sent (then retried)"),
    )
    STATS: ClassVar[tuple[str, ...]] = (
        "throttled",
        "bucket_full",
        "tokens_issued",
        "tokens_expired",
        "webhook_deliveries",
        "webhook_retries",
    )
    SHOP = "tongbu-demo.myshopify.com"
    ADMIN_TOKEN = "shpat_tongbu_demo_admin_token_0001"
    CLIENT_ID = "tongbu-demo-app"
    CLIENT_SECRET = "shpss_tongbu_demo_client_secret"
    API_VERSION = "2024-10"

    def __init__(
        self,
        *,
        records: int = 100,
        faults: Any = None,
        seed: int = 7,
        bucket: int = 40,
        leak_rate: float = 2.0,
        read_all_orders: bool = True,
        offset_minutes: int = 480,
        webhook_retry_s: float = 0.05,
    ) -> None:
        super().__init__(records=records, faults=faults, seed=seed)
        self.store: ShopifyStore | None = None
        self.bucket_size, self.leak_rate = bucket, leak_rate
        self.read_all_orders = read_all_orders
        self.offset_minutes = offset_minutes
        self._buckets: dict[str, _Bucket] = {}
        self._tokens: dict[str, int] = {self.ADMIN_TOKEN: 0}  # token -> calls served
        self._lock = threading.Lock()
        self._page_key = hashlib.sha256(f"page_info:{seed}".encode()).digest()
        self.webhooks = PushDispatcher(self, self._webhook, retry_s=webhook_retry_s)

    def seed_data(self) -> None:
        """Seed the shop once (row-level faults apply now)."""
        if self.store is None:
            self.store = ShopifyStore(self.records, self.seed, self.faults, self.offset_minutes)

    @property
    def data(self) -> ShopifyStore:
        """The seeded shop."""
        self.seed_data()
        assert self.store is not None
        return self.store

    def close(self) -> None:
        """Stop webhook deliveries, then the server."""
        self.webhooks.close()
        super().close()

    # -- API -------------------------------------------------------------------------------------------
    def api_routes(self) -> list[BaseRoute]:
        """The Admin REST API."""
        return [
            Route("/admin/oauth/access_token", self._token, methods=["POST"]),
            Route("/admin/api/{version}/shop.json", self._shop, methods=["GET"]),
            Route("/admin/api/{version}/{resource}/count.json", self._count, methods=["GET"]),
            Route("/admin/api/{version}/{resource}/{rid:int}.json", self._one, methods=["GET", "PUT"]),
            Route("/admin/api/{version}/{resource}.json", self._list, methods=["GET"]),
        ]

    def control_routes(self) -> list[BaseRoute]:
        """``/_sim/modify {stream, count}``, ``/_sim/order {id, change}``, ``/_sim/webhooks``."""
        return [
            Route("/_sim/modify", self._sim_modify, methods=["POST"]),
            Route("/_sim/order", self._sim_order, methods=["POST"]),
            Route("/_sim/webhooks", self._sim_webhooks, methods=["GET", "POST"]),
        ]

    @staticmethod
    def errors(status: int, message: Any, headers: Mapping[str, str] | None = None) -> Response:
        """Shopify's error body: ``{"errors": "…"}`` (or an object of field -> messages)."""
        response = Simulator.json({"errors": message}, status=status)
        response.headers.update(dict(headers or {}))
        return response

    async def _admit(self, request: Request) -> tuple[str, Response | None]:
        """Transport faults, the API version, the token, its expiry and the leaky bucket, in that order."""
        failure = await self.transport_faults()
        if failure is not None:
            return "", failure
        version = request.path_params.get("version", "")
        if not _VERSION.match(version):
            return "", self.errors(404, "Not Found")
        token = request.headers.get("x-shopify-access-token", "")
        with self._lock:
            if token not in self._tokens:
                return "", self.errors(401, _BAD_TOKEN)
            self._tokens[token] += 1
            expiry = int(self.faults.value("session_expiry", 0))
            if expiry and token != self.ADMIN_TOKEN and self._tokens[token] > expiry:
                del self._tokens[token]
                self.count("tokens_expired")
                return "", self.errors(401, _BAD_TOKEN)
            bucket = self._buckets.setdefault(token, _Bucket(self.bucket_size, self.leak_rate))
        if self.chance("throttle"):
            self.count("throttled")
            return token, self.errors(
                429,
                "Exceeded 2 calls per second for api client. Reduce request rates "
                "to resume uninterrupted service.",
                {"Retry-After": "0.1"},
            )
        admitted, wait, used = bucket.take()
        if not admitted:
            self.count("bucket_full")
            return token, self.errors(
                429,
                "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service.",
                {
                    "Retry-After": f"{max(wait, 0.1):.1f}",
                    "X-Shopify-Shop-Api-Call-Limit": f"{used}/{bucket.capacity}",
                },
            )
        request.state.call_limit = f"{used}/{bucket.capacity}"
        return token, None

    def _ok(self, request: Request, body: Any, headers: Mapping[str, str] | None = None) -> Response:
        response = self.json(body)
        response.headers["X-Shopify-Shop-Api-Call-Limit"] = request.state.call_limit
        response.headers["X-Shopify-API-Version"] = request.path_params.get("version", "")
        response.headers.update(dict(headers or {}))
        return response

    async def _token(self, request: Request) -> Response:
        failure = await self.transport_faults()
        if failure is not None:
            return failure
        raw = await request.body()
        try:
            if request.headers.get("content-type", "").startswith("application/json"):
                body = json.loads(raw or b"{}")
            else:
                from urllib.parse import parse_qsl

                body = dict(parse_qsl(raw.decode()))
        except (ValueError, UnicodeDecodeError):
            return self.json({"error": "invalid_request", "error_description": "unreadable body"}, 400)
        if not isinstance(body, dict) or body.get("grant_type", "client_credentials") != "client_credentials":
            return self.json({"error": "unsupported_grant_type"}, 400)
        if (body.get("client_id"), body.get("client_secret")) != (self.CLIENT_ID, self.CLIENT_SECRET):
            return self.json(
                {"error": "invalid_client", "error_description": "Client credentials are invalid"}, 400
            )
        token = "shpat_" + secrets.token_hex(16)
        with self._lock:
            self._tokens[token] = 0
        self.count("tokens_issued")
        scope = "read_orders,read_customers,read_products" + (
            ",read_all_orders" if self.read_all_orders else ""
        )
        return self.json({"access_token": token, "scope": scope, "expires_in": 86399})

    async def _shop(self, request: Request) -> Response:
        _, failure = await self._admit(request)
        if failure is not None:
            return failure
        off = self.offset_minutes
        sign = "+" if off >= 0 else "-"
        offset = f"{sign}{abs(off) // 60:02d}:{abs(off) % 60:02d}"
        shop = {
            "id": 548_380_009,
            "name": "同步演示商店",
            "myshopify_domain": self.SHOP,
            "domain": self.SHOP,
            "currency": "CNY",
            "country_code": "CN",
            "iana_timezone": "Asia/Shanghai" if off == 480 else "Etc/GMT",
            "timezone": f"(GMT{offset}) Asia/Shanghai",
            "plan_name": "basic",
        }
        return self._ok(request, {"shop": shop})

    def _visible(self, resource: str, row: dict[str, Any]) -> bool:
        if resource == "orders" and not self.read_all_orders:
            return bool(row["_created"] >= self.data.now() - SIXTY_DAYS_S)
        return True

    def _filters(self, resource: str, q: Mapping[str, str]) -> dict[str, Any]:
        """The request's filters, checked (ValueError names the bad one)."""
        out: dict[str, Any] = {k: q[k] for k in _FILTERS if k in q and q[k] != ""}
        if "status" in out and (
            resource != "orders" or out["status"] not in ("open", "closed", "cancelled", "any")
        ):
            raise ValueError(f"status: {out['status']!r} is not a valid status")
        for key in ("updated_at_min", "updated_at_max", "created_at_min", "created_at_max"):
            if key in out:
                try:
                    parse_time(out[key], self.offset_minutes)
                except ValueError:
                    raise ValueError(f"{key}: {out[key][:40]!r} is not a valid time") from None
        if "since_id" in out and not out["since_id"].isdigit():
            raise ValueError("since_id: must be a number")
        if "ids" in out and not all(p.strip().isdigit() for p in out["ids"].split(",")):
            raise ValueError("ids: must be comma-separated numbers")
        order = q.get("order") or "id asc"
        if not _ORDER.match(order):
            raise ValueError(f"order: {order[:40]!r} is not a valid order")
        out["order"] = order
        if resource == "orders":
            out.setdefault("status", "open")
        return out

    def _match(self, resource: str, row: dict[str, Any], f: Mapping[str, Any]) -> bool:
        off = self.offset_minutes
        if not self._visible(resource, row):
            return False
        status = f.get("status", "any")
        if status == "open" and (row["_cancelled"] or row["_closed"]):
            return False
        if status == "closed" and not row["_closed"]:
            return False
        if status == "cancelled" and not row["_cancelled"]:
            return False
        if "updated_at_min" in f and row["_s"] < parse_time(f["updated_at_min"], off):
            return False
        if "updated_at_max" in f and row["_s"] > parse_time(f["updated_at_max"], off):
            return False
        if "created_at_min" in f and row["_created"] < parse_time(f["created_at_min"], off):
            return False
        if "created_at_max" in f and row["_created"] > parse_time(f["created_at_max"], off):
            return False
        if "since_id" in f and row["id"] <= int(f["since_id"]):
            return False
        return not ("ids" in f and str(row["id"]) not in {p.strip() for p in f["ids"].split(",")})

    def _seal(self, state: dict[str, Any]) -> str:
        raw = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
        tag = hmac.new(self._page_key, raw, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(tag + raw).decode().rstrip("=")

    def _open(self, page_info: str) -> dict[str, Any]:
        try:
            raw = base64.urlsafe_b64decode(page_info[:4096] + "=" * (-len(page_info) % 4))
            tag, body = raw[:12], raw[12:]
            if not hmac.compare_digest(tag, hmac.new(self._page_key, body, hashlib.sha256).digest()[:12]):
                raise ValueError
            state = json.loads(body)
            if not isinstance(state, dict):
                raise ValueError
            return state
        except (ValueError, TypeError):
            raise ValueError("page_info - Invalid value.") from None

    async def _list(self, request: Request) -> Response:
        _, failure = await self._admit(request)
        if failure is not None:
            return failure
        resource = request.path_params["resource"]
        if resource not in STREAMS:
            return self.errors(404, "Not Found")
        q = request.query_params
        try:
            limit = int(q.get("limit") or DEFAULT_LIMIT)
        except ValueError:
            return self.errors(400, {"limit": ["must be a number"]})
        if not 1 <= limit <= MAX_LIMIT:
            return self.errors(400, {"limit": [f"must be between 1 and {MAX_LIMIT}"]})
        try:
            if "page_info" in q:
                extra = sorted(set(q.keys()) - _PAGE_ONLY)
                if extra:
                    # The real API: once paging by cursor, the filters are the cursor's.
                    raise ValueError(f"{extra[0]} cannot be passed when page_info is present")
                state = self._open(q["page_info"])
                if state.get("r") != resource:
                    raise ValueError("page_info - Invalid value.")
                filters, after, backwards = state["f"], tuple(state["k"]), state["d"] == "prev"
            else:
                filters, after, backwards = self._filters(resource, q), None, False
        except ValueError as exc:
            return self.errors(400, str(exc))
        field, direction = filters["order"].split()
        sort = "updated_at" if field == "updated_at" else "id"  # created_at follows id in this shop
        descending = (direction == "desc") != backwards
        rows: list[dict[str, Any]] = []
        more = False
        for row in self.data.scan(resource, sort, after, descending):  # type: ignore[arg-type]
            if self._match(resource, row, filters):
                if len(rows) == limit:
                    more = True
                    break
                rows.append(row)
        if backwards:
            rows.reverse()
        key = (lambda r: [r["_s"], r["id"]]) if sort == "updated_at" else (lambda r: [r["id"], r["id"]])
        links = []
        base = f"{request.base_url}admin/api/{request.path_params['version']}/{resource}.json"
        fields = q.get("fields")
        extra_q = {"fields": fields} if fields else {}
        has_prev = (after is not None and not backwards) or (backwards and more)
        has_next = (more and not backwards) or backwards
        if rows and has_prev:
            token = self._seal({"r": resource, "f": filters, "k": key(rows[0]), "d": "prev"})
            links.append(
                f'<{base}?{urlencode({"limit": limit, **extra_q, "page_info": token})}>; rel="previous"'
            )
        if rows and has_next:
            token = self._seal({"r": resource, "f": filters, "k": key(rows[-1]), "d": "next"})
            links.append(f'<{base}?{urlencode({"limit": limit, **extra_q, "page_info": token})}>; rel="next"')
        body = [self._render(resource, r, fields) for r in rows]
        return self._ok(request, {resource: body}, {"Link": ", ".join(links)} if links else None)

    def _render(self, resource: str, row: dict[str, Any], fields: str | None) -> dict[str, Any]:
        out = self.data.public(resource, row)
        if fields:
            wanted = {f.strip() for f in fields.split(",")}
            out = {k: v for k, v in out.items() if k in wanted}
        return out

    async def _count(self, request: Request) -> Response:
        _, failure = await self._admit(request)
        if failure is not None:
            return failure
        resource = request.path_params["resource"]
        if resource not in STREAMS:
            return self.errors(404, "Not Found")
        try:
            filters = self._filters(resource, request.query_params)
        except ValueError as exc:
            return self.errors(400, str(exc))
        n = sum(1 for r in self.data.scan(resource, "id", None, False) if self._match(resource, r, filters))
        return self._ok(request, {"count": n})

    async def _one(self, request: Request) -> Response:
        _, failure = await self._admit(request)
        if failure is not None:
            return failure
        resource, rid = request.path_params["resource"], int(request.path_params["rid"])
        singular = resource[:-1]
        row = self.data.get(resource, rid) if resource in STREAMS else None
        if row is None or not self._visible(resource, row):
            return self.errors(404, "Not Found")
        if request.method == "PUT":
            try:
                body = json.loads(await request.body() or b"{}")
                fields = body[singular]
                if not isinstance(fields, dict):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                return self.errors(400, {singular: ["Required parameter missing or invalid"]})
            updated = self.data.update_fields(resource, rid, fields)
            self.webhooks.emit(f"{resource}/updated", updated)
            return self._ok(request, {singular: updated})
        return self._ok(request, {singular: self._render(resource, row, request.query_params.get("fields"))})

    def _webhook(self, item: Delivery) -> tuple[dict[str, str], bytes]:
        """One webhook attempt as Shopify sends it: the record as JSON, signed over the raw body."""
        body = json.dumps(item.payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": item.topic,
            "X-Shopify-Shop-Domain": self.SHOP,
            "X-Shopify-API-Version": self.API_VERSION,
            "X-Shopify-Webhook-Id": item.delivery_id,
            "X-Shopify-Triggered-At": item.triggered_at,
            "X-Shopify-Hmac-Sha256": sign(item.secret, body),
        }
        return headers, body

    # -- control and truth ---------------------------------------------------------------------------
    async def _sim_modify(self, request: Request) -> Response:
        return await self.control_call(request, self.modify, {"stream": str, "count": int})

    async def _sim_order(self, request: Request) -> Response:
        return await self.control_call(request, self.change_order, {"id": int, "change": str})

    async def _sim_webhooks(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                body = json.loads(await request.body() or b"{}")
                self.webhooks.subscribe(str(body["address"]), str(body["secret"]), body.get("topics"))
            except (ValueError, KeyError, TypeError) as exc:
                return self.control_error(ValueError(f"body must be {{address, secret, topics?}}: {exc}"))
        await asyncio.sleep(0)
        return self.json(self.webhooks.describe())

    def modify(self, stream: str, count: int) -> dict[str, Any]:
        """Edit ``count`` records of ``stream`` (one new ``updated_at``); webhooks follow."""
        result = self.data.modify(stream, count)
        for rid in result["ids"]:
            row = self.data.get(stream, rid)
            if row is not None:
                self.webhooks.emit(
                    f"{stream}/update" if stream == "customers" else f"{stream}/updated",
                    self.data.public(stream, row),
                )
        return result

    def change_order(self, order_id: int, change: str) -> dict[str, Any]:
        """Cancel / refund / close / note one order, as a merchant would; webhooks follow."""
        order = self.data.update_order(order_id, change)
        topic = {"cancel": "orders/cancelled", "close": "orders/updated"}.get(change, "orders/updated")
        self.webhooks.emit(topic, order)
        if change == "refund":
            self.webhooks.emit("refunds/create", {"id": order_id * 10 + 1, "order_id": order_id})
        return order

    def credentials(self) -> dict[str, Any]:
        """The demo app's client credentials (and the fixed admin token)."""
        return {
            "client_id": self.CLIENT_ID,
            "client_secret": self.CLIENT_SECRET,
            "access_token": self.ADMIN_TOKEN,
        }

    def tap_config(self, **overrides: Any) -> dict[str, Any]:
        """A ready ``tap-shopify`` config for this running simulator (client-credentials tokens)."""
        return {
            "shop_url": self.base_url,
            "api_version": self.API_VERSION,
            "client_id": self.CLIENT_ID,
            "client_secret": self.CLIENT_SECRET,
            **overrides,
        }

    def truth_streams(self) -> tuple[str, ...]:
        """The streams ``truth`` knows."""
        return STREAMS

    def truth(self, stream: str, *, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Every record of ``stream`` the app may see (the 60-day window applies), with ``_malformed``."""
        rows = self.data.truth(stream, 0, None)
        if stream == "orders" and not self.read_all_orders:
            cutoff = self.data.now() - SIXTY_DAYS_S
            rows = [r for r in rows if parse_time(r["created_at"], 0) >= cutoff]
        end = None if limit is None else offset + limit
        return rows[offset:end]

    def counts(self) -> dict[str, int]:
        """Records per resource."""
        return {s: len(rows) for s, rows in self.data.tables.items()}
