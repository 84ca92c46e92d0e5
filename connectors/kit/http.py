"""The HTTP client every connector builds on: one httpx pool, one retry policy, one error taxonomy.

A connector subclasses :class:`HttpClient` (or holds one) and adds what is specific to its source:

* :meth:`HttpClient.check` — read a response that arrived as HTTP 2xx but carries an error in its
  body (Kingdee's ``ResponseStatus``, WeCom's ``errcode``) and raise the matching kit error;
* :meth:`HttpClient.is_retryable` — widen or narrow what the policy retries;
* :meth:`HttpClient.error_for_status` — map an HTTP error status to the connector's own subclasses.

:meth:`HttpClient.retrying` runs one *attempt function* under the policy; an attempt may do several
things that must be redone together (log in again, fetch a fresh token, then send), so there is one
retry loop per call and never one inside another.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx

from connectors.kit.errors import (
    AuthError,
    BadRequest,
    ConnectorError,
    ErrorFamily,
    NotFound,
    Throttled,
    Transient,
)
from connectors.kit.logs import get_logger, setup_logging
from connectors.kit.retry import RetryPolicy, default_is_retryable
from connectors.kit.settings import HttpSettings

T = TypeVar("T")

#: a ``Retry-After`` longer than this is not a hint we can honour inside one call
MAX_RETRY_AFTER = 24 * 3600.0


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds (whole, or with a fraction as
    Shopify sends them), or an HTTP-date; None if absent or unreadable (a past date is 0)."""
    if not value:
        return None
    text = value.strip()[:64]  # the header is tiny; never parse an unbounded value
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER)
    if text.count(".") == 1 and text.replace(".", "", 1).isdigit():
        # Not RFC 9110, but what Shopify sends ("2.0"): fractional delay-seconds.
        return min(float(text), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def safe_url(url: httpx.URL | str) -> str:
    """A URL fit for a message: scheme, host and path, no query string (tokens live there)."""
    u = httpx.URL(str(url))
    return str(u.copy_with(query=None, fragment=None, username=None, password=None))


class HttpClient:
    """A thread-safe httpx client with the kit's retry policy, timeouts and error mapping.

    ``settings`` gives the timeout and the policy; ``max_concurrency`` bounds requests in flight (so
    one client never trips a source's concurrency limit by itself); ``sleep`` and ``transport`` exist
    for tests (a fake clock, an in-process server).
    """

    #: connector name used in messages and the default logger (``tongbu.<name>``)
    name: str = "http"
    #: the connector's own error classes (None: raise the kit's)
    error_family: ErrorFamily | None = None

    def __init__(
        self,
        *,
        settings: HttpSettings | None = None,
        base_url: str = "",
        headers: Mapping[str, str] | None = None,
        max_concurrency: int = 8,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        logger: logging.Logger | None = None,
    ) -> None:
        setup_logging()
        self.settings = settings or HttpSettings()
        self.policy: RetryPolicy = self.settings.retry
        self.log = logger or get_logger(f"tongbu.{self.name}")
        self._sleep = sleep
        self._rng = random.Random()
        self._slots = threading.BoundedSemaphore(max(1, max_concurrency))
        self.http = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(self.settings.request_timeout),
            transport=transport,
            headers=dict(headers or {}),
            limits=httpx.Limits(max_connections=max(4, max_concurrency * 2)),
        )

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    # -- hooks -----------------------------------------------------------------------------------
    def is_retryable(self, exc: BaseException) -> bool:
        """Whether the policy should try again after ``exc`` (default: throttled and transient)."""
        return default_is_retryable(exc)

    def on_retry(self, exc: BaseException, retry: int, delay: float) -> None:
        """Called before each wait (counters, metrics); default does nothing."""

    def check(self, response: httpx.Response) -> None:
        """Raise a kit error for an error carried in a successful response's body; default: none."""

    def error_for_status(self, response: httpx.Response) -> ConnectorError | None:
        """The error for an HTTP error status (None for 1xx-3xx): 429 throttled, 408/5xx transient,
        401/403 auth, 404/410 not found, other 4xx bad request."""
        status = response.status_code
        if status < 400:
            return None
        where = f"{response.request.method} {safe_url(response.request.url)}"
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if status == 429:
            return Throttled(
                f"{self.name}: HTTP 429 from {where} (rate limited)",
                status_code=status,
                retry_after=retry_after,
            )
        if status >= 500 or status == 408:
            return Transient(
                f"{self.name}: HTTP {status} from {where}",
                status_code=status,
                retry_after=retry_after,
                kind="server_error",
            )
        if status in (401, 403):
            return AuthError(
                f"{self.name}: HTTP {status} from {where}: credentials refused or lacking permission "
                "(check the connection's credentials in the vault)",
                status_code=status,
            )
        if status in (404, 410):
            return NotFound(
                f"{self.name}: HTTP {status} from {where} (is base_url right?)", status_code=status
            )
        return BadRequest(f"{self.name}: HTTP {status} from {where}", status_code=status)

    # -- requests --------------------------------------------------------------------------------
    def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request, no retry: transport failures and error statuses become kit errors (in the
        connector's family), and :meth:`check` reads the body."""
        try:
            with self._slots:
                response = self.http.request(method, url, **kwargs)
        except httpx.TimeoutException:
            where = safe_url(self.http.base_url.join(url))
            raise self.own(Transient(f"{self.name}: {method} {where} timed out", kind="timeout")) from None
        except httpx.TransportError as exc:
            where = safe_url(self.http.base_url.join(url))
            raise self.own(
                Transient(
                    f"{self.name}: {method} {where}: connection error ({type(exc).__name__})",
                    kind="connection",
                )
            ) from None
        error = self.error_for_status(response)
        if error is not None:
            raise self.own(error)
        self.check(response)
        return response

    def own(self, exc: ConnectorError) -> ConnectorError:
        """``exc`` in this connector's error family (see :attr:`error_family`)."""
        return self.error_family.translate(exc) if self.error_family is not None else exc

    def retrying(self, attempt: Callable[[], T], *, label: str) -> T:
        """Run ``attempt`` under the retry policy (one loop per call, whatever ``attempt`` does)."""
        return self.policy.run(
            attempt,
            label=label,
            is_retryable=self.is_retryable,
            sleep=self._sleep,
            on_retry=self.on_retry,
            logger=self.log,
            rng=self._rng,
        )

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """:meth:`send` under the retry policy."""
        return self.retrying(lambda: self.send(method, url, **kwargs), label=f"{method} {url.split('?')[0]}")
