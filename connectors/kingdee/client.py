"""An httpx client for the Kingdee K/3 Cloud (金蝶云星空) WebAPI read path.

What it handles so callers do not have to:

* login with ``ValidateUser`` (password) or ``LoginByAppSecret`` (app id + secret) and the session
  cookies the server sets (``kdservice-sessionid`` / ``ASP.NET_SessionId``);
* errors that arrive as HTTP 200: ``[[{"Result": {"ResponseStatus": {"IsSuccess": false, ...}}}]]``
  for queries, ``{"Result": {"ResponseStatus": ...}}`` for the rest, plain ``response_error:`` text;
* a lost session ("会话信息已丢失" / ``MsgCode`` 1): log in again and repeat the call;
* throttling (``MsgCode`` 14), HTTP 5xx/429, timeouts and dropped connections: retry with
  exponential backoff and jitter, up to ``max_retries`` times, then a :class:`KingdeeError`.

Secrets (password, app secret) are never logged, never put in an exception and never shown in a repr.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import httpx

log = logging.getLogger("tongbu.kingdee")

SERVICE_PREFIX = "Kingdee.BOS.WebApi.ServicesStub."
VALIDATE_USER = "AuthService.ValidateUser"
LOGIN_BY_APP_SECRET = "AuthService.LoginByAppSecret"
EXECUTE_BILL_QUERY = "DynamicFormService.ExecuteBillQuery"
VIEW = "DynamicFormService.View"

MSG_SESSION_LOST = 1
MSG_THROTTLED = 14
SESSION_LOST_TEXT = "会话信息已丢失"
MAX_PAGE_SIZE = 10000  # documented cap of ExecuteBillQuery ``Limit``

#: Kingdee servers run on China Standard Time and return naive local times.
CHINA_TZ = dt.timezone(dt.timedelta(hours=8))


class KingdeeError(Exception):
    """A call the Kingdee server rejected or that could not be completed.

    ``msg_code`` is ``ResponseStatus.MsgCode`` when the server sent one; ``status_code`` is the HTTP
    status for transport-level failures.
    """

    def __init__(
        self,
        message: str,
        *,
        msg_code: int | None = None,
        status_code: int | None = None,
        service: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.msg_code = msg_code
        self.status_code = status_code
        self.service = service


class KingdeeAuthError(KingdeeError):
    """Login refused (wrong account, user, password or app credentials)."""


class _Retryable(Exception):
    """Internal: a failure worth another attempt (throttled, 5xx, timeout, lost session)."""

    def __init__(
        self,
        reason: str,
        *,
        session_lost: bool = False,
        msg_code: int | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.session_lost = session_lost
        self.msg_code = msg_code
        self.status_code = status_code


def response_status_error(data: Any) -> dict[str, Any] | None:
    """The failed ``ResponseStatus`` inside a 200 response, or None when the call succeeded.

    Queries wrap it as ``[[{"Result": {...}}]]``; other services return ``{"Result": {...}}``.
    """
    node = data
    if isinstance(node, list):
        if (
            len(node) == 1
            and isinstance(node[0], list)
            and len(node[0]) == 1
            and isinstance(node[0][0], dict)
        ):
            node = node[0][0]
        else:
            return None
    if not isinstance(node, dict):
        return None
    result = node.get("Result")
    if not isinstance(result, dict):
        return None
    status = result.get("ResponseStatus")
    if isinstance(status, dict) and status.get("IsSuccess") is False:
        return status
    return None


def _error_message(status: dict[str, Any]) -> str:
    errors = status.get("Errors") or []
    messages = [str(e.get("Message")) for e in errors if isinstance(e, dict) and e.get("Message")]
    return "; ".join(messages) or f"ErrorCode {status.get('ErrorCode')}"


def to_filter_literal(value: str | dt.datetime) -> str:
    """An ISO timestamp (any offset; naive = +08:00) as a FilterString literal in server time.

    ``'2024-05-01T02:20:30.5+00:00'`` -> ``2024-05-01 10:20:30.500``; the millisecond part is
    omitted when zero.
    """
    moment = (
        value
        if isinstance(value, dt.datetime)
        else dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    )
    if moment.tzinfo is not None:
        moment = moment.astimezone(CHINA_TZ).replace(tzinfo=None)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    ms = moment.microsecond // 1000
    return f"{text}.{ms:03d}" if ms else text


def normalize_kingdee_datetime(raw: str) -> str:
    """Kingdee's naive local ``2024-05-02T10:11:12.34`` -> ``2024-05-02T10:11:12.340+08:00``.

    Fixed width (milliseconds always present, constant offset), so the results sort as strings in
    time order. Raises ``ValueError`` on anything that is not such a timestamp.
    """
    if len(raw) >= 19 and raw[4] == "-" and raw[10] in "T " and raw[13] == ":" and raw[16] == ":":
        head = raw[:10] + "T" + raw[11:19]
        if len(raw) == 19:
            return head + ".000+08:00"
        if raw[19] == "." and raw[20:].isdigit():
            return head + "." + raw[20:23].ljust(3, "0") + "+08:00"
    raise ValueError(f"not a Kingdee timestamp: {raw!r}")


def normalize_iso(value: str) -> str:
    """Any ISO-8601 timestamp (naive = +08:00) in the fixed-width +08:00 form of
    :func:`normalize_kingdee_datetime`, so bookmarks from any source compare correctly as strings."""
    moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    moment = moment.astimezone(CHINA_TZ) if moment.tzinfo else moment.replace(tzinfo=CHINA_TZ)
    return moment.isoformat(timespec="milliseconds")


class KingdeeClient:
    """A session-keeping, retrying client for one Kingdee account (数据中心).

    Log in with ``password`` (``ValidateUser``) or with ``app_id`` + ``app_secret``
    (``LoginByAppSecret``). Login happens lazily on the first call and again whenever the server
    reports the session lost.
    """

    def __init__(
        self,
        base_url: str,
        *,
        acct_id: str,
        username: str,
        password: str | None = None,
        app_id: str | None = None,
        app_secret: str | None = None,
        lcid: int = 2052,
        timeout: float = 60.0,
        max_retries: int = 8,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not password and not (app_id and app_secret):
            raise ValueError("Kingdee login needs either password, or app_id and app_secret")
        self.base_url = self._service_root(base_url)
        self.acct_id = acct_id
        self.username = username
        self.app_id = app_id
        self.lcid = int(lcid)
        self.max_retries = max(0, int(max_retries))
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        # Kept private and out of __repr__/exceptions; only the login body carries them.
        self.__password = password
        self.__app_secret = app_secret
        self._sleep = sleep
        self._jitter = random.Random()
        self._logged_in = False
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers={"Content-Type": "application/json;charset=utf-8", "User-Agent": "tongbu-kingdee/1.0"},
        )
        #: counters a caller can surface (runs, tests): calls, retries, relogins, failures by kind
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "requests",
                "logins",
                "relogins",
                "retries",
                "throttled",
                "session_lost",
                "server_errors",
                "timeouts",
                "connection_errors",
            ),
            0,
        )

    def __repr__(self) -> str:
        mode = "password" if self.__password else "app_secret"
        return f"KingdeeClient(base_url={self.base_url!r}, acct_id={self.acct_id!r}, username={self.username!r}, auth={mode})"

    @staticmethod
    def _service_root(base_url: str) -> str:
        root = base_url.rstrip("/")
        if root.lower().endswith("/k3cloud"):
            root = root[: -len("/k3cloud")]
        return root + "/k3cloud/"

    def _url(self, service: str) -> str:
        return f"{self.base_url}{SERVICE_PREFIX}{service}.common.kdsvc"

    # -- lifecycle ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> KingdeeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API -------------------------------------------------------------------------------------
    def login(self) -> None:
        """Log in (again) and keep the session cookies; raises :class:`KingdeeAuthError` if refused."""
        self._http.cookies.clear()
        if self.__password:
            service = VALIDATE_USER
            params: list[Any] = [self.acct_id, self.username, self.__password, self.lcid]
        else:
            service = LOGIN_BY_APP_SECRET
            params = [self.acct_id, self.username, self.app_id, self.__app_secret, self.lcid]
        body = {
            "format": 1,
            "useragent": "ApiClient",
            "rid": {},
            "parameters": params,
            "timestamp": dt.datetime.now(CHINA_TZ).strftime("%Y-%m-%d"),
            "v": "1.0",
        }
        data = self._send(service, body, needs_session=False)
        if not isinstance(data, dict) or data.get("LoginResultType") != 1:
            reason = (data or {}).get("Message") if isinstance(data, dict) else None
            raise KingdeeAuthError(
                f"Kingdee login refused for user {self.username!r} in account {self.acct_id!r}: "
                f"{reason or 'no reason given'} (check acct_id/username and the password or app secret)",
                service=service,
            )
        self._logged_in = True
        self.stats["logins"] += 1

    def execute_bill_query(
        self,
        form_id: str,
        field_keys: list[str] | str,
        filter_string: str = "",
        order_string: str = "",
        start_row: int = 0,
        limit: int = 2000,
        top_row_count: int = 0,
    ) -> list[list[Any]]:
        """Rows of ``form_id`` as lists in ``field_keys`` order (one row per entry line when entry
        fields are asked for)."""
        keys = field_keys if isinstance(field_keys, str) else ",".join(field_keys)
        data = {
            "FormId": form_id,
            "FieldKeys": keys,
            "FilterString": filter_string,
            "OrderString": order_string,
            "TopRowCount": int(top_row_count),
            "StartRow": int(start_row),
            "Limit": min(int(limit), MAX_PAGE_SIZE),
            "SubSystemId": "",
        }
        result = self._send(EXECUTE_BILL_QUERY, {"data": data}, needs_session=True, context=form_id)
        if not isinstance(result, list):
            raise KingdeeError(
                f"ExecuteBillQuery {form_id}: expected an array of rows, got {type(result).__name__}",
                service=EXECUTE_BILL_QUERY,
            )
        return result

    def view(self, form_id: str, *, number: str | None = None, id: int | str | None = None) -> dict[str, Any]:
        """One document/base-data entity by ``number`` or internal ``id`` (ORM property names)."""
        data = {
            "CreateOrgId": 0,
            "Number": number or "",
            "Id": "" if id is None else str(id),
            "IsSortBySeq": "false",
        }
        result = self._send(VIEW, {"formid": form_id, "data": data}, needs_session=True, context=form_id)
        entity = result.get("Result", {}).get("Result") if isinstance(result, dict) else None
        if not isinstance(entity, dict):
            raise KingdeeError(f"View {form_id}: no entity in the response", service=VIEW)
        return entity

    # -- transport with retries -----------------------------------------------------------------------
    def _send(self, service: str, body: dict[str, Any], *, needs_session: bool, context: str = "") -> Any:
        attempt = 0
        relogged = False
        label = f"{service.split('.')[-1]}{' ' + context if context else ''}"
        while True:
            try:
                if needs_session and not self._logged_in:
                    self.login()
                return self._attempt(service, body, needs_session)
            except _Retryable as exc:
                if exc.session_lost:
                    self._logged_in = False
                    self.stats["session_lost"] += 1
                    if not relogged:
                        # First loss in this call: log in again at once (the usual cause is an
                        # idle or recycled session, not an overloaded server).
                        relogged = True
                        self.stats["relogins"] += 1
                        log.info("%s: session lost, logging in again", label)
                        continue
                attempt += 1
                if attempt > self.max_retries:
                    raise KingdeeError(
                        f"{label}: giving up after {attempt} attempts; last error: {exc.reason}",
                        msg_code=exc.msg_code,
                        status_code=exc.status_code,
                        service=service,
                    ) from None
                delay = self._backoff(attempt)
                self.stats["retries"] += 1
                log.warning(
                    "%s: %s; retry %d/%d in %.2fs", label, exc.reason, attempt, self.max_retries, delay
                )
                self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff capped at ``backoff_max``, with "equal jitter" so that parallel
        clients throttled together do not come back together."""
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return ceiling / 2 + self._jitter.uniform(0, ceiling / 2)

    def _attempt(self, service: str, body: dict[str, Any], needs_session: bool) -> Any:
        self.stats["requests"] += 1
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        try:
            response = self._http.post(self._url(service), content=content)
        except httpx.TimeoutException:
            self.stats["timeouts"] += 1
            raise _Retryable("request timed out") from None
        except httpx.TransportError as exc:
            self.stats["connection_errors"] += 1
            raise _Retryable(f"connection error ({type(exc).__name__})") from None
        status = response.status_code
        if status >= 500 or status == 429:
            self.stats["server_errors"] += 1
            raise _Retryable(f"HTTP {status}", status_code=status)
        if status >= 400:
            raise KingdeeError(
                f"{service}: HTTP {status} from {self.base_url} (is base_url the K/3 Cloud site?)",
                status_code=status,
                service=service,
            )
        text = response.text
        if text.startswith("response_error:"):
            raise KingdeeError(f"{service}: {text[len('response_error:') :].strip()[:500]}", service=service)
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise KingdeeError(f"{service}: response is not JSON: {text[:200]!r}", service=service) from None
        failed = response_status_error(data)
        if failed is None:
            return data
        message = _error_message(failed)
        code = failed.get("MsgCode")
        if needs_session and (SESSION_LOST_TEXT in message or code == MSG_SESSION_LOST):
            raise _Retryable(f"session lost ({message})", session_lost=True, msg_code=code)
        if code == MSG_THROTTLED:
            self.stats["throttled"] += 1
            raise _Retryable(f"throttled (MsgCode 14: {message})", msg_code=code)
        raise KingdeeError(f"{service}: {message} (MsgCode {code})", msg_code=code, service=service)
