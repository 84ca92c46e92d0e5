"""The Kingdee K/3 Cloud WebAPI over HTTP: login and sessions, the query services, the control API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from connectors.kingdee.simulator.forms import (
    FORMS,
    LCID_ZH_CN,
    MSG_BAD_PARAM,
    MSG_NOT_FOUND,
    MSG_SESSION_LOST,
    MSG_THROTTLED,
    QueryError,
    form_def,
)
from connectors.kingdee.simulator.store import KingdeeStore
from connectors.kingdee.simulator.writes import MSG_NETWORK_CONTROL, WriteError, parse_data
from connectors.kit.simulator import FaultSpec, Simulator

SERVICE_PREFIX = "Kingdee.BOS.WebApi.ServicesStub."
VALIDATE_USER = "AuthService.ValidateUser"
LOGIN_BY_APP_SECRET = "AuthService.LoginByAppSecret"
EXECUTE_BILL_QUERY = "DynamicFormService.ExecuteBillQuery"
BILL_QUERY = "DynamicFormService.BillQuery"
VIEW = "DynamicFormService.View"
SAVE = "DynamicFormService.Save"
BATCH_SAVE = "DynamicFormService.BatchSave"
SUBMIT = "DynamicFormService.Submit"
AUDIT = "DynamicFormService.Audit"
UNAUDIT = "DynamicFormService.UnAudit"
CANCEL_ASSIGN = "DynamicFormService.CancelAssign"
DELETE = "DynamicFormService.Delete"
#: sic: the real service name is misspelt, and so is it here
EXCUTE_OPERATION = "DynamicFormService.ExcuteOperation"
#: write services by lower-cased name -> the lifecycle operation (None: a save)
WRITE_SERVICES = {
    SAVE.lower(): None,
    BATCH_SAVE.lower(): None,
    SUBMIT.lower(): "submit",
    AUDIT.lower(): "audit",
    UNAUDIT.lower(): "unaudit",
    CANCEL_ASSIGN.lower(): "cancelassign",
    DELETE.lower(): "delete",
    EXCUTE_OPERATION.lower(): "operation",
}
#: ExcuteOperation opNumbers the simulator knows (lower-cased) -> its operation
OPERATIONS = {"forbid": "forbid", "enable": "enable", "cancel": "cancel", "undocancel": "undocancel"}
LOCK_CONFLICT_MESSAGE = "网络互斥：当前数据正在被其他用户或进程操作（网控冲突），请稍后再试"

SESSION_COOKIE = "kdservice-sessionid"
ASPNET_COOKIE = "ASP.NET_SessionId"
SESSION_LOST_MESSAGE = "会话信息已丢失，请重新登录"
THROTTLE_MESSAGE = "接口调用超过限制（调用限制），请稍后再试"


@dataclass
class _Session:
    sid: str
    acct_id: str
    username: str
    last_used: float
    queries: int = 0


class KingdeeSimulator(Simulator):
    """A Kingdee K/3 Cloud WebAPI server with deterministic data and fault injection.

    ``records`` is the number of customers; sales orders and receivables default to the same count
    (each order has 1-4 lines). Data is generated from ``seed``, so two simulators with the same
    arguments serve identical data. Seeding happens on :meth:`start` (or on first use of a data
    method) and costs a few seconds per 100k records.
    """

    system: ClassVar[str] = "kingdee"
    FAULTS: ClassVar[tuple[str, ...]] = (
        "throttle",
        "session_expiry",
        "http_5xx",
        "slow",
        "timeout",
        "hang",
        "same_second",
        "null_modify_date",
        "malformed",
        "lost_response",
        "lock_conflict",
    )
    OWN_FAULTS: ClassVar[tuple[FaultSpec, ...]] = (
        FaultSpec("session_idle", "SECONDS", "a session unused this long is dropped", default=1200.0),
    )
    STATS: ClassVar[tuple[str, ...]] = (
        "logins",
        "login_failures",
        "queries",
        "views",
        "rows_returned",
        "throttled",
        "session_lost",
        "sessions_expired",
        "bad_requests",
        "query_errors",
        "signed_logins",
        "saves",
        "batch_saves",
        "submits",
        "audits",
        "unaudits",
        "cancel_assigns",
        "deletes",
        "operations",
        "entities_saved",
        "entities_created",
        "fields_written",
        "cascade_resets",
        "write_errors",
        "lost_responses",
        "lock_conflicts",
    )

    ACCT_ID: ClassVar[str] = "65f1d7e2c3b4a59687706152"
    USERNAME: ClassVar[str] = "demo"
    PASSWORD: ClassVar[str] = "Kd@demo2024"
    APP_ID: ClassVar[str] = "312478_Rc3/W8uJ0qKaXf0OT2TpSbzuU40Y5pJm"
    APP_SECRET: ClassVar[str] = "f3c0a9d7e1b24c6a8e5d9b0c7a6f4e21"
    LCID: ClassVar[int] = LCID_ZH_CN

    def __init__(
        self,
        *,
        orders: int | None = None,
        receivables: int | None = None,
        db_path: str | None = None,
        **common: Any,
    ) -> None:
        """``common``: the kit's ``records``, ``faults``, ``seed``; ``orders`` and ``receivables``
        default to ``records``; ``db_path`` keeps the SQLite file at a path of your choice."""
        super().__init__(**common)
        records = self.records
        self.counts_wanted = {
            "BD_Customer": max(0, int(records)),
            "SAL_SaleOrder": max(0, int(records if orders is None else orders)),
            "AR_receivable": max(0, int(records if receivables is None else receivables)),
        }
        self.store = KingdeeStore(self.seed, self.counts_wanted, db_path)
        self._lock = self.store.lock
        self._sessions: dict[str, _Session] = {}

    # -- Simulator API ------------------------------------------------------------------------------
    def credentials(self) -> dict[str, Any]:
        """The demo credentials: session login (acct_id/username/password) or app secret."""
        return {
            "acct_id": self.ACCT_ID,
            "username": self.USERNAME,
            "password": self.PASSWORD,
            "app_id": self.APP_ID,
            "app_secret": self.APP_SECRET,
            "lcid": self.LCID,
        }

    def tap_config(self, **overrides: Any) -> dict[str, Any]:
        """A ready ``tap-kingdee`` config for this running simulator (password login)."""
        cfg = {
            "base_url": self.base_url,
            "acct_id": self.ACCT_ID,
            "username": self.USERNAME,
            "password": self.PASSWORD,
            "lcid": self.LCID,
        }
        cfg.update(overrides)
        return cfg

    def seed_data(self) -> None:
        """Create and fill the database (idempotent); row-level faults apply now."""
        self.store.populate(self.faults)

    def close(self) -> None:
        """Stop and delete the data file."""
        self.stop()
        self.store.close()

    def expire_sessions(self) -> int:
        """Drop every session (as a server restart or idle timeout would); returns how many."""
        with self._lock:
            n = len(self._sessions)
            self._sessions.clear()
            return n

    # -- data (the store's) ----------------------------------------------------------------------------
    @property
    def db(self) -> Any:
        """The SQLite connection (seeded on first use)."""
        self.store.populate(self.faults)
        return self.store.db

    def truth_streams(self) -> tuple[str, ...]:
        """The forms, by FormId."""
        return tuple(f.form_id for f in FORMS.values())

    def truth_stream_name(self, stream: str) -> str:
        """The FormId of ``stream``."""
        return form_def(stream).form_id

    def truth(self, form: str, *, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Ground truth of ``form`` in id order: every field by FieldKey, ``lines`` for orders and
        ``_malformed`` (the injected defect, or None)."""
        self.seed_data()
        return self.store.truth(form, offset=offset, limit=limit)

    def counts(self) -> dict[str, int]:
        """Records per form (and sales order lines, and malformed rows)."""
        self.seed_data()
        return self.store.counts()

    def modify(self, form: str, count: int, *, modified_at: str | None = None) -> dict[str, Any]:
        """Change ``count`` random records of ``form`` and stamp them with one new ``FModifyDate``.

        All changed records share the timestamp (one bulk update), which is the case a plain
        ``FModifyDate >`` cursor gets wrong. ``modified_at`` (``'YYYY-MM-DD HH:MM:SS[.fff]'``) stamps an
        older time instead, to play a transaction that commits late.
        """
        self.seed_data()
        return self.store.modify(form, count, modified_at=modified_at)

    def insert(self, form: str, count: int, *, modified_at: str | None = None) -> dict[str, Any]:
        """Create ``count`` new records of ``form`` (new ids), stamped with one new ``FModifyDate``."""
        self.seed_data()
        return self.store.insert(form, count, modified_at=modified_at)

    def delete(self, form: str, count: int, *, ids: Sequence[int] | None = None) -> dict[str, Any]:
        """Hard-delete ``count`` random records of ``form`` (or exactly ``ids``), lines included."""
        self.seed_data()
        return self.store.delete(form, count, ids=ids)

    def edit(self, form: str, id_: int, fields: dict[str, Any]) -> dict[str, Any]:
        """A user's edit in the ERP's own screens: ``fields`` (Save Model keys, e.g. ``{"FTEL": ..}``
        or ``{"FSELLER": {"FNumber": "YG0002"}}``) applied with a new ``FModifyDate``, whatever the
        record's status; not API traffic (no counters move)."""
        self.seed_data()
        return self.store.edit(form, id_, fields)

    def tamper(self, form: str, id_: int, columns: dict[str, Any]) -> dict[str, Any]:
        """An out-of-band change straight in the database: stored ``columns`` set, ``FModifyDate``
        left alone, so only a full compare (reconciliation) can find it."""
        self.seed_data()
        return self.store.tamper(form, id_, columns)

    def execute_bill_query(self, data: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run an ExecuteBillQuery ``data`` object; raises :class:`QueryError`."""
        self.seed_data()
        return self.store.execute_bill_query(data)

    def view(self, form_id: str, number: str | None = None, id_: Any = None) -> dict[str, Any] | None:
        """The View entity (ORM property names, multilingual names) or None when not found."""
        self.seed_data()
        return self.store.view(form_id, number=number, id_=id_)

    # -- HTTP -------------------------------------------------------------------------------------------
    CONTROL_ERRORS: ClassVar[tuple[type[Exception], ...]] = (
        KeyError,
        ValueError,
        TypeError,
        WriteError,
        QueryError,
    )

    def api_routes(self) -> list[BaseRoute]:
        """``/k3cloud/<service>.common.kdsvc``."""
        return [Route("/k3cloud/{service:path}", self._service, methods=["POST"])]

    def control_routes(self) -> list[BaseRoute]:
        """``/_sim/modify``, ``/_sim/insert``, ``/_sim/delete``, ``/_sim/sessions/expire``,
        ``/_sim/edit`` (a user's edit: ``{form, id, fields}``) and ``/_sim/tamper`` (an out-of-band
        database change without a timestamp bump: ``{form, id, columns}``)."""
        return [
            Route("/_sim/modify", self._sim_modify, methods=["POST"]),
            Route("/_sim/insert", self._sim_insert, methods=["POST"]),
            Route("/_sim/delete", self._sim_delete, methods=["POST"]),
            Route("/_sim/sessions/expire", self._sim_expire, methods=["POST"]),
            Route("/_sim/edit", self._sim_edit, methods=["POST"]),
            Route("/_sim/tamper", self._sim_tamper, methods=["POST"]),
        ]

    def http_5xx_response(self, status: int) -> Response:
        """IIS's error page, as a Kingdee server behind IIS answers."""
        return PlainTextResponse(
            f"<html><head><title>{status} - 服务器错误</title></head><body><h2>{status} - Internal server error."
            "</h2><p>IIS 服务器遇到问题，无法完成请求。</p></body></html>",
            status_code=status,
            media_type="text/html",
        )

    async def _service(self, request: Request) -> Response:
        response = await self._serve(request)
        sid = getattr(request.state, "new_sid", None)
        if sid:  # a signed request opened a session: hand it back as the real server does
            response.set_cookie(SESSION_COOKIE, sid, path="/", httponly=True)
            response.set_cookie(ASPNET_COOKIE, sid, path="/", httponly=True)
        return response

    async def _serve(self, request: Request) -> Response:
        name = request.path_params["service"]
        lowered = name.lower()
        if not (lowered.startswith(SERVICE_PREFIX.lower()) and lowered.endswith(".common.kdsvc")):
            return PlainTextResponse("404 - File or directory not found.", status_code=404)
        service = name[len(SERVICE_PREFIX) : -len(".common.kdsvc")].lower()
        failure = await self.transport_faults()
        if failure is not None:
            return failure
        try:
            body = await request.body()
        except ClientDisconnect:  # the client went away (killed) mid-request: nothing to answer
            return PlainTextResponse("", status_code=499)
        try:
            payload = json.loads(body.decode("utf-8-sig") or "{}")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.count("bad_requests")
            # The official SDK checks for this text prefix on failures it cannot wrap in JSON.
            return PlainTextResponse(
                f"response_error:{type(exc).__name__}: 请求报文不是合法的 JSON", status_code=200
            )
        if service == VALIDATE_USER.lower():
            return self._login(payload, by_app_secret=False)
        if service == LOGIN_BY_APP_SECRET.lower():
            return self._login(payload, by_app_secret=True)
        if service in (EXECUTE_BILL_QUERY.lower(), BILL_QUERY.lower()):
            return self._query(request, payload, as_objects=service == BILL_QUERY.lower())
        if service == VIEW.lower():
            return self._view(request, payload)
        if service in WRITE_SERVICES:
            return await self._write(request, service, payload)
        return _json(_status_error(f"不支持的服务：{name}", MSG_BAD_PARAM))

    # login ------------------------------------------------------------------------------------------
    def _login(self, payload: dict[str, Any], *, by_app_secret: bool) -> Response:
        params = payload.get("parameters")
        if isinstance(params, str):
            try:
                params = json.loads(params)
            except json.JSONDecodeError:
                params = None
        if not isinstance(params, list):
            names = (
                ("acctid", "username", "appid", "appsecret", "lcid")
                if by_app_secret
                else ("acctid", "username", "password", "lcid")
            )
            lowered = {str(k).lower(): v for k, v in payload.items()}
            params = [lowered.get(n) for n in names]
        acct, user, secret_a, *rest = [*params, None, None, None, None][:5]
        if by_app_secret:
            ok = (
                acct == self.ACCT_ID
                and user == self.USERNAME
                and secret_a == self.APP_ID
                and (rest[0] if rest else None) == self.APP_SECRET
            )
            reason = "应用ID或应用密钥错误"
        else:
            ok = acct == self.ACCT_ID and user == self.USERNAME and secret_a == self.PASSWORD
            reason = "用户名或密码错误！"
        if acct != self.ACCT_ID:
            reason = "数据中心不存在或已被禁用"
        self.count("logins")
        if not ok:
            self.count("login_failures")
            return _json(_login_result(None, reason, 0))
        sid = secrets.token_hex(16)
        with self._lock:
            self._sessions[sid] = _Session(sid, str(acct), str(user), time.monotonic())
        response = _json(_login_result(sid, None, 1))
        response.set_cookie(SESSION_COOKIE, sid, path="/", httponly=True)
        response.set_cookie(ASPNET_COOKIE, sid, path="/", httponly=True)
        return response

    def _session(self, request: Request) -> _Session | None:
        sid = (
            request.cookies.get(SESSION_COOKIE)
            or request.cookies.get(ASPNET_COOKIE)
            or request.headers.get(SESSION_COOKIE)
        )
        if not sid:
            return None
        idle = self.faults.value("session_idle", 1200.0)
        with self._lock:
            s = self._sessions.get(sid)
            if s is None:
                return None
            now = time.monotonic()
            if now - s.last_used > idle:
                del self._sessions[sid]
                self.count("sessions_expired", 1)
                return None
            s.last_used = now
            return s

    def _signed_session(self, request: Request) -> _Session | None:
        """The current official SDK's auth: no login call, every request signed (external-apis.md
        §2.1 Mode B). A valid signature opens a session (cookie ``kdservice-sessionid``) that later
        requests reuse; a bad one is treated as no session at all."""
        h = request.headers
        app_id = h.get("x-kd-appkey", "")
        try:
            app_data = base64.b64decode(h.get("x-kd-appdata", ""), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        acct, _, rest = app_data.partition(",")
        user = rest.split(",")[0]
        if app_id != self.APP_ID or acct != self.ACCT_ID or user != self.USERNAME:
            return None
        if not hmac.compare_digest(h.get("x-kd-signature", ""), _sign(app_id + app_data, self.APP_SECRET)):
            return None
        client_secret = decode_app_secret(app_id.split("_", 1)[1]) if "_" in app_id else ""
        path = urllib.parse.quote(request.url.path, encoding="utf-8").replace("/", "%2F")
        nonce, ts = h.get("x-api-nonce", ""), h.get("x-api-timestamp", "")
        expected = _sign(f"POST\n{path}\n\nx-api-nonce:{nonce}\nx-api-timestamp:{ts}\n", client_secret)
        if not hmac.compare_digest(h.get("x-api-signature", ""), expected):
            return None
        sid = secrets.token_hex(16)
        session = _Session(sid, acct, user, time.monotonic())
        with self._lock:
            self._sessions[sid] = session
        self.count("signed_logins")
        request.state.new_sid = sid
        return session

    def _gate(self, request: Request) -> tuple[_Session | None, dict[str, Any] | None]:
        """Session and throttling checks shared by query and view; returns (session, error)."""
        session = self._session(request)
        if session is None and request.headers.get("x-kd-appkey"):
            session = self._signed_session(request)
        if session is None:
            self.count("session_lost")
            return None, _status_error(SESSION_LOST_MESSAGE, MSG_SESSION_LOST)
        if self.chance("throttle"):
            self.count("throttled")
            return None, _status_error(THROTTLE_MESSAGE, MSG_THROTTLED)
        budget = self.faults.value("session_expiry", 0.0)
        if budget > 0 and session.queries >= budget:
            with self._lock:
                self._sessions.pop(session.sid, None)
                self.count("sessions_expired", 1)
                self.count("session_lost", 1)
            return None, _status_error(SESSION_LOST_MESSAGE, MSG_SESSION_LOST)
        return session, None

    # query / view ---------------------------------------------------------------------------------------
    def _query(self, request: Request, payload: dict[str, Any], *, as_objects: bool) -> Response:
        session, error = self._gate(request)
        if error is not None or session is None:
            return _json([[error]])
        try:
            data = _query_data(payload)
            rows = self.execute_bill_query(data)
        except QueryError as exc:
            self.count("query_errors")
            return _json([[_status_error(exc.message, exc.msg_code)]])
        with self._lock:
            session.queries += 1
            self.count("queries", 1)
            self.count("rows_returned", len(rows))
        if as_objects:
            keys = [k.strip() for k in str(data.get("FieldKeys")).split(",") if k.strip()]
            return _json([dict(zip(keys, r, strict=True)) for r in rows])
        return _json(rows)

    def _view(self, request: Request, payload: dict[str, Any]) -> Response:
        session, error = self._gate(request)
        if error is not None or session is None:
            return _json(error)
        try:
            data = payload.get("data", payload)
            if isinstance(data, str):
                data = json.loads(data)
            form_id = str(payload.get("formid") or payload.get("FormId") or data.get("FormId") or "")
            entity = self.view(form_id, number=data.get("Number") or None, id_=data.get("Id"))
        except (QueryError, json.JSONDecodeError, ValueError) as exc:
            self.count("query_errors")
            message = exc.message if isinstance(exc, QueryError) else str(exc)
            return _json(_status_error(message, getattr(exc, "msg_code", MSG_BAD_PARAM)))
        with self._lock:
            session.queries += 1
            self.count("views", 1)
        if entity is None:
            return _json(_status_error("单据不存在或已被删除", MSG_NOT_FOUND))
        return _json(
            {
                "Result": {
                    "ResponseStatus": {
                        "IsSuccess": True,
                        "Errors": [],
                        "SuccessEntitys": [],
                        "SuccessMessages": [],
                        "MsgCode": 0,
                    },
                    "Result": entity,
                }
            }
        )

    # write services -------------------------------------------------------------------------------------
    async def _write(self, request: Request, service: str, payload: dict[str, Any]) -> Response:
        session, error = self._gate(request)
        if error is not None or session is None:
            return _json(error)
        if self.chance("lock_conflict"):
            # 网络互斥 (network control): another user or process holds the document; nothing applied.
            self.count("lock_conflicts")
            return _json(_status_error(LOCK_CONFLICT_MESSAGE, MSG_NETWORK_CONTROL))
        op = WRITE_SERVICES[service]
        try:
            form_id = str(payload.get("formid") or payload.get("FormId") or "")
            data = parse_data(payload.get("data", {}))
            if not form_id:
                form_id = str(data.get("FormId") or data.get("formid") or "")
            if op == "operation":
                op_number = str(payload.get("opNumber") or data.get("opNumber") or "")
                op = OPERATIONS.get(op_number.lower())
                if op is None:
                    raise WriteError(
                        [{"FieldName": "opNumber", "Message": f"不支持的操作：{op_number}", "DIndex": 0}],
                        MSG_BAD_PARAM,
                    )
            body = self._apply_write(service, op, form_id, data)
        except (WriteError, QueryError) as exc:
            self.count("write_errors")
            errors = (
                exc.errors
                if isinstance(exc, WriteError)
                else [{"FieldName": None, "Message": exc.message, "DIndex": 0}]
            )
            return _json(_write_status(False, errors, [], exc.msg_code))
        with self._lock:
            session.queries += 1
        if self.chance("lost_response"):
            # Applied, and then the answer never arrives: a proxy gives up on the backend.
            self.count("lost_responses")
            return self.http_5xx_response(504)
        return _json(body)

    def _apply_write(
        self, service: str, op: str | None, form_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        store = self.store
        self.seed_data()
        if service == SAVE.lower():
            self.count("saves")
            result = store.save(form_id, data)
            self._count_saved([result])
            entity = {"Id": result.id, "Number": result.number, "DIndex": 0}
            body = _write_status(True, [], [entity], 0)
            body["Result"].update({"Id": result.id, "Number": result.number, "NeedReturnData": [{}]})
            return body
        if service == BATCH_SAVE.lower():
            self.count("batch_saves")
            results, errors = store.batch_save(form_id, data)
            done = [r for r in results if r is not None]
            self._count_saved(done)
            if errors:
                self.count("write_errors")
            entities = [
                {"Id": r.id, "Number": r.number, "DIndex": i} for i, r in enumerate(results) if r is not None
            ]
            return _write_status(not errors, errors, entities, 11 if errors else 0)
        assert op is not None
        counter = {
            "submit": "submits",
            "audit": "audits",
            "unaudit": "unaudits",
            "cancelassign": "cancel_assigns",
            "delete": "deletes",
        }.get(op, "operations")
        self.count(counter)
        done, errors = store.lifecycle(form_id, op, data)
        if errors:
            self.count("write_errors")
        entities = [{"Id": i, "Number": n, "DIndex": d} for i, n, d in done]
        return _write_status(not errors, errors, entities, 12 if errors else 0)

    def _count_saved(self, results: Sequence[Any]) -> None:
        self.count("entities_saved", len(results))
        self.count("entities_created", sum(1 for r in results if r.created))
        self.count("fields_written", sum(len(r.fields) for r in results))
        self.count("cascade_resets", sum(r.cascades for r in results))

    # control API ------------------------------------------------------------------------------------------
    async def _sim_modify(self, request: Request) -> Response:
        return await self._sim_change(request, self.modify)

    async def _sim_insert(self, request: Request) -> Response:
        return await self._sim_change(request, self.insert)

    async def _sim_delete(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
            ids = body.get("ids")
            args = (str(body["form"]), int(body.get("count", 1)))
            wanted = None if ids is None else [int(i) for i in ids]
        except (KeyError, ValueError, TypeError) as exc:
            return self.control_error(exc)
        return await self.run_control(self.delete, *args, ids=wanted)

    async def _sim_change(self, request: Request, fn: Any) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
            args = (str(body["form"]), int(body.get("count", 1)))
        except (KeyError, ValueError, TypeError) as exc:
            return self.control_error(exc)
        return await self.run_control(fn, *args, modified_at=body.get("modified_at"))

    async def _sim_edit(self, request: Request) -> Response:
        return await self._sim_record(request, "fields", self.edit)

    async def _sim_tamper(self, request: Request) -> Response:
        return await self._sim_record(request, "columns", self.tamper)

    async def _sim_record(self, request: Request, key: str, fn: Any) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
            args = (str(body["form"]), int(body["id"]), dict(body[key]))
        except (KeyError, ValueError, TypeError) as exc:
            return self.control_error(exc)
        return await self.run_control(fn, *args)

    async def _sim_expire(self, request: Request) -> Response:
        return _json({"expired": self.expire_sessions()})


# -- response shapes ---------------------------------------------------------------------------------------
def _write_status(
    ok: bool, errors: list[dict[str, Any]], entities: list[dict[str, Any]], msg_code: int
) -> dict[str, Any]:
    """A write service's answer: ``Result.ResponseStatus`` with errors and ``SuccessEntitys``."""
    status: dict[str, Any] = {
        "IsSuccess": ok,
        "Errors": errors,
        "SuccessEntitys": entities,
        "SuccessMessages": [],
        "MsgCode": msg_code,
    }
    if not ok:
        status = {"ErrorCode": 500, **status}
    return {"Result": {"ResponseStatus": status}}


def _sign(message: str, key: str) -> str:
    """The SDK's signature: base64 of the *hex* HMAC-SHA256 digest (not of the raw digest)."""
    digest = hmac.new(key.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()
    return base64.b64encode(digest.encode("utf-8")).decode("ascii")


_XOR_SEED = "0054s397p6234378o09pn7q3r5qropr7"  # the SDK's default code (ApiConfig.Xor_Code empty)


def _rot13(text: str) -> str:
    out = []
    for ch in text:
        if "a" <= ch <= "z":
            out.append(chr((ord(ch) - 97 + 13) % 26 + 97))
        elif "A" <= ch <= "Z":
            out.append(chr((ord(ch) - 65 + 13) % 26 + 65))
        else:
            out.append(ch)
    return "".join(out)


def decode_app_secret(encoded: str) -> str:
    """The client secret hidden in the second half of an app id, as the official SDK decodes it:
    base64, XOR with a rot13'd fixed code, base64 again ('' when it is not 32 characters)."""
    if len(encoded) != 32:
        return ""
    raw = base64.b64decode(encoded)
    pad = _rot13(_XOR_SEED).encode("utf-8")
    return base64.b64encode(bytes(b ^ pad[i] for i, b in enumerate(raw))).decode("ascii")


def _json(content: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(content, status_code=status)


def _status_error(message: str, msg_code: int, error_code: int = 500) -> dict[str, Any]:
    """``{"Result": {"ResponseStatus": {...}}}`` as Kingdee reports a failed call."""
    return {
        "Result": {
            "ResponseStatus": {
                "ErrorCode": error_code,
                "IsSuccess": False,
                "Errors": [{"FieldName": None, "Message": message, "DIndex": 0}],
                "SuccessEntitys": [],
                "SuccessMessages": [],
                "MsgCode": msg_code,
            }
        }
    }


def _login_result(sid: str | None, message: str | None, result_type: int) -> dict[str, Any]:
    return {
        "Message": message,
        "MessageCode": "CheckPasswordPolicy" if sid else None,
        "LoginResultType": result_type,
        "Context": None
        if sid is None
        else {
            "UserLocale": "zh-CN",
            "LogLocale": "zh-CN",
            "DBid": KingdeeSimulator.ACCT_ID,
            "UserName": KingdeeSimulator.USERNAME,
            "SessionId": sid,
        },
        "KDSVCSessionId": sid,
        "FormId": None,
        "RedirectFormParam": None,
        "FormInputObject": None,
        "ErrorStackTrace": None,
        "Lcid": LCID_ZH_CN,
        "AccessToken": None,
        "KdAccessResult": None,
        "IsSuccessByAPI": sid is not None,
    }


def _query_data(payload: dict[str, Any]) -> dict[str, Any]:
    """The query object from any of the request styles clients use.

    ``{"data": {...}}`` (SDK), ``{"FormId": .., "data": "<json>"}`` (raw) or the classic
    ``{"format": 1, "parameters": [{...}]}`` envelope.
    """
    data: Any = payload.get("data")
    if data is None and isinstance(payload.get("parameters"), list) and payload["parameters"]:
        params = payload["parameters"]
        data = params[-1]
        if isinstance(params[0], str) and len(params) > 1 and not str(params[0]).lstrip().startswith("{"):
            payload = {**payload, "FormId": params[0]}
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError:
            raise QueryError("data 不是合法的 JSON", MSG_BAD_PARAM) from None
    if data is None:
        data = payload
    if not isinstance(data, dict):
        raise QueryError("data 必须是对象", MSG_BAD_PARAM)
    if not (data.get("FormId") or data.get("formid")):
        form_id = payload.get("FormId") or payload.get("formid")
        if form_id:
            data = {**data, "FormId": form_id}
    return data


SIMULATOR = KingdeeSimulator
