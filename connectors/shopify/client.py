"""The Shopify Admin REST client: the kit's HTTP client, the shop's token, and pacing from the bucket.

Everything generic (timeouts, retries with full jitter, ``Retry-After`` — Shopify sends ``"2.0"`` —, the
error taxonomy, log redaction) is :class:`connectors.kit.http.HttpClient`'s. What is Shopify's:

* ``X-Shopify-Access-Token``: a fixed admin token (``access_token``), or one fetched with the app's
  client credentials (``POST /admin/oauth/access_token``, ``grant_type=client_credentials``), kept in
  the kit's token cache and fetched again when the shop refuses it;
* pacing: every answer says ``X-Shopify-Shop-Api-Call-Limit: used/bucket``. The bucket leaks
  ``calls_per_second`` (2 on the Standard plan, 4 Advanced, 20 Plus); before each call the client
  waits until its model of the bucket has room for it plus ``bucket_reserve`` calls, so a steady sync
  never hits HTTP 429 (and still honours ``Retry-After`` when another app shares the bucket).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from connectors.kit.errors import AuthError, Transient
from connectors.kit.http import HttpClient
from connectors.kit.logs import remember_secret
from connectors.kit.settings import ConfigError, HttpSettings
from connectors.kit.tokens import CachedToken, MemoryTokenCache, TokenCache

CALL_LIMIT = "x-shopify-shop-api-call-limit"


class CallPacer:
    """A local model of the shop's leaky bucket, fed by the call-limit header of each answer."""

    def __init__(self, rate: float, *, reserve: int = 2, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.reserve, self._clock = max(0.01, rate), max(0, reserve), clock
        self.used, self.capacity, self.at = 0.0, 40, clock()
        self.waited = 0.0
        self._lock = threading.Lock()

    def observe(self, header: str | None) -> None:
        """Read ``used/bucket`` from an answer (an unreadable header is ignored)."""
        if not header or "/" not in header or len(header) > 32:
            return
        used, _, cap = header.partition("/")
        if not (used.strip().isdigit() and cap.strip().isdigit()):
            return
        with self._lock:
            self.used, self.capacity, self.at = float(used), max(1, int(cap)), self._clock()

    def delay(self) -> float:
        """Seconds to wait before the next call so it lands below ``bucket - reserve``."""
        with self._lock:
            level = max(0.0, self.used - (self._clock() - self.at) * self.rate)
            room = max(1, self.capacity - self.reserve)
            return max(0.0, (level + 1 - room) / self.rate)

    def wait(self, sleep: Callable[[float], None]) -> None:
        """Sleep :meth:`delay` seconds (counted in :attr:`waited`)."""
        seconds = self.delay()
        if seconds > 0:
            self.waited += seconds
            sleep(seconds)


class ShopifyClient(HttpClient):
    """``GET``/``PUT`` on ``{shop}/admin/api/{version}/…`` with the shop's token, paced by its bucket."""

    name = "shopify"

    def __init__(
        self,
        shop_url: str,
        *,
        api_version: str,
        access_token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        calls_per_second: float = 2.0,
        bucket_reserve: int = 2,
        settings: HttpSettings | None = None,
        tokens: TokenCache | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not access_token and not (client_id and client_secret):
            raise ConfigError("shopify: set access_token, or client_id and client_secret")
        root = shop_url.rstrip("/")
        if not root.startswith(("http://", "https://")):
            root = f"https://{root}"
        super().__init__(settings=settings, base_url=root, transport=transport, sleep=sleep)
        self.api_root = f"/admin/api/{api_version}"
        for secret in (access_token, client_secret):
            if secret:
                remember_secret(secret)
        self._fixed = access_token
        self._credentials = {"client_id": client_id, "client_secret": client_secret}
        self._tokens = tokens or MemoryTokenCache()
        self.pacer = CallPacer(calls_per_second, reserve=bucket_reserve)
        self.calls = 0

    def access_token(self) -> str:
        """A valid token: the fixed one, the cached one, or a new one from the client credentials."""
        if self._fixed:
            return self._fixed
        cached = self._tokens.get("token")
        if cached is not None and cached.expires_at > time.time() + 60:
            return cached.value
        body = self.send(
            "POST",
            "/admin/oauth/access_token",
            json={**self._credentials, "grant_type": "client_credentials"},
        ).json()
        token = str(body["access_token"])
        remember_secret(token)
        self._tokens.set("token", CachedToken(token, time.time() + float(body.get("expires_in", 86399))))
        return token

    def call(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, **kw: Any
    ) -> httpx.Response:
        """One API call under the retry policy: paced, with the token, a refused token fetched again.

        ``path`` is relative to ``/admin/api/{version}`` or a full URL (a ``Link`` header's)."""
        url = path if path.startswith("http") else f"{self.api_root}{path}"
        query = {k: v for k, v in (params or {}).items() if v is not None}

        def attempt() -> httpx.Response:
            token = self.access_token()
            self.pacer.wait(self._sleep)
            try:
                self.calls += 1
                response = self.send(
                    method, url, params=query or None, headers={"X-Shopify-Access-Token": token}, **kw
                )
            except AuthError:
                if self._fixed:
                    raise
                # The token expired or was revoked: drop it and retry at once with a new one.
                self._tokens.delete("token")
                raise Transient(f"{self.name}: access token refused", retry_after=0.0, kind="token") from None
            return response

        return self.retrying(attempt, label=f"{method} {url.split('?')[0]}")

    def error_for_status(self, response: httpx.Response) -> Any:
        """The kit's mapping; every answer (a 429 too) first tells the pacer how full the bucket is."""
        self.pacer.observe(response.headers.get(CALL_LIMIT))
        return super().error_for_status(response)

    def get(self, path: str, **params: Any) -> Any:
        """The decoded body of ``GET path``."""
        return self.call("GET", path, params=params).json()

    def pages(self, path: str, params: Mapping[str, Any], key: str) -> Any:
        """Every page of a list endpoint: the first with ``params``, then the ``Link: rel="next"`` URL
        exactly as given (``page_info`` carries the filters; only ``limit`` may go beside it)."""
        response = self.call("GET", path, params=params)
        while True:
            yield list(response.json().get(key) or [])
            nxt = response.links.get("next", {}).get("url")
            if not nxt:
                return
            response = self.call("GET", nxt)

    def shop(self) -> dict[str, Any]:
        """``shop.json``: name, domain, time zone."""
        return dict(self.get("/shop.json")["shop"])


def client_from_config(config: Mapping[str, Any], *, connector: str = "tap-shopify") -> ShopifyClient:
    """A client from a tap / event-source config."""
    return ShopifyClient(
        str(config["shop_url"]),
        api_version=str(config.get("api_version") or "2024-10"),
        access_token=config.get("access_token"),
        client_id=config.get("client_id"),
        client_secret=config.get("client_secret"),
        calls_per_second=float(config.get("calls_per_second") or 2.0),
        bucket_reserve=int(config.get("bucket_reserve", 2)),
        settings=HttpSettings.from_config(config, connector=connector, request_timeout=30),
    )
