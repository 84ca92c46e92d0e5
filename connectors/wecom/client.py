"""HTTP client for the WeCom (企业微信) 客户联系 API.

WeCom answers every call with HTTP 200 and puts the outcome in ``errcode``, so the retry logic lives
here rather than in an HTTP-status layer:

* 42001 (expired) / 40014 (invalid) / 41001 (missing token): fetch a new ``access_token`` once and
  repeat the call; tokens are cached with a safety margin before ``expires_in`` and shared by every
  thread of the process (and across processes when a vault token cache is plugged in);
* 45009 (frequency), 45033 (concurrency), -1 (system busy), HTTP 5xx and transport errors: retry with
  exponential backoff and full jitter; in-flight requests are bounded by a semaphore so one client
  never causes 45033 by itself;
* anything else raises :class:`WeComError` (with the errcode, never the token or secret).
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

log = logging.getLogger("tongbu.wecom.client")

DEFAULT_BASE_URL = "https://qyapi.weixin.qq.com"
TOKEN_ERRORS = frozenset({40014, 41001, 42001})
RETRYABLE_ERRORS = frozenset({-1, 45009, 45033})
NO_RELATION_ERRORS = frozenset({84061, 40096})
AUTH_ERRORS = frozenset({40001, 40013, 48002, 60020})
_SECRET_QUERY = re.compile(r"((?:access_token|corpsecret)=)[^&\s\"']+")


class _RedactQuery(logging.Filter):
    """Scrub ``access_token=`` / ``corpsecret=`` from httpx's request log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if "access_token=" in msg or "corpsecret=" in msg:
            record.msg, record.args = _SECRET_QUERY.sub(r"\1***", msg), ()
        return True


logging.getLogger("httpx").addFilter(_RedactQuery())


class WeComError(Exception):
    """A WeCom API call failed with a non-zero ``errcode``."""

    def __init__(self, api: str, errcode: int, errmsg: str) -> None:
        # errmsg carries WeCom's "hint: [...]" for support tickets; the query string (token) is never included.
        super().__init__(f"WeCom {api} failed: errcode {errcode}: {errmsg}")
        self.api = api
        self.errcode = errcode
        self.errmsg = errmsg


class WeComAuthError(WeComError):
    """Credentials are wrong or lack permission: retrying will not help."""


class WeComNoRelation(WeComError):
    """The external contact does not exist or no longer has any follow user (84061 / 40096)."""


class WeComRetryExhausted(WeComError):
    """Rate limits, busy answers or transport errors persisted through every retry."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the client retries throttled, busy and failed calls."""

    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_token_refreshes: int = 3

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with full jitter (spreads retries of concurrent workers)."""
        return rng.uniform(0, min(self.max_delay, self.base_delay * (2**attempt)))


@dataclass
class CachedToken:
    """An access_token and the wall-clock second it expires."""

    value: str
    expires_at: float

    def __repr__(self) -> str:
        return f"CachedToken(value=***, expires_at={self.expires_at:.0f})"


class TokenCache(Protocol):
    """Where access tokens are kept between calls (memory by default; the vault can provide one)."""

    def get(self, key: str) -> CachedToken | None: ...

    def set(self, key: str, token: CachedToken) -> None: ...

    def delete(self, key: str) -> None: ...


class MemoryTokenCache:
    """A process-local token cache (thread-safe)."""

    def __init__(self) -> None:
        self._data: dict[str, CachedToken] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> CachedToken | None:
        with self._lock:
            return self._data.get(key)

    def set(self, key: str, token: CachedToken) -> None:
        with self._lock:
            self._data[key] = token

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)


_SHARED_CACHE = MemoryTokenCache()


class VaultTokenSource:
    """Shares one access_token between every process of a deployment through the vault's encrypted
    token cache (``tongbu.vault.tokens``): ``tongbu serve``, Dagster rescans and taps then fetch a token
    once per lifetime between them — single-flight across processes — instead of once each.
    Opt in with ``token_cache: vault`` in the connection config.
    """

    def __init__(self, connection: str, *, tenant: str = "default", cache: Any = None) -> None:
        if cache is None:
            from tongbu.vault.tokens import TokenCache as VaultTokenCache

            cache = VaultTokenCache()
        self.cache = cache
        self.connection = connection
        self.tenant = tenant

    def get(self, fetch: Callable[[], CachedToken]) -> str:
        """The shared token, calling ``fetch`` only when it is due (in one process at a time)."""
        from tongbu.vault.tokens import TokenGrant

        def refresh(_refresh_token: Any) -> Any:
            token = fetch()
            return TokenGrant(token.value, expires_in=max(1.0, token.expires_at - time.time()))

        return self.cache.get(self.connection, "access_token", refresh, tenant=self.tenant).get_secret_value()

    def invalidate(self, token: str) -> None:
        """WeCom rejected ``token`` (40014/42001): drop exactly that one."""
        self.cache.invalidate(self.connection, "access_token", tenant=self.tenant, token=token)


def normalize_base_url(base_url: str | None) -> str:
    """``https://host`` for either ``https://host`` or ``https://host/cgi-bin/``."""
    url = (base_url or DEFAULT_BASE_URL).rstrip("/")
    return url[: -len("/cgi-bin")] if url.endswith("/cgi-bin") else url


