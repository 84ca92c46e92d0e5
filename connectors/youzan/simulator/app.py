"""The Youzan 有赞 API, served by the simulator kit: OAuth-style tokens, two keyset streams, one cursor stream.

* ``POST /api/v1/auth/token`` ``{client_id, client_secret}`` -> ``{access_token, expires_in}``;
* ``GET /api/v1/customers`` and ``/api/v1/orders`` (orders carry their ``lines``):
  ``?updated_since=ISO&after_id=N&limit=L`` -> ``{data: [...]}`` in ``(updated_at, id)`` order;
* ``GET /api/v1/contacts?cursor=C&limit=L`` -> ``{data: [...], next_cursor}`` (opaque; absent at the end);
* errors: HTTP 401 ``{error: {code: invalid_token | token_expired | invalid_client}}``, 429
  ``rate_limited``, 400 ``invalid_request``.

Replace these with the real system's paths, payloads and error shapes.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from connectors.youzan.simulator.data import KEYSET_STREAMS, STREAMS, YouzanStore, parse_ms
from connectors.kit.simulator import Simulator

MAX_LIMIT = 1000


class YouzanSimulator(Simulator):
    """A local Youzan 有赞 server with seeded data, the kit's fault switches and ``/_sim/modify``."""

    system = "youzan"
    FAULTS: ClassVar[tuple[str, ...]] = (
        "throttle",
        "http_5xx",
        "timeout",
        "hang",
        "slow",
        "session_expiry",
        "malformed",
        "same_second",
    )
    STATS: ClassVar[tuple[str, ...]] = ("throttled", "tokens_issued", "tokens_expired")
    CLIENT_ID = "demo"
    CLIENT_SECRET = "youzan-demo-secret"

    def __init__(self, *, records: int = 100, faults: Any = None, seed: int = 7) -> None:
        super().__init__(records=records, faults=faults, seed=seed)
        self.store: YouzanStore | None = None
        self._tokens: dict[str, int] = {}  # token -> calls served

    def seed_data(self) -> None:
        """Seed the tables once (row-level faults apply now)."""
        if self.store is None:
            self.store = YouzanStore(self.records, self.seed, self.faults)

    @property
    def data(self) -> YouzanStore:
        """The seeded store."""
        self.seed_data()
        assert self.store is not None
        return self.store

    # -- API -----------------------------------------------------------------------------------------
    def api_routes(self) -> list[BaseRoute]:
        """The Youzan 有赞 API."""
        return [
            Route("/api/v1/auth/token", self._token, methods=["POST"]),
            Route("/api/v1/{stream}", self._list, methods=["GET"]),
        ]

    def control_routes(self) -> list[BaseRoute]:
        """``POST /_sim/modify {stream, count}``: edit records (as a user of the system would)."""
        return [Route("/_sim/modify", self._sim_modify, methods=["POST"])]

    @staticmethod
    def error(status: int, code: str, message: str) -> Response:
        """The system's error body."""
        return Simulator.json({"error": {"code": code, "message": message}}, status=status)

    async def _token(self, request: Request) -> Response:
        failure = await self.transport_faults()
        if failure is not None:
            return failure
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return self.error(400, "invalid_request", "body is not JSON")
        if not isinstance(body, dict) or (body.get("client_id"), body.get("client_secret")) != (
            self.CLIENT_ID,
            self.CLIENT_SECRET,
        ):
            return self.error(401, "invalid_client", "client_id or client_secret is wrong")
        token = secrets.token_urlsafe(24)
        self._tokens[token] = 0
        self.count("tokens_issued")
        return self.json({"access_token": token, "token_type": "Bearer", "expires_in": 7200})

    async def _list(self, request: Request) -> Response:
        failure = await self.transport_faults()
        if failure is not None:
            return failure
        stream = request.path_params["stream"]
        if stream not in STREAMS:
            return self.error(404, "not_found", f"no resource {stream!r}")
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self._tokens:
            return self.error(401, "invalid_token", "access token missing or unknown")
        self._tokens[token] += 1
        expiry = int(self.faults.value("session_expiry", 0))
        if expiry and self._tokens[token] > expiry:
            del self._tokens[token]
            self.count("tokens_expired")
            return self.error(401, "token_expired", "access token expired")
        if self.chance("throttle"):
            self.count("throttled")
            return self.error(429, "rate_limited", "too many requests")
        q = request.query_params
        try:
            limit = int(q.get("limit", 100))
            if not 1 <= limit <= MAX_LIMIT:
                raise ValueError(f"limit must be 1..{MAX_LIMIT}")
            if stream in KEYSET_STREAMS:
                since = q.get("updated_since")
                after = q.get("after_id")
                rows = self.data.changed_after(
                    stream, parse_ms(since) if since else None, int(after) if after else None, limit
                )
                return self.json({"data": rows})
            offset = _decode_cursor(q.get("cursor"))
            rows = self.data.page(stream, offset, limit)
        except ValueError as exc:
            return self.error(400, "invalid_request", str(exc))
        more = offset + len(rows) < len(self.data.tables[stream])
        page: dict[str, Any] = {"data": rows}
        if more:
            page["next_cursor"] = _encode_cursor(offset + len(rows))
        return self.json(page)

    async def _sim_modify(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
            stream, count = str(body["stream"]), int(body["count"])
        except (ValueError, KeyError, TypeError) as exc:
            return self.control_error(ValueError(f"body must be a JSON object with stream and count: {exc}"))
        return await self.run_control(self.modify, stream, count)

    # -- control and truth ------------------------------------------------------------------------------
    def modify(self, stream: str, count: int) -> dict[str, Any]:
        """Edit ``count`` records of ``stream``; they get one new ``updated_at``."""
        return self.data.modify(stream, count)

    def credentials(self) -> dict[str, Any]:
        """The demo client credentials."""
        return {"client_id": self.CLIENT_ID, "client_secret": self.CLIENT_SECRET}

    def tap_config(self, **overrides: Any) -> dict[str, Any]:
        """A ready ``tap-youzan`` config for this running simulator."""
        return {"base_url": self.base_url, **self.credentials(), **overrides}

    def truth_streams(self) -> tuple[str, ...]:
        """The streams ``truth`` knows."""
        return STREAMS

    def truth(self, stream: str, *, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Every record of ``stream`` as served, with ``_malformed``."""
        return self.data.truth(stream, offset, limit)

    def counts(self) -> dict[str, int]:
        """Records per stream."""
        return {s: len(rows) for s, rows in self.data.tables.items()}


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        kind, _, offset = base64.urlsafe_b64decode(cursor.encode()[:64]).decode().partition(":")
        if kind == "o" and offset.isdigit():
            return int(offset)
    except (ValueError, UnicodeDecodeError):
        pass
    raise ValueError("cursor is not one this server handed out")
