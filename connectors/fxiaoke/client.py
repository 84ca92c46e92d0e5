"""The Fxiaoke (纷享销客) OpenAPI client: the kit's HTTP client, Fxiaoke's tokens, its error codes and
its rate limits.

* **Tokens**, either generation (``auth: v2`` — ``/cgi/corpAccessToken/get/V2``, token in the body —
  or ``auth: oauth`` — ``/oauth2.0/token``, token in headers plus a fresh ``thirdTraceId`` per URL).
  The token endpoint takes 10 calls a minute and no concurrent call, so the token is cached: in the
  process (one cache per app for every client, single-flight under a lock) or, with
  ``token_cache: vault``, in the vault's token cache shared by every process of a deployment. A call
  answered 20016 / 20015 drops exactly that token and is repeated with a new one.
* **Pacing**: every client of one app in a process shares one limiter per endpoint
  (:func:`connectors.kit.ratelimit.shared_limiter`), so parallel pipelines together stay under 100
  calls per 20 s per endpoint and 10 token calls a minute; a throttled answer (10009) is retried by
  the kit's policy all the same.
* **Errors**: HTTP 200 with ``errorCode`` != 0 becomes a kit error: throttled, token (retried),
  quota (30002 spent / 30003 not bought: :class:`FxiaokeQuotaError`, never retried, the message says
  what to do), anything else :class:`FxiaokeApiError` with the code and Fxiaoke's message.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

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
from connectors.kit.http import HttpClient
from connectors.kit.logs import remember_secret
from connectors.kit.ratelimit import SlidingWindowLimiter, shared_limiter
from connectors.kit.settings import HttpSettings
from connectors.kit.tokens import CachedToken, MemoryTokenCache, TokenCache, VaultTokenSource

__all__ = [
    "FxiaokeApiError",
    "FxiaokeClient",
    "FxiaokeError",
    "FxiaokeQuotaError",
    "client_from_config",
]

TOKEN_ERRORS = frozenset({20016, 20015})
THROTTLE_CODES = frozenset({10009})
TOKEN_BUSY_CODES = frozenset({20031, 20032})
QUOTA_CODES = {30002: "the day's OpenAPI call quota is spent", 30003: "no OpenAPI call quota has been bought"}
NOT_FOUND_CODES = frozenset({320001401})
TOKEN_PATHS = {"v2": "/cgi/corpAccessToken/get/V2", "oauth": "/oauth2.0/token"}
#: one token cache per process: every client of one app shares its token
_SHARED_CACHE = MemoryTokenCache()
_TOKEN_LOCKS: dict[str, threading.Lock] = {}
_TOKEN_LOCKS_GUARD = threading.Lock()


class FxiaokeError(ConnectorError):
    """Base of every Fxiaoke error (``code``: the ``errorCode`` when there was one)."""

    code: int | None = None


class FxiaokeThrottled(FxiaokeError, Throttled):
    """10009: over 100 calls per 20 s on one endpoint."""


class FxiaokeTransient(FxiaokeError, Transient):
    """5xx, timeouts, an expired token about to be replaced."""


class FxiaokeAuthError(FxiaokeError, AuthError):
    """Wrong appId / appSecret / permanentCode."""


class FxiaokeApiError(FxiaokeError, BadRequest):
    """Fxiaoke refused the call (a field, a value, a state); ``code`` and the message say which."""


class FxiaokeNotFound(FxiaokeError, NotFound):
    """The record does not exist."""


class FxiaokeQuotaError(FxiaokeError):
    """30002 / 30003: the daily quota is spent or was never bought; retrying does not help."""

    kind = "quota"


FAMILY = ErrorFamily(
    FxiaokeError,
    {
        Throttled: FxiaokeThrottled,
        Transient: FxiaokeTransient,
        AuthError: FxiaokeAuthError,
        NotFound: FxiaokeNotFound,
        BadRequest: FxiaokeApiError,
    },
)


class FxiaokeClient(HttpClient):
    """Synchronous, thread-safe Fxiaoke OpenAPI client (see the module docstring).

    ``rate_limit`` calls per ``rate_window`` seconds per endpoint and ``token_limit`` token calls a
    minute are the documented limits; they are shared by every client of the same app and base URL
    in the process. ``calls`` counts API calls by endpoint (for cost reports).
    """

    name = "fxiaoke"
    error_family = FAMILY

    def __init__(
        self,
        base_url: str,
        *,
        app_id: str,
        app_secret: str,
        permanent_code: str,
        open_user_id: str,
        auth: str = "v2",
        settings: HttpSettings | None = None,
        rate_limit: int = 100,
        rate_window: float = 20.0,
        token_limit: int = 10,
        token_window: float = 60.0,
        token_cache: TokenCache | None = None,
        token_source: VaultTokenSource | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if auth not in TOKEN_PATHS:
            raise ValueError(f"fxiaoke: auth must be 'v2' or 'oauth', got {auth!r}")
        super().__init__(settings=settings, base_url=base_url.rstrip("/"), transport=transport)
        remember_secret(app_secret)
        remember_secret(permanent_code)
        self.auth = auth
        self.app_id = app_id
        self.open_user_id = open_user_id
        self._secret = app_secret
        self._permanent = permanent_code
        digest = hashlib.sha256(f"{base_url}|{app_id}|{app_secret}|{permanent_code}".encode()).hexdigest()[
            :16
        ]
        self._cache_key = f"fxiaoke:{auth}:{digest}"
        self._cache: TokenCache = token_cache or _SHARED_CACHE
        self._token_source = token_source
        self._corp: dict[str, str] = {}
        account = f"fxiaoke:{base_url.rstrip('/')}:{app_id}"
        self.limiter: SlidingWindowLimiter = shared_limiter(account, rate_limit, rate_window)
        self.token_limiter: SlidingWindowLimiter = shared_limiter(
            account + ":token", token_limit, token_window
        )
        with _TOKEN_LOCKS_GUARD:
            self._token_lock = _TOKEN_LOCKS.setdefault(self._cache_key, threading.Lock())
        self.calls: dict[str, int] = {}
        self.token_fetches = 0

    # -- tokens -------------------------------------------------------------------------------------
    def _token(self, rejected: str | None) -> tuple[str, dict[str, str]]:
        """A valid token and the corp identity that goes with it (no retry of its own)."""
        if self._token_source is not None:
            if rejected:
                self._token_source.invalidate(rejected)
            value = self._token_source.get(self._fetch_token)
            return value, self._corp or self._identity_from_cache()
        with self._token_lock:  # single flight: the endpoint refuses concurrent calls
            cached = self._cache.get(self._cache_key)
            if cached is not None and rejected and cached.value == rejected:
                self._cache.delete(self._cache_key)
                cached = None
            if cached is not None and cached.expires_at - 300 > time.time():
                return cached.value, self._corp or self._identity_from_cache()
            token = self._fetch_token()
            self._cache.set(self._cache_key, token)
            return token.value, self._corp

    def _identity_from_cache(self) -> dict[str, str]:
        # corpId / ea are not secrets; kept beside the token in the same cache under their own key.
        ident = self._cache.get(self._cache_key + ":corp")
        if ident is not None:
            kind, _, value = ident.value.partition("=")
            self._corp = {kind: value}
        return self._corp

    def _fetch_token(self) -> CachedToken:
        """One token call, paced to the endpoint's 10 a minute."""
        slot = self.token_limiter.acquire("token")
        try:
            return self._fetch_token_now()
        finally:
            self.token_limiter.done(slot)

    def _fetch_token_now(self) -> CachedToken:
        body: dict[str, Any] = {
            "appId": self.app_id,
            "appSecret": self._secret,
            "permanentCode": self._permanent,
        }
        if self.auth == "oauth":
            body["grantType"] = "app_secret"
        data = self.send("POST", TOKEN_PATHS[self.auth], json=body).json()
        code = int(data.get("errorCode", -1))
        if code != 0:
            raise self._error("token", code, str(data.get("errorMessage", "")), token_call=True)
        self.token_fetches += 1
        value = str(data["corpAccessToken"] if self.auth == "v2" else data["accessToken"])
        remember_secret(value)
        if self.auth == "v2":
            self._corp = {"corpId": str(data["corpId"])}
        else:
            self._corp = {"ea": str(data["ea"])}
        kind, ident = next(iter(self._corp.items()))
        expires = time.time() + float(data.get("expiresIn", 7200))
        self._cache.set(self._cache_key + ":corp", CachedToken(f"{kind}={ident}", expires))
        return CachedToken(value, expires)

    # -- calls --------------------------------------------------------------------------------------
    def is_retryable(self, exc: BaseException) -> bool:
        """The kit's rule, except a write whose outcome is unknown (see :meth:`call`)."""
        if getattr(exc, "outcome_unknown", False):
            return False
        return super().is_retryable(exc)

    def call(
        self, path: str, body: Mapping[str, Any], *, write: bool = False, retry: bool = True
    ) -> dict[str, Any]:
        """``POST path`` with ``body`` plus the token; the decoded answer (``errorCode`` 0), under the
        retry policy. Token errors get one fresh token each, at once. A ``write`` that timed out or
        got a 5xx may have been applied: it is not repeated blind (the error says the outcome is
        unknown; the caller looks the record up first), while a throttled or token-refused write,
        refused before anything was applied, is retried."""
        endpoint = path.removeprefix("/cgi/crm/").removeprefix("v2/")
        rejected: list[str] = []

        def attempt() -> dict[str, Any]:
            token, corp = self._token(rejected[-1] if rejected else None)
            slot = self.limiter.acquire(endpoint)
            self.calls[endpoint] = self.calls.get(endpoint, 0) + 1
            payload = dict(body)
            headers: dict[str, str] = {}
            url = path
            if self.auth == "v2":
                payload.update(
                    corpAccessToken=token, corpId=corp.get("corpId", ""), currentOpenUserId=self.open_user_id
                )
            else:
                headers = {
                    "authorization": f"Bearer {token}",
                    "x-fs-ea": corp.get("ea", ""),
                    "x-fs-userid": self.open_user_id,
                }
                url = f"{path}?thirdTraceId={uuid.uuid4()}"
            try:
                data = self.send("POST", url, json=payload, headers=headers).json()
            except Transient as exc:
                if write and not isinstance(exc, Throttled):
                    exc.outcome_unknown = True  # type: ignore[attr-defined]
                raise
            finally:
                self.limiter.done(slot)
            code = int(data.get("errorCode", -1)) if isinstance(data, dict) else -1
            if code == 0:
                return data
            error = self._error(
                endpoint, code, str(data.get("errorMessage", "")) if isinstance(data, dict) else ""
            )
            if code in TOKEN_ERRORS:
                rejected.append(token)
            raise error

        return self.retrying(attempt, label=f"fxiaoke {endpoint}") if retry else attempt()

    def _error(self, endpoint: str, code: int, message: str, *, token_call: bool = False) -> FxiaokeError:
        text = f"fxiaoke {endpoint}: errorCode {code}: {message[:300]}"
        err: FxiaokeError
        if code in THROTTLE_CODES or (token_call and code in TOKEN_BUSY_CODES):
            err = FxiaokeThrottled(text, retry_after=1.0 if token_call else None)
        elif code in TOKEN_ERRORS and not token_call:
            err = FxiaokeTransient(text + " (fetching a new token)", retry_after=0.0, kind="token")
        elif code in QUOTA_CODES:
            err = FxiaokeQuotaError(
                f"{text}: {QUOTA_CODES[code]}; retrying will not help — raise the quota in the Fxiaoke admin console or wait for tomorrow's"
            )
        elif token_call:
            err = FxiaokeAuthError(text + " (check app_id, app_secret and permanent_code in the vault)")
        elif code in NOT_FOUND_CODES:
            err = FxiaokeNotFound(text)
        else:
            err = FxiaokeApiError(text)
        err.code = code
        return err

    # -- the CRM services -----------------------------------------------------------------------------
    @staticmethod
    def _base(api_name: str) -> str:
        return "/cgi/crm/custom/v2/data/" if api_name.endswith("__c") else "/cgi/crm/v2/data/"

    def query(
        self,
        api_name: str,
        *,
        filters: list[dict[str, Any]] | None = None,
        orders: list[dict[str, Any]] | None = None,
        offset: int = 0,
        limit: int = 100,
        fields: list[str] | None = None,
    ) -> dict[str, Any]:
        """One query page: ``{dataList, total, offset, limit}``."""
        info: dict[str, Any] = {
            "limit": limit,
            "offset": offset,
            "filters": filters or [],
            "orders": orders or [],
        }
        if fields:
            info["fieldProjection"] = fields
        data = self.call(
            self._base(api_name) + "query",
            {"data": {"dataObjectApiName": api_name, "search_query_info": info}},
        )
        return dict(data.get("data") or {})

    def get(self, api_name: str, data_id: str) -> dict[str, Any]:
        """One record by ``_id``."""
        data = self.call(
            self._base(api_name) + "get", {"data": {"dataObjectApiName": api_name, "objectDataId": data_id}}
        )
        return dict(data.get("data") or {})

    def create(
        self,
        api_name: str,
        values: Mapping[str, Any],
        *,
        details: Mapping[str, Any] | None = None,
        trigger_approval: bool = True,
        trigger_workflow: bool = True,
    ) -> str:
        """Create a record (and its detail lines); its ``_id``."""
        body = {
            "data": {
                "object_data": {"dataObjectApiName": api_name, **values},
                "details": dict(details or {}),
            },
            "triggerApprovalFlow": trigger_approval,
            "triggerWorkFlow": trigger_workflow,
        }
        return str(self.call(self._base(api_name) + "create", body, write=True)["dataId"])

    def update(
        self,
        api_name: str,
        data_id: str,
        values: Mapping[str, Any],
        *,
        details: Mapping[str, Any] | None = None,
        trigger_approval: bool = True,
        trigger_workflow: bool = True,
    ) -> None:
        """Change exactly ``values`` (never ``owner``: see :meth:`change_owner`)."""
        if "owner" in values:
            raise ValueError("fxiaoke: the owner changes only through change_owner, never update")
        data: dict[str, Any] = {"object_data": {"dataObjectApiName": api_name, "_id": data_id, **values}}
        if details is not None:
            data["details"] = dict(details)
        self.call(
            self._base(api_name) + "update",
            {"data": data, "triggerApprovalFlow": trigger_approval, "triggerWorkFlow": trigger_workflow},
            write=True,
        )

    def change_owner(self, api_name: str, data_id: str, owner: list[str]) -> None:
        """Give a record a new owner (``changeOwner``)."""
        self.call(
            self._base(api_name) + "changeOwner",
            {
                "data": {
                    "dataObjectApiName": api_name,
                    "Data": [{"objectDataId": data_id, "ownerId": list(owner)}],
                }
            },
            write=True,
        )

    def invalid(self, api_name: str, data_id: str) -> None:
        """Void a record (作废: first step of a delete)."""
        self.call(
            self._base(api_name) + "invalid",
            {"data": {"dataObjectApiName": api_name, "object_data_id": data_id}},
            write=True,
        )

    def delete(self, api_name: str, ids: list[str]) -> None:
        """Delete voided records (second step)."""
        self.call(
            self._base(api_name) + "delete",
            {"data": {"dataObjectApiName": api_name, "idList": list(ids)}},
            write=True,
        )

    def describe(self, api_name: str, *, retry: bool = True) -> dict[str, Any]:
        """The object's description: ``{api_name, display_name, fields: {name: {type, options...}}}``."""
        data = self.call(
            "/cgi/crm/v2/object/describe", {"apiName": api_name, "includeDetail": True}, retry=retry
        )
        return dict((data.get("data") or {}).get("describe") or {})


def client_from_config(
    config: Mapping[str, Any], *, connection: str = "fxiaoke", tenant: str = "default"
) -> FxiaokeClient:
    """A client from a tap/target config (``token_cache: vault`` shares the token across processes)."""
    source = VaultTokenSource(connection, tenant=tenant) if config.get("token_cache") == "vault" else None
    return FxiaokeClient(
        str(config["base_url"]),
        app_id=str(config["app_id"]),
        app_secret=str(config["app_secret"]),
        permanent_code=str(config["permanent_code"]),
        open_user_id=str(config.get("open_user_id") or "FSUID_1000"),
        auth=str(config.get("auth") or "v2"),
        settings=HttpSettings.from_config(config, connector="fxiaoke", request_timeout=30),
        rate_limit=int(config.get("rate_limit") or 100),
        rate_window=float(config.get("rate_window") or 20.0),
        token_limit=int(config.get("token_limit") or 10),
        token_source=source,
    )
