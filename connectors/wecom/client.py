"""HTTP client for the WeCom (企业微信) 客户联系 API, on the connector kit.

WeCom answers every call with HTTP 200 and puts the outcome in ``errcode``; this client reads it and
raises the kit's error categories, and the kit's one retry policy (:mod:`connectors.kit.retry`) does
the rest — one loop per call, never one inside another:

* 42001 (expired) / 40014 (invalid) / 41001 (missing token): drop that token, fetch a new
  ``access_token`` and repeat the call at once (at most ``max_token_refreshes`` times per call); tokens
  are cached with a safety margin before ``expires_in`` and shared by every thread of the process (and
  across processes through the vault's token cache with ``token_cache: vault``);
* 45009 (frequency), 45033 (concurrency), HTTP 429: :class:`WeComThrottled`; -1 (system busy), HTTP
  5xx and transport errors: :class:`WeComBusy` — retried with full-jitter backoff (or ``Retry-After``),
  and raised as :class:`WeComRetryExhausted` subclasses once ``max_retries`` is spent (no sleep after
  the last attempt); in-flight requests are bounded so one client never causes 45033 by itself;
* anything else raises :class:`WeComError` (with the errcode, never the token or secret).

A call makes at most ``2 × (max_retries + 1)`` requests (a token fetch and the call per attempt).
``next_cursor`` paging is :meth:`WeComClient.iter_pages` (the kit's :class:`CursorPaginator`).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.kit.errors import AuthError, ConnectorError, NotFound, Throttled, Transient
from connectors.kit.http import HttpClient
from connectors.kit.logs import get_logger, remember_secret
from connectors.kit.pagination import CursorPaginator, paginate
from connectors.kit.retry import RetryPolicy as KitRetryPolicy
from connectors.kit.settings import HttpSettings
from connectors.kit.tokens import CachedToken, MemoryTokenCache, TokenCache, VaultTokenSource

__all__ = [
    "CachedToken",
    "MemoryTokenCache",
    "RetryPolicy",
    "TokenCache",
    "VaultTokenSource",
    "WeComAuthError",
    "WeComBusy",
    "WeComClient",
    "WeComError",
    "WeComNoRelation",
    "WeComRetryExhausted",
    "WeComThrottled",
    "client_from_config",
]

log = get_logger("tongbu.wecom.client")

DEFAULT_BASE_URL = "https://qyapi.weixin.qq.com"
TOKEN_ERRORS = frozenset({40014, 41001, 42001})
THROTTLE_ERRORS = frozenset({45009, 45033})
RETRYABLE_ERRORS = frozenset({-1}) | THROTTLE_ERRORS
NO_RELATION_ERRORS = frozenset({84061, 40096})
AUTH_ERRORS = frozenset({40001, 40013, 48002, 60020})


class WeComError(ConnectorError):
    """A WeCom API call failed with a non-zero ``errcode`` (negative: an HTTP status or -1 transport)."""

    def __init__(self, api: str, errcode: int, errmsg: str, **kwargs: Any) -> None:
        # errmsg carries WeCom's "hint: [...]" for support tickets; the query string (token) is never included.
        super().__init__(f"WeCom {api} failed: errcode {errcode}: {errmsg}", **kwargs)
        self.api = api
        self.errcode = errcode
        self.errmsg = errmsg


class WeComAuthError(WeComError, AuthError):
    """Credentials are wrong or lack permission: retrying will not help."""


class WeComNoRelation(WeComError, NotFound):
    """The external contact does not exist or no longer has any follow user (84061 / 40096)."""


class WeComRetryExhausted(WeComError):
    """Rate limits, busy answers or transport errors persisted through every retry (the two
    subclasses say which)."""


class WeComThrottled(WeComRetryExhausted, Throttled):
    """45009 / 45033 / HTTP 429."""


class WeComBusy(WeComRetryExhausted, Transient):
    """-1 (system busy), HTTP 5xx, a timeout or a dropped connection."""


class _TokenRejected(WeComError, Transient):
    """42001 / 40014 / 41001: retried at once with a fresh token."""


@dataclass(frozen=True)
class RetryPolicy(KitRetryPolicy):
    """The kit's retry policy plus how many fresh tokens one call may fetch."""

    max_token_refreshes: int = 3


def normalize_base_url(base_url: str | None) -> str:
    """``https://host`` for either ``https://host`` or ``https://host/cgi-bin/``."""
    url = (base_url or DEFAULT_BASE_URL).rstrip("/")
    return url[: -len("/cgi-bin")] if url.endswith("/cgi-bin") else url


_SHARED_CACHE = MemoryTokenCache()


