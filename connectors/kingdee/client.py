"""An httpx client for the Kingdee K/3 Cloud (金蝶云星空) WebAPI read path, on the connector kit.

What it handles so callers do not have to:

* login with ``ValidateUser`` (password) or ``LoginByAppSecret`` (app id + secret) and the session
  cookies the server sets (``kdservice-sessionid`` / ``ASP.NET_SessionId``);
* errors that arrive as HTTP 200: ``[[{"Result": {"ResponseStatus": {"IsSuccess": false, ...}}}]]``
  for queries, ``{"Result": {"ResponseStatus": ...}}`` for the rest, plain ``response_error:`` text;
* a lost session ("会话信息已丢失" / ``MsgCode`` 1): log in again and repeat the call at once (once per
  call; a session lost again is retried like any transient failure);
* throttling (``MsgCode`` 14, HTTP 429), HTTP 5xx, timeouts and dropped connections: the kit's one retry
  policy (:mod:`connectors.kit.retry`: full jitter, ``Retry-After``, ``max_retries`` and
  ``max_retry_seconds``), then the last error with "giving up after N attempts".

Every error is a :class:`KingdeeError` and also one of the kit's categories (``Throttled``,
``Transient``, ``AuthError``, ``BadRequest``, ``NotFound``). Secrets (password, app secret, session
cookies) are never logged, never put in an exception and never shown in a repr.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
from connectors.kit.logs import get_logger, remember_secret
from connectors.kit.settings import HttpSettings

log = get_logger("tongbu.kingdee")

SERVICE_PREFIX = "Kingdee.BOS.WebApi.ServicesStub."
VALIDATE_USER = "AuthService.ValidateUser"
LOGIN_BY_APP_SECRET = "AuthService.LoginByAppSecret"
EXECUTE_BILL_QUERY = "DynamicFormService.ExecuteBillQuery"
VIEW = "DynamicFormService.View"
SAVE = "DynamicFormService.Save"
BATCH_SAVE = "DynamicFormService.BatchSave"
SUBMIT = "DynamicFormService.Submit"
AUDIT = "DynamicFormService.Audit"
UNAUDIT = "DynamicFormService.UnAudit"
CANCEL_ASSIGN = "DynamicFormService.CancelAssign"
DELETE = "DynamicFormService.Delete"
EXCUTE_OPERATION = "DynamicFormService.ExcuteOperation"  # sic, as the server names it
MSG_NETWORK_CONTROL = 13

MSG_SESSION_LOST = 1
MSG_THROTTLED = 14
SESSION_LOST_TEXT = "会话信息已丢失"
MAX_PAGE_SIZE = 10000  # documented cap of ExecuteBillQuery ``Limit``

#: Kingdee servers run on China Standard Time and return naive local times.
CHINA_TZ = dt.timezone(dt.timedelta(hours=8))


class KingdeeError(ConnectorError):
    """A call the Kingdee server rejected or that could not be completed.

    ``msg_code`` is ``ResponseStatus.MsgCode`` when the server sent one; ``status_code`` is the HTTP
    status for transport-level failures.
    """

    msg_code: int | None = None
    service: str | None = None

    def __init__(
        self,
        message: str,
        *,
        msg_code: int | None = None,
        status_code: int | None = None,
        service: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, status_code=status_code, **kwargs)
        self.msg_code = msg_code
        self.service = service


class KingdeeAuthError(KingdeeError, AuthError):
    """Login refused (wrong account, user, password or app credentials)."""


class KingdeeThrottled(KingdeeError, Throttled):
    """MsgCode 14 or HTTP 429: the server asks us to slow down."""


class KingdeeTransient(KingdeeError, Transient):
    """HTTP 5xx, a timeout or a dropped connection."""


class KingdeeSessionLost(KingdeeTransient):
    """The server forgot our session (MsgCode 1 / 会话信息已丢失); cured by logging in again."""

    kind = "session_lost"


class KingdeeBadRequest(KingdeeError, BadRequest):
    """The server refused the request (a wrong field, a bad FilterString, an HTTP 4xx)."""


class KingdeeLocked(KingdeeTransient):
    """MsgCode 13 (网控冲突 / 网络互斥): another user or process holds the record; nothing was
    applied, so the same write may simply be sent again later."""

    kind = "locked"


class KingdeeWriteError(KingdeeBadRequest):
    """A write the server refused for what it says (validation, a state that forbids it).

    ``errors`` are Kingdee's ``Errors[]`` items (``FieldName``, ``Message``, ``DIndex``).
    """

    def __init__(self, message: str, *, errors: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.errors = list(errors or [])


@dataclass(frozen=True)
class WriteOutcome:
    """What a write service answered, entity by entity: ``done`` maps ``DIndex`` to (Id, Number)
    and ``errors`` are the ``Errors[]`` items of the refused ones."""

    done: dict[int, tuple[int, str]]
    errors: list[dict[str, Any]]
    msg_code: int | None = None

    @property
    def ok(self) -> bool:
        """True when every entity succeeded."""
        return not self.errors


class KingdeeNotFound(KingdeeError, NotFound):
    """HTTP 404: the URL is not a K/3 Cloud WebAPI."""


ERRORS = ErrorFamily(
    KingdeeError,
    {
        Throttled: KingdeeThrottled,
        Transient: KingdeeTransient,
        AuthError: KingdeeAuthError,
        NotFound: KingdeeNotFound,
        BadRequest: KingdeeBadRequest,
    },
)


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


class KingdeeClient(HttpClient):
    """A session-keeping, retrying client for one Kingdee account (数据中心).

    Log in with ``password`` (``ValidateUser``) or with ``app_id`` + ``app_secret``
    (``LoginByAppSecret``). Login happens lazily on the first call and again whenever the server
    reports the session lost. HTTP settings come from ``settings`` or the keyword arguments of the same
    names (:class:`connectors.kit.settings.HttpSettings`).
    """

    name = "kingdee"
    error_family = ERRORS

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], *, connector: str) -> KingdeeClient:
        """A client from a connection config (the tap's, the target's and the spoke's settings).

        ``connector`` names the program in error messages (``tap-kingdee``, ``target-kingdee``, …).
        """
        if not cfg.get("password") and not (cfg.get("app_id") and cfg.get("app_secret")):
            raise KingdeeError(f"{connector} config needs `password`, or `app_id` and `app_secret`")
        return cls(
            cfg["base_url"],
            acct_id=cfg["acct_id"],
            username=cfg["username"],
            password=cfg.get("password"),
            app_id=cfg.get("app_id"),
            app_secret=cfg.get("app_secret"),
            lcid=int(cfg.get("lcid") or 2052),
            settings=HttpSettings.from_config(cfg, connector=connector, request_timeout=60),
        )

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
        settings: HttpSettings | None = None,
        request_timeout: float = 60.0,
        max_retries: int = 8,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_seconds: float = 300.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not password and not (app_id and app_secret):
            raise ValueError("Kingdee login needs either password, or app_id and app_secret")
        settings = settings or HttpSettings(
            request_timeout=float(request_timeout),
            max_retries=max(0, int(max_retries)),
            backoff_base=float(backoff_base),
            backoff_max=float(backoff_max),
            max_retry_seconds=float(max_retry_seconds),
        )
        super().__init__(
            settings=settings,
            headers={"Content-Type": "application/json;charset=utf-8", "User-Agent": "tongbu-kingdee/1.0"},
            transport=transport,
            sleep=sleep,
            logger=log,
        )
        self.base_url = self._service_root(base_url)
        self.acct_id = acct_id
        self.username = username
        self.app_id = app_id
        self.lcid = int(lcid)
        # Kept private and out of __repr__/exceptions; only the login body carries them, and the log
        # redactor masks them should they ever reach a log line.
        self.__password = password
        self.__app_secret = app_secret
        remember_secret(password)
        remember_secret(app_secret)
        self._logged_in = False
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

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt of one call."""
        return self.policy.max_retries

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
    def __enter__(self) -> KingdeeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API -------------------------------------------------------------------------------------
    def login(self) -> None:
        """Log in (again) and keep the session cookies; raises :class:`KingdeeAuthError` if refused."""
        self.retrying(self._login_once, label="login")

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
        result = self._call_service(EXECUTE_BILL_QUERY, {"data": data}, context=form_id)
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
        result = self._call_service(VIEW, {"formid": form_id, "data": data}, context=form_id)
        entity = result.get("Result", {}).get("Result") if isinstance(result, dict) else None
        if not isinstance(entity, dict):
            raise KingdeeError(f"View {form_id}: no entity in the response", service=VIEW)
        return entity

    # -- writes ------------------------------------------------------------------------------------------
    def save(
        self,
        form_id: str,
        model: dict[str, Any],
        *,
        need_update_fields: list[str] | None = None,
        is_delete_entry: bool = True,
        need_return_fields: list[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> tuple[int, str]:
        """``Save`` one entity (create when its id is 0/absent, else modify); returns (Id, Number).

        A modify sends exactly ``need_update_fields`` (``NeedUpDateFields``); ``is_delete_entry``
        false keeps entry rows the model leaves out; ``extra`` adds options such as
        ``IsAutoSubmitAndAudit``. Raises :class:`KingdeeWriteError` when refused.
        """
        data = {
            "NeedUpDateFields": list(need_update_fields or []),
            "NeedReturnFields": list(need_return_fields or []),
            "IsDeleteEntry": "true" if is_delete_entry else "false",
            "SubSystemId": "",
            "IsVerifyBaseDataField": "false",
            **(extra or {}),
            "Model": model,
        }
        outcome = self._write(SAVE, form_id, data)
        self._raise_refused(SAVE, form_id, outcome)
        return outcome.done[0]

    def batch_save(
        self,
        form_id: str,
        models: list[dict[str, Any]],
        *,
        need_update_fields: list[str] | None = None,
        is_delete_entry: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> WriteOutcome:
        """``BatchSave``: every model saved on its own; the outcome says which (``DIndex``) failed."""
        data = {
            "NeedUpDateFields": list(need_update_fields or []),
            "IsDeleteEntry": "true" if is_delete_entry else "false",
            "BatchCount": min(len(models), 8),
            **(extra or {}),
            "Model": models,
        }
        return self._write(BATCH_SAVE, form_id, data)

    def lifecycle(
        self, operation: str, form_id: str, *, numbers: list[str] | None = None, ids: list[int] | None = None
    ) -> WriteOutcome:
        """``Submit`` / ``Audit`` / ``UnAudit`` / ``CancelAssign`` / ``Delete`` by numbers or ids."""
        service = {
            "submit": SUBMIT,
            "audit": AUDIT,
            "unaudit": UNAUDIT,
            "cancelassign": CANCEL_ASSIGN,
            "delete": DELETE,
        }[operation.lower()]
        data = {
            "CreateOrgId": 0,
            "Numbers": list(numbers or []),
            "Ids": ",".join(str(i) for i in ids or []),
            "InterationFlags": "",
            "NetworkCtrl": "",
        }
        return self._write(service, form_id, data)

    def operation(
        self, form_id: str, op_number: str, *, numbers: list[str] | None = None, ids: list[int] | None = None
    ) -> WriteOutcome:
        """``ExcuteOperation`` (sic) with ``opNumber`` (``Forbid``, ``Enable``, ``Cancel``, ...)."""
        data = {"CreateOrgId": 0, "Numbers": list(numbers or []), "Ids": ",".join(str(i) for i in ids or [])}
        return self._write(EXCUTE_OPERATION, form_id, data, op_number=op_number)

    def _write(
        self, service: str, form_id: str, data: dict[str, Any], op_number: str | None = None
    ) -> WriteOutcome:
        body: dict[str, Any] = {"formid": form_id, "data": data}
        if op_number is not None:
            body["opNumber"] = op_number
        result = self._call_service(service, body, context=form_id, write=True)
        status = (result.get("Result") or {}).get("ResponseStatus") if isinstance(result, dict) else None
        if not isinstance(status, dict):
            raise KingdeeError(f"{service} {form_id}: no ResponseStatus in the answer", service=service)
        done = {}
        for e in status.get("SuccessEntitys") or []:
            if isinstance(e, dict):
                done[int(e.get("DIndex") or 0)] = (int(e.get("Id") or 0), str(e.get("Number") or ""))
        errors = [e for e in status.get("Errors") or [] if isinstance(e, dict)]
        if status.get("IsSuccess") is False and not errors:
            errors = [{"FieldName": None, "Message": f"ErrorCode {status.get('ErrorCode')}", "DIndex": 0}]
        return WriteOutcome(done, errors, status.get("MsgCode"))

    @staticmethod
    def _raise_refused(service: str, form_id: str, outcome: WriteOutcome) -> None:
        if outcome.ok and 0 in outcome.done:
            return
        parts = [
            (f"{e.get('FieldName')}: " if e.get("FieldName") else "") + str(e.get("Message"))
            for e in outcome.errors
        ]
        raise KingdeeWriteError(
            f"{service.split('.')[-1]} {form_id} refused: {'; '.join(parts) or 'no entity saved'} (MsgCode {outcome.msg_code})",
            errors=outcome.errors,
            msg_code=outcome.msg_code,
            service=service,
        )

    # -- one call = one retry loop -----------------------------------------------------------------
    def _call_service(
        self, service: str, body: dict[str, Any], *, context: str = "", write: bool = False
    ) -> Any:
        label = f"{service.split('.')[-1]}{' ' + context if context else ''}"
        relogged = False

        def attempt() -> Any:
            nonlocal relogged
            if not self._logged_in:
                self._login_once()
            try:
                return self._post(service, body, needs_session=True, write=write)
            except KingdeeSessionLost:
                if relogged:
                    raise  # lost again in this call: back off like any transient failure
                # First loss in this call: log in again at once (the usual cause is an idle or
                # recycled session, not an overloaded server).
                relogged = True
                self.stats["relogins"] += 1
                log.info("%s: session lost, logging in again", label)
                self._login_once()
                return self._post(service, body, needs_session=True, write=write)

        if not write:
            return self.retrying(attempt, label=label)
        # A write is retried only where the server said it applied nothing (throttled, locked,
        # session lost). After a 5xx, a timeout or a dropped connection the write may have been
        # applied: it is not sent again here; the caller looks the record up first (no duplicate).
        return self.policy.run(
            attempt,
            label=label,
            is_retryable=lambda exc: isinstance(exc, KingdeeThrottled | KingdeeLocked | KingdeeSessionLost),
            sleep=self._sleep,
            on_retry=self.on_retry,
            logger=self.log,
            rng=self._rng,
        )

    def on_retry(self, exc: BaseException, retry: int, delay: float) -> None:
        """Count retries for :attr:`stats`."""
        self.stats["retries"] += 1

    def _login_once(self) -> None:
        self.http.cookies.clear()
        self._logged_in = False
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
        data = self._post(service, body, needs_session=False)
        for cookie in self.http.cookies.jar:
            remember_secret(cookie.value)  # a session id in a log is a login; mask it everywhere
        if not isinstance(data, dict) or data.get("LoginResultType") != 1:
            reason = (data or {}).get("Message") if isinstance(data, dict) else None
            raise KingdeeAuthError(
                f"Kingdee login refused for user {self.username!r} in account {self.acct_id!r}: "
                f"{reason or 'no reason given'} (check acct_id/username and the password or app secret)",
                service=service,
            )
        self._logged_in = True
        self.stats["logins"] += 1

    def _post(self, service: str, body: dict[str, Any], *, needs_session: bool, write: bool = False) -> Any:
        """One POST, no retry; every failure raised as a :class:`KingdeeError` of its category."""
        self.stats["requests"] += 1
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        try:
            response = self.send("POST", self._url(service), content=content)
        except KingdeeError as exc:
            exc.service = service
            if exc.kind == "timeout":
                self.stats["timeouts"] += 1
            elif exc.kind == "connection":
                self.stats["connection_errors"] += 1
            elif exc.status_code is not None and (exc.status_code >= 500 or exc.status_code == 429):
                self.stats["server_errors"] += 1
            elif isinstance(exc, BadRequest | NotFound | AuthError):
                exc.message = f"{exc.message} (is base_url the K/3 Cloud site?)"
                exc.args = (exc.message,)
            raise
        text = response.text
        if text.startswith("response_error:"):
            raise KingdeeBadRequest(
                f"{service}: {text[len('response_error:') :].strip()[:500]}", service=service
            )
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
            self._logged_in = False
            self.stats["session_lost"] += 1
            raise KingdeeSessionLost(f"{service}: session lost ({message})", msg_code=code, service=service)
        if code == MSG_THROTTLED:
            self.stats["throttled"] += 1
            raise KingdeeThrottled(
                f"{service}: throttled (MsgCode 14: {message})", msg_code=code, service=service
            )
        if code == MSG_NETWORK_CONTROL:
            self.stats["locked"] = self.stats.get("locked", 0) + 1
            raise KingdeeLocked(
                f"{service}: record locked (MsgCode 13: {message})", msg_code=code, service=service
            )
        if write:
            return data  # the caller reads Errors[] entity by entity
        raise KingdeeBadRequest(f"{service}: {message} (MsgCode {code})", msg_code=code, service=service)