class WeComClient:
    """Synchronous, thread-safe WeCom API client (httpx) with token caching and backoff."""

    def __init__(
        self,
        corp_id: str,
        corp_secret: str,
        *,
        base_url: str | None = None,
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
        token_cache: TokenCache | None = None,
        token_margin: float = 300.0,
        max_concurrency: int = 4,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        token_source: VaultTokenSource | None = None,
    ) -> None:
        if not corp_id or not corp_secret:
            raise WeComAuthError(
                "gettoken",
                40001,
                "corp_id and corp_secret are required "
                "(store the secret with `tongbu vault set wecom.corp_secret`)",
            )
        self.corp_id = corp_id
        self._secret = corp_secret
        self.base_url = normalize_base_url(base_url)
        self.retry = retry or RetryPolicy()
        self._cache: TokenCache = token_cache or _SHARED_CACHE
        self._token_source = token_source
        # One token per (host, corp, secret); the key holds a digest, never secret text.
        digest = hashlib.sha256(f"{self.base_url}|{corp_id}|{corp_secret}".encode()).hexdigest()[:24]
        self._cache_key = f"wecom:{corp_id}:{digest}"
        self.token_margin = token_margin
        self._token_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max(1, max_concurrency))
        self._http = httpx.Client(
            base_url=self.base_url + "/cgi-bin/",
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=max(4, max_concurrency * 2)),
        )
        self._sleep = sleep
        self._rng = random.Random()
        self.calls: Counter[str] = Counter()
        self.errors: Counter[int] = Counter()
        self.token_fetches = 0

    def __repr__(self) -> str:
        return f"WeComClient(corp_id={self.corp_id!r}, base_url={self.base_url!r}, secret=***)"

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> WeComClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tokens -----------------------------------------------------------------------------------
    def access_token(self, *, refresh_if: str | None = None) -> str:
        """A valid token: cached unless near expiry, or unless it is ``refresh_if`` (just rejected)."""
        if self._token_source is not None:
            if refresh_if is not None:
                self._token_source.invalidate(refresh_if)
            return self._token_source.get(self._fetch_token)
        with self._token_lock:
            cached = self._cache.get(self._cache_key)
            now = time.time()
            if (
                cached is not None
                and cached.value != refresh_if
                and cached.expires_at - self.token_margin > now
            ):
                return cached.value
            token = self._fetch_token()
            self._cache.set(self._cache_key, token)
            return token.value

    def _fetch_token(self) -> CachedToken:
        for attempt in range(self.retry.max_attempts):
            data = self._send("GET", "gettoken", {"corpid": self.corp_id, "corpsecret": self._secret}, None)
            code = int(data.get("errcode", 0) or 0)
            if code == 0:
                self.token_fetches += 1
                expires_in = float(data.get("expires_in") or 7200)
                # A margin larger than the lifetime would refetch on every call; cap it at half.
                self.token_margin = min(self.token_margin, expires_in / 2)
                return CachedToken(str(data["access_token"]), time.time() + expires_in)
            self.errors[code] += 1
            if code in RETRYABLE_ERRORS:
                self._sleep(self.retry.delay(attempt, self._rng))
                continue
            raise WeComAuthError("gettoken", code, str(data.get("errmsg", "")))
        raise WeComRetryExhausted("gettoken", -1, "token endpoint kept failing")

    # -- calls ------------------------------------------------------------------------------------
    def _send(self, method: str, api: str, params: dict[str, Any], body: Any) -> dict[str, Any]:
        for attempt in range(self.retry.max_attempts):
            self.calls[api] += 1  # every HTTP request counts (the benchmark compares with the minimum)
            try:
                with self._slots:
                    resp = self._http.request(method, api, params=params, json=body)
            except httpx.TransportError as exc:
                if attempt + 1 >= self.retry.max_attempts:
                    raise WeComRetryExhausted(api, -1, f"transport error: {type(exc).__name__}") from None
                self._sleep(self.retry.delay(attempt, self._rng))
                continue
            if resp.status_code >= 500:
                self._sleep(self.retry.delay(attempt, self._rng))
                continue
            if resp.status_code != 200:
                raise WeComError(api, -resp.status_code, f"HTTP {resp.status_code}")
            try:
                data = resp.json()
            except ValueError:
                raise WeComError(api, -2, "response is not JSON") from None
            if not isinstance(data, dict):
                raise WeComError(api, -2, "response is not a JSON object")
            return data
        raise WeComRetryExhausted(api, -1, "HTTP 5xx persisted")

    def call(
        self,
        method: str,
        api: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Call ``/cgi-bin/<api>`` with a token, retrying token errors, limits and busy answers."""
        token = self.access_token()
        refreshes = 0
        attempt = 0
        while True:
            data = self._send(method, api, {**(params or {}), "access_token": token}, body)
            code = int(data.get("errcode", 0) or 0)
            if code == 0:
                return data
            self.errors[code] += 1
            errmsg = str(data.get("errmsg", ""))
            if code in TOKEN_ERRORS and refreshes < self.retry.max_token_refreshes:
                refreshes += 1
                token = self.access_token(refresh_if=token)
                continue
            if code in RETRYABLE_ERRORS:
                if attempt + 1 >= self.retry.max_attempts:
                    raise WeComRetryExhausted(api, code, errmsg)
                self._sleep(self.retry.delay(attempt, self._rng))
                attempt += 1
                continue
            if code in NO_RELATION_ERRORS:
                raise WeComNoRelation(api, code, errmsg)
            if code in AUTH_ERRORS:
                raise WeComAuthError(api, code, errmsg)
            raise WeComError(api, code, errmsg)

    # -- 客户联系 endpoints -----------------------------------------------------------------------
    def get_follow_user_list(self) -> list[str]:
        """Employees with customer-contact permission (``get_follow_user_list``)."""
        return list(self.call("GET", "externalcontact/get_follow_user_list").get("follow_user") or [])

    def list_external_contacts(self, userid: str) -> list[str]:
        """external_userids one employee follows (``externalcontact/list``, not paginated)."""
        return list(
            self.call("GET", "externalcontact/list", params={"userid": userid}).get("external_userid") or []
        )

    def get_external_contact(self, external_userid: str) -> dict[str, Any]:
        """``externalcontact/get`` with every follow user (pages past 500 followers).

        Raises :class:`WeComNoRelation` when the contact is gone (no follow user left).
        """
        data = self.call("GET", "externalcontact/get", params={"external_userid": external_userid})
        follow = list(data.get("follow_user") or [])
        cursor = data.get("next_cursor")
        while cursor:
            more = self.call(
                "GET", "externalcontact/get", params={"external_userid": external_userid, "cursor": cursor}
            )
            follow.extend(more.get("follow_user") or [])
            cursor = more.get("next_cursor")
        return {"external_contact": data.get("external_contact") or {}, "follow_user": follow}

    def iter_batch_by_user(self, userids: list[str], *, limit: int = 100) -> Iterator[list[dict[str, Any]]]:
        """Pages of ``batch/get_by_user`` for up to 100 employees (one item per relation)."""
        if not 1 <= len(userids) <= 100:
            raise ValueError("batch/get_by_user takes 1..100 userids")
        cursor = ""
        while True:
            data = self.call(
                "POST",
                "externalcontact/batch/get_by_user",
                body={"userid_list": userids, "cursor": cursor, "limit": limit},
            )
            yield list(data.get("external_contact_list") or [])
            cursor = data.get("next_cursor") or ""
            if not cursor:
                return

    def get_corp_tag_list(
        self, tag_ids: list[str] | None = None, group_ids: list[str] | None = None
    ) -> list[dict]:
        """Corp tag groups with their tags (``get_corp_tag_list``)."""
        body: dict[str, Any] = {}
        if tag_ids:
            body["tag_id"] = tag_ids
        if group_ids:
            body["group_id"] = group_ids
        return list(self.call("POST", "externalcontact/get_corp_tag_list", body=body).get("tag_group") or [])

    def add_corp_tag(
        self, group_name: str, names: list[str], *, group_id: str | None = None
    ) -> dict[str, Any]:
        """Create corp tags (in an existing group by id, or a group found/created by name)."""
        body: dict[str, Any] = {"tag": [{"name": n} for n in names]}
        if group_id:
            body["group_id"] = group_id
        else:
            body["group_name"] = group_name
        return dict(self.call("POST", "externalcontact/add_corp_tag", body=body).get("tag_group") or {})

    def mark_tag(
        self,
        userid: str,
        external_userid: str,
        *,
        add: list[str] | None = None,
        remove: list[str] | None = None,
    ) -> None:
        """Add / remove corp tags on one (employee, contact) relation (``mark_tag``)."""
        body = {
            "userid": userid,
            "external_userid": external_userid,
            "add_tag": list(add or []),
            "remove_tag": list(remove or []),
        }
        self.call("POST", "externalcontact/mark_tag", body=body)

    def iter_group_chats(
        self, *, limit: int = 1000, status_filter: int = 0, owners: list[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every ``groupchat/list`` entry (``chat_id``, ``status``), following ``next_cursor``."""
        cursor = ""
        while True:
            body: dict[str, Any] = {"status_filter": status_filter, "cursor": cursor, "limit": limit}
            if owners:
                body["owner_filter"] = {"userid_list": owners}
            data = self.call("POST", "externalcontact/groupchat/list", body=body)
            yield from data.get("group_chat_list") or []
            cursor = data.get("next_cursor") or ""
            if not cursor:
                return

    def get_group_chat(self, chat_id: str) -> dict[str, Any]:
        """One customer group chat with members (``groupchat/get``, ``need_name=1``)."""
        return dict(
            self.call("POST", "externalcontact/groupchat/get", body={"chat_id": chat_id, "need_name": 1}).get(
                "group_chat"
            )
            or {}
        )


def client_from_config(
    config: dict[str, Any], *, connection: str = "wecom", tenant: str = "default", **kwargs: Any
) -> WeComClient:
    """Build a client from a connector config (``corp_id``, ``corp_secret``, optional ``base_url``;
    ``token_cache: vault`` shares the access_token across processes through the vault)."""
    if config.get("token_cache") == "vault" and "token_source" not in kwargs:
        kwargs["token_source"] = VaultTokenSource(connection, tenant=tenant)
    retry = RetryPolicy(
        max_attempts=int(config.get("max_attempts", 8)),
        base_delay=float(config.get("backoff_base", 0.5)),
        max_delay=float(config.get("backoff_max", 30.0)),
    )
    return WeComClient(
        str(config.get("corp_id") or ""),
        str(config.get("corp_secret") or ""),
        base_url=config.get("base_url"),
        timeout=float(config.get("timeout", 15.0)),
        retry=retry,
        max_concurrency=int(config.get("max_concurrency", 4)),
        **kwargs,
    )
