"""The procurement-site client: size-bounded page reads, strict decoding, anti-bot backoff, the vendor feed.

Everything else (timeouts, retries with full jitter, the error taxonomy, log redaction) is
:class:`connectors.kit.http.HttpClient`'s. The anti-bot page is an HTTP 200 with a verification form:
it is recognised before parsing and raised as :class:`~connectors.kit.errors.Throttled` with the
configured backoff, so the kit's retry policy waits and asks again — it never becomes a record.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx

from connectors.kit.errors import AuthError, BadRequest, ConnectorError, Throttled, Transient
from connectors.kit.http import HttpClient, safe_url
from connectors.kit.logs import remember_secret
from connectors.kit.settings import HttpSettings
from connectors.tender.parse import MAX_PAGE_BYTES, PageError, decode, is_antibot


class TenderClient(HttpClient):
    """``GET`` pages of a procurement site (and the vendor feed), politely and within bounds."""

    name = "tender"

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        antibot_backoff: float = 60.0,
        request_interval: float = 0.0,
        settings: HttpSettings | None = None,
    ) -> None:
        headers = {"User-Agent": "Mozilla/5.0 (compatible; tongbu-tender/1.0)"}
        if api_key:
            remember_secret(api_key)
            headers["X-Api-Key"] = api_key
        super().__init__(settings=settings, base_url=base_url.rstrip("/"), headers=headers, max_concurrency=2)
        self.antibot_backoff = antibot_backoff
        self.request_interval = request_interval
        self._pace = threading.Lock()
        self._last = 0.0
        #: anti-bot pages met (each one was waited out and asked again)
        self.antibot_pages = 0

    def _polite(self) -> None:
        # One request every ``request_interval`` seconds at most: the sites count requests a minute.
        if self.request_interval <= 0:
            return
        with self._pace:
            wait = self._last + self.request_interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last = time.monotonic()

    def _bounded(self, path: str, params: dict[str, Any]) -> tuple[bytes, str | None]:
        """One GET whose body may not exceed :data:`MAX_PAGE_BYTES` (read in a stream, cut off early)."""
        self._polite()
        where = safe_url(self.http.base_url.join(path))
        try:
            with self.http.stream("GET", path, params=params) as response:
                error = self.error_for_status(response)
                if error is not None:
                    raise self.own(error)
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > MAX_PAGE_BYTES:
                    raise BadRequest(f"{self.name}: GET {where}: page of {declared} bytes is over the limit")
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_PAGE_BYTES:
                        raise BadRequest(f"{self.name}: GET {where}: page over {MAX_PAGE_BYTES} bytes")
                    chunks.append(chunk)
                return b"".join(chunks), response.headers.get("content-type")
        except httpx.TimeoutException:
            raise self.own(Transient(f"{self.name}: GET {where} timed out", kind="timeout")) from None
        except httpx.TransportError as exc:
            message = f"{self.name}: GET {where}: connection error ({type(exc).__name__})"
            raise self.own(Transient(message, kind="connection")) from None

    def page(self, path: str, **params: Any) -> str:
        """The decoded HTML of ``GET path``, after waiting out anti-bot pages (retry policy)."""
        query = {k: v for k, v in params.items() if v is not None}

        def attempt() -> str:
            raw, content_type = self._bounded(path, query)
            try:
                text = decode(raw, content_type)
            except PageError as exc:
                raise BadRequest(f"{self.name}: GET {path}: {exc}") from None
            if is_antibot(text):
                self.antibot_pages += 1
                raise Throttled(
                    f"{self.name}: GET {path}: anti-bot page (too many requests)",
                    retry_after=self.antibot_backoff,
                    kind="antibot",
                )
            return text

        return self.retrying(attempt, label=f"GET {path}")

    def vendor(self, path: str, **params: Any) -> Any:
        """The ``data`` of a vendor-feed call (``code`` 0), under the retry policy."""
        query = {k: v for k, v in params.items() if v is not None}

        def attempt() -> Any:
            raw, _ = self._bounded(path, query)
            try:
                body = json.loads(raw)
            except ValueError:
                raise Transient(f"{self.name}: GET {path}: the answer is not JSON") from None
            code = body.get("code") if isinstance(body, dict) else None
            if code == 0:
                return body.get("data") or {}
            message = f"{self.name}: GET {path}: code {code}: {str(body.get('message'))[:200]}"
            if code == 42900:
                self.antibot_pages += 1
                raise Throttled(message, retry_after=min(self.antibot_backoff, 5.0))
            if code == 40001:
                raise AuthError(message)
            raise BadRequest(message)

        return self.retrying(attempt, label=f"GET {path}")


__all__ = ["ConnectorError", "TenderClient"]