class WeComClient(HttpClient):
    """Synchronous, thread-safe WeCom API client with token caching and the kit's retry policy."""

    name = "wecom"

    def __init__(
        self,
        corp_id: str,
        corp_secret: str,
        *,
        base_url: str | None = None,
        request_timeout: float = 15.0,
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
        self.retry = retry or RetryPolicy()
        settings = HttpSettings(
            request_timeout=float(request_timeout),
            max_retries=self.retry.max_retries,
            backoff_base=self.retry.backoff_base,
            backoff_max=self.retry.backoff_max,
            max_retry_seconds=self.retry.max_retry_seconds,
        )
        self.base_url = normalize_base_url(base_url)
        super().__init__(
            settings=settings,
            base_url=self.base_url + "/cgi-bin/",
            max_concurrency=max_concurrency,
            transport=transport,
            sleep=sleep,
            logger=log,
        )
        self.corp_id = corp_id
        self._secret = corp_secret
        remember_secret(corp_secret)
        self._cache: TokenCache = token_cache or _SHARED_CACHE
        self._token_source = token_source
        # One token per (host, corp, secret); the key holds a digest, never secret text.
        digest = hashlib.sha256(f"{self.base_url}|{corp_id}|{corp_secret}".encode()).hexdigest()[:24]
        self._cache_key = f"wecom:{corp_id}:{digest}"
        self.token_margin = token_margin
        self._token_lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.errors: Counter[int] = Counter()
        self.token_fetches = 0

    def __repr__(self) -> str:
        return f"WeComClient(corp_id={self.corp_id!r}, base_url={self.base_url!r}, secret=***)"

    def own(self, exc: ConnectorError) -> ConnectorError:
        """Kit errors (HTTP status, transport) as WeCom errors; ``api`` is filled in by the caller."""
        if isinstance(exc, WeComError):
            return exc
        code = -exc.status_code if exc.status_code else -1
        text = f"HTTP {exc.status_code}" if exc.status_code else f"transport error: {exc.message}"
        cls: type[WeComError] = (
            WeComThrottled
            if isinstance(exc, Throttled)
            else WeComBusy
            if isinstance(exc, Transient)
            else WeComError
        )
        return cls("?", code, text, status_code=exc.status_code, retry_after=exc.retry_after, kind=exc.kind)

    def __enter__(self) -> WeComClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tokens -----------------------------------------------------------------------------------
    def access_token(self, *, refresh_if: str | None = None) -> str:
        """A valid token: cached unless near expiry, or unless it is ``refresh_if`` (just rejected)."""
        return self.retrying(lambda: self._token(refresh_if), label="gettoken")

    def _token(self, refresh_if: str | None = None) -> str:
        """The token without retrying (the caller's attempt is retried as a whole)."""
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
        """One ``gettoken`` request (no retry)."""
        data = self._request("GET", "gettoken", {"corpid": self.corp_id, "corpsecret": self._secret}, None)
        code = int(data.get("errcode", 0) or 0)
        if code == 0:
            self.token_fetches += 1
            expires_in = float(data.get("expires_in") or 7200)
            # A margin larger than the lifetime would refetch on every call; cap it at half.
            self.token_margin = min(self.token_margin, expires_in / 2)
            value = str(data["access_token"])
            remember_secret(value)
            return CachedToken(value, time.time() + expires_in)
        self.errors[code] += 1
        raise self._error("gettoken", code, str(data.get("errmsg", "")), token_call=True)

    # -- calls ------------------------------------------------------------------------------------
    def _request(self, method: str, api: str, params: dict[str, Any], body: Any) -> dict[str, Any]:
        """One HTTP request (no retry); the decoded JSON object."""
        self.calls[api] += 1  # every HTTP request counts (the benchmark compares with the minimum)
        try:
            resp = self.send(method, api, params=params, json=body)
        except WeComError as exc:
            exc.api = api
            exc.message = f"WeCom {api} failed: errcode {exc.errcode}: {exc.errmsg}"
            exc.args = (exc.message,)
            raise
        try:
            data = resp.json()
        except ValueError:
            raise WeComError(api, -2, "response is not JSON") from None
        if not isinstance(data, dict):
            raise WeComError(api, -2, "response is not a JSON object")
        return data

    @staticmethod
    def _error(api: str, code: int, errmsg: str, *, token_call: bool = False) -> WeComError:
        if code in TOKEN_ERRORS and not token_call:
            return _TokenRejected(api, code, errmsg, retry_after=0.0)
        if code in THROTTLE_ERRORS:
            return WeComThrottled(api, code, errmsg)
        if code in RETRYABLE_ERRORS:
            return WeComBusy(api, code, errmsg)
        if code in NO_RELATION_ERRORS:
            return WeComNoRelation(api, code, errmsg)
        if code in AUTH_ERRORS or token_call:
            return WeComAuthError(api, code, errmsg)
        return WeComError(api, code, errmsg)

    def call(
        self,
        method: str,
        api: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Call ``/cgi-bin/<api>`` with a token, retrying token errors, limits and busy answers."""
        rejected: str | None = None
        refreshes = 0

        def attempt() -> dict[str, Any]:
            nonlocal rejected, refreshes
            token = self._token(refresh_if=rejected)
            rejected = None
            data = self._request(method, api, {**(params or {}), "access_token": token}, body)
            code = int(data.get("errcode", 0) or 0)
            if code == 0:
                return data
            self.errors[code] += 1
            error = self._error(api, code, str(data.get("errmsg", "")))
            if isinstance(error, _TokenRejected):
                if refreshes >= self.retry.max_token_refreshes:
                    raise WeComError(
                        api, code, f"{error.errmsg} (still rejected after {refreshes} new tokens)"
                    )
                refreshes += 1
                rejected = token
            raise error

        return self.retrying(attempt, label=api)

    def iter_pages(
        self,
        method: str,
        api: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every page of a ``next_cursor``-paginated call, the cursor sent as ``cursor`` (in the query
        for GET, in the body for POST)."""

        def fetch(cursor: str | None) -> dict[str, Any]:
            if method == "GET":
                query = {**(params or {}), **({"cursor": cursor} if cursor else {})}
                return self.call(method, api, params=query)
            return self.call(method, api, params=params, body={**(body or {}), "cursor": cursor or ""})

        yield from paginate(fetch, CursorPaginator("next_cursor"))

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
        contact: dict[str, Any] = {}
        follow: list[dict[str, Any]] = []
        for page in self.iter_pages(
            "GET", "externalcontact/get", params={"external_userid": external_userid}
        ):
            contact = contact or page.get("external_contact") or {}
            follow.extend(page.get("follow_user") or [])
        return {"external_contact": contact, "follow_user": follow}

    def iter_batch_by_user(self, userids: list[str], *, limit: int = 100) -> Iterator[list[dict[str, Any]]]:
        """Pages of ``batch/get_by_user`` for up to 100 employees (one item per relation)."""
        if not 1 <= len(userids) <= 100:
            raise ValueError("batch/get_by_user takes 1..100 userids")
        body = {"userid_list": userids, "limit": limit}
        for page in self.iter_pages("POST", "externalcontact/batch/get_by_user", body=body):
            yield list(page.get("external_contact_list") or [])

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

    def send_app_message(
        self,
        agent_id: int,
        users: list[str],
        content: str,
        *,
        markdown: bool = False,
        duplicate_check_s: int = 1800,
    ) -> dict[str, Any]:
        """Send an 应用消息 to employees (``message/send``); returns WeCom's answer (``invaliduser``…).

        WeCom's own duplicate check is switched on, so a retry after a lost answer is not delivered
        twice within ``duplicate_check_s`` (at most 4 hours).
        """
        msgtype = "markdown" if markdown else "text"
        body = {
            "touser": "|".join(users),
            "msgtype": msgtype,
            "agentid": int(agent_id),
            msgtype: {"content": content},
            "enable_duplicate_check": 1,
            "duplicate_check_interval": max(1, min(int(duplicate_check_s), 14_400)),
        }
        return self.call("POST", "message/send", body=body)

    def iter_group_chats(
        self, *, limit: int = 1000, status_filter: int = 0, owners: list[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every ``groupchat/list`` entry (``chat_id``, ``status``), following ``next_cursor``."""
        body: dict[str, Any] = {"status_filter": status_filter, "limit": limit}
        if owners:
            body["owner_filter"] = {"userid_list": owners}
        for page in self.iter_pages("POST", "externalcontact/groupchat/list", body=body):
            yield from page.get("group_chat_list") or []

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
    """Build a client from a connector config (``corp_id``, ``corp_secret``, optional ``base_url``, the
    kit's HTTP settings; ``token_cache: vault`` shares the access_token across processes through the
    vault)."""
    if config.get("token_cache") == "vault" and "token_source" not in kwargs:
        kwargs["token_source"] = VaultTokenSource(connection, tenant=tenant)
    http = HttpSettings.from_config(config, connector="wecom", request_timeout=15.0)
    retry = RetryPolicy(
        max_retries=http.max_retries,
        backoff_base=http.backoff_base,
        backoff_max=http.backoff_max,
        max_retry_seconds=http.max_retry_seconds,
    )
    return WeComClient(
        str(config.get("corp_id") or ""),
        str(config.get("corp_secret") or ""),
        base_url=config.get("base_url"),
        request_timeout=http.request_timeout,
        retry=retry,
        max_concurrency=int(config.get("max_concurrency", 4)),
        **kwargs,
    )
