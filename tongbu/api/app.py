"""The CRM's records over REST: ``/api/<object>`` on ``tongbu serve`` (OpenAPI at ``/api/openapi.json``).

Objects: accounts, contacts, opportunities, sales orders. Every write goes through
:class:`tongbu.hub.api.CrmApi`, so it is recorded in the CRM's history with the token's name as
its author (``api:<name>``) and the CRM as its origin, runs the duplicate check (same credit code or
number → 409 with the existing id), and is seen by the two-way engine on its next cycle.

* **auth**: ``Authorization: Bearer tbk_…`` (``tongbu api token create``); missing or unknown → 401,
  a read token writing → 403. Tokens are stored hashed (:mod:`tongbu.api.tokens`) and never logged.
* **optimistic concurrency**: every record carries its version (``ETag`` and ``version``); ``PATCH``
  and ``DELETE`` need ``If-Match`` (428 without it) and answer 412 with the current version when the
  record changed since it was read (by a sync, another user, a direct database edit): a racing edit
  is refused, never lost.
* **bounded, JSON only**: bodies over 64 KiB → 413, not ``application/json`` → 415, invalid → 400,
  unknown or read-only fields and wrong types → 422 with one line naming the field.

All database work runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import JSON, Boolean, Date, DateTime, Engine, Integer, Numeric, String, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from tongbu.api.tokens import TokenInfo, TokenStore
from tongbu.canon import canon
from tongbu.hub.api import CRM_ORIGIN, CrmApi, DuplicateRecordError, StaleRecordError, business_columns
from tongbu.hub.store import HubError, hub_table

log = logging.getLogger("tongbu.api")

OBJECTS = ("accounts", "contacts", "opportunities", "sales_orders")
MAX_BODY = 64 * 1024
MAX_LIMIT = 500
#: columns shown but never written through the API
_SHOWN = ("id", "source_system", "source_id", "created_at", "updated_at", "deleted_at")


class ApiError(Exception):
    """An answer other than success: status, one public line, and extra fields for the body."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra
        self.headers: dict[str, str] = {}


# -- values in and out -------------------------------------------------------------------------------------
def _decode(object_name: str, name: str, value: Any) -> Any:
    """A JSON value for column ``name`` in the column's Python type (422 naming the field otherwise)."""
    if value is None:
        return None
    kind = hub_table(object_name).c[name].type

    def bad(what: str) -> ApiError:
        return ApiError(422, f"{name}: {what}", field=name)

    if isinstance(kind, Boolean):
        if not isinstance(value, bool):
            raise bad("expected true or false")
        return value
    if isinstance(kind, Integer):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("expected an integer")
        return value
    if isinstance(kind, Numeric):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise bad("expected a number (or its decimal text)")
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise bad("expected a number (or its decimal text)") from None
        digits = (kind.precision or 18) - (kind.scale or 0)
        if not number.is_finite() or abs(number) >= Decimal(10) ** digits:
            raise bad(f"number out of range (at most {digits} digits before the point)")
        return number.quantize(Decimal(1).scaleb(-(kind.scale or 0))) if kind.scale else number
    if isinstance(kind, DateTime | Date):
        if not isinstance(value, str) or len(value) > 40:
            raise bad("expected an ISO 8601 date or date-time text")
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise bad("expected an ISO 8601 date or date-time text") from None
        if isinstance(kind, Date) and not isinstance(kind, DateTime):
            return moment.date()
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    if isinstance(kind, JSON):
        if not isinstance(value, list | dict):
            raise bad("expected a JSON array or object")
        if name == "lines" and not all(isinstance(line, dict) for line in value):
            raise bad("expected an array of line objects")
        return value
    if isinstance(kind, String):
        if not isinstance(value, str):
            raise bad("expected text")
        if kind.length and len(value) > kind.length:
            raise bad(f"at most {kind.length} characters")
        if "\x00" in value:
            raise bad("text must not contain NUL characters")
        return value
    return value


def _fields(object_name: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(422, "the body must be a JSON object of field names and values")
    allowed = business_columns(object_name)
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ApiError(
            422, f"{object_name} has no writable field {unknown[0]!r} (fields: {', '.join(sorted(allowed))})"
        )
    return {k: _decode(object_name, k, v) for k, v in body.items()}


def _json_value(value: Any) -> Any:
    # Integers and booleans stay JSON numbers and booleans; JSON columns are JSON already; the rest
    # (decimals, times) take the canonical text form the sync engine uses.
    if value is None or isinstance(value, bool | int | list | dict):
        return value
    return canon(value)


def _out(api: CrmApi, object_name: str, row: Mapping[str, Any]) -> dict[str, Any]:
    record = {k: _json_value(row[k]) for k in (*_SHOWN, *business_columns(object_name)) if k in row}
    record["version"] = api.etag(object_name, row)
    return record


def _etag_header(version: str) -> str:
    return f'"{version}"'


def _if_match(request: Request) -> str:
    raw = request.headers.get("if-match")
    if raw is None:
        raise ApiError(428, "If-Match is required: send the ETag (version) of the record you read")
    value = raw.strip()
    value = value.removeprefix("W/")
    return value.strip('"')


# -- the app --------------------------------------------------------------------------------------------------
def api_routes(engine: Engine, tenant: str) -> list[BaseRoute]:
    """The ``/api`` mount for ``tongbu serve``'s app (a small addition to its route list)."""
    api = CrmApi(engine, tenant)
    tokens = TokenStore(engine, tenant)
    schema = openapi_schema()

    def auth(request: Request, need: str) -> TokenInfo:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            err = ApiError(401, "authentication required: Authorization: Bearer <token>")
            err.headers["WWW-Authenticate"] = 'Bearer realm="tongbu"'
            raise err
        who = tokens.verify(token.strip())
        if who is None:
            err = ApiError(401, "invalid or revoked token")
            err.headers["WWW-Authenticate"] = 'Bearer realm="tongbu", error="invalid_token"'
            raise err
        if not who.may(need):
            raise ApiError(403, f"token {who.name!r} may only read (scope {who.scope}); this needs write")
        return who

    async def body_of(request: Request) -> Any:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, "send the body as application/json")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
            raise ApiError(413, f"body over {MAX_BODY} bytes")
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY:
                    raise ApiError(413, f"body over {MAX_BODY} bytes")
                chunks.append(chunk)
        except ClientDisconnect:
            raise ApiError(400, "the client hung up mid-body") from None
        try:
            return json.loads(b"".join(chunks).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise ApiError(400, "the body is not valid UTF-8 JSON") from None

    def endpoint(
        need: str, work: Callable[[Request, TokenInfo, Any], Response], *, with_body: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                object_name = request.path_params.get("object")
                if object_name is not None and object_name not in OBJECTS:
                    raise ApiError(404, f"no object {object_name!r}; objects: {', '.join(OBJECTS)}")
                # Cheap checks first: the token before the body is read, the body before any work.
                who = await run_in_threadpool(auth, request, need)
                body = await body_of(request) if with_body else None
                return await run_in_threadpool(work, request, who, body)
            except ApiError as exc:
                return _error(exc)
            except DuplicateRecordError as exc:
                return _error(ApiError(409, str(exc), existing_id=exc.existing_id))
            except StaleRecordError as exc:
                err = ApiError(412, str(exc), current_version=exc.current)
                err.headers["ETag"] = _etag_header(exc.current)
                return _error(err)
            except HubError as exc:
                return _error(ApiError(422, str(exc)))
            except Exception as exc:  # a bug or the database: one line in the log, no detail out
                log.error(
                    "API %s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc
                )
                return _error(ApiError(500, "internal error"))

        return handle

    def record_id(request: Request) -> int:
        raw = request.path_params["id"]
        if not raw.isdigit() or len(raw) > 18:
            raise ApiError(404, f"no record {raw!r}")
        return int(raw)

    def found(object_name: str, hub_id: int) -> dict[str, Any]:
        row = api.get(object_name, hub_id)
        if row is None:
            raise ApiError(404, f"no {object_name} record {hub_id}")
        return row

    def list_records(request: Request, who: TokenInfo, body: Any) -> Response:
        object_name = request.path_params["object"]
        q = request.query_params
        unknown = sorted(set(q) - {"limit", "after", "updated_since", "include_deleted"})
        if unknown:
            raise ApiError(
                400, f"unknown query parameter {unknown[0]!r} (limit, after, updated_since, include_deleted)"
            )
        try:
            limit = int(q.get("limit", "50"))
            after = int(q.get("after", "0"))
        except ValueError:
            raise ApiError(400, "limit and after must be integers") from None
        if not 1 <= limit <= MAX_LIMIT or not 0 <= after < 2**62:
            raise ApiError(400, f"limit must be 1..{MAX_LIMIT} and after ≥ 0")
        t = hub_table(object_name)
        stmt = select(t).where(t.c.tenant_id == api.tenant, t.c.id > after)
        if q.get("include_deleted", "false") not in ("true", "false"):
            raise ApiError(400, "include_deleted must be true or false")
        if q.get("include_deleted") != "true":
            stmt = stmt.where(t.c.deleted_at.is_(None))
        if "updated_since" in q:
            since = _decode(object_name, "updated_at", q["updated_since"]) if "updated_at" in t.c else None
            stmt = stmt.where(t.c.updated_at >= since)
        with api.engine.connect() as conn:
            rows = conn.execute(stmt.order_by(t.c.id).limit(limit)).mappings().all()
        items = [_out(api, object_name, r) for r in rows]
        return JSONResponse({"items": items, "next_after": items[-1]["id"] if len(items) == limit else None})

    def get_record(request: Request, who: TokenInfo, body: Any) -> Response:
        object_name = request.path_params["object"]
        record = _out(api, object_name, found(object_name, record_id(request)))
        return JSONResponse(record, headers={"ETag": _etag_header(record["version"])})

    def create_record(request: Request, who: TokenInfo, body: Any) -> Response:
        object_name = request.path_params["object"]
        fields = _fields(object_name, body)
        hub_id = api.create(object_name, fields, author=who.author, origin=CRM_ORIGIN)
        record = _out(api, object_name, found(object_name, hub_id))
        return JSONResponse(
            record,
            status_code=201,
            headers={"ETag": _etag_header(record["version"]), "Location": f"/api/{object_name}/{hub_id}"},
        )

    def patch_record(request: Request, who: TokenInfo, body: Any) -> Response:
        object_name = request.path_params["object"]
        hub_id = record_id(request)
        expected = _if_match(request)
        fields = _fields(object_name, body)
        row = found(object_name, hub_id)
        if row.get("deleted_at") is not None:
            raise ApiError(410, f"{object_name} record {hub_id} was deleted")
        api.update(object_name, hub_id, fields, author=who.author, origin=CRM_ORIGIN, if_match=expected)
        record = _out(api, object_name, found(object_name, hub_id))
        return JSONResponse(record, headers={"ETag": _etag_header(record["version"])})

    def delete_record(request: Request, who: TokenInfo, body: Any) -> Response:
        object_name = request.path_params["object"]
        hub_id = record_id(request)
        expected = _if_match(request)
        with api.engine.begin() as conn:
            row = api.get(object_name, hub_id, conn=conn, lock=True)
            if row is None:
                raise ApiError(404, f"no {object_name} record {hub_id}")
            if row.get("deleted_at") is not None:
                raise ApiError(410, f"{object_name} record {hub_id} was deleted")
            if api.etag(object_name, row) != expected:
                raise StaleRecordError(object_name, hub_id, api.etag(object_name, row))
            api.delete(object_name, hub_id, author=who.author, origin=CRM_ORIGIN, conn=conn)
        return Response(status_code=204)

    async def openapi(request: Request) -> Response:
        return JSONResponse(schema)

    routes: list[BaseRoute] = [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/{object}", endpoint("read", list_records), methods=["GET"]),
        Route("/{object}", endpoint("write", create_record, with_body=True), methods=["POST"]),
        Route("/{object}/{id}", endpoint("read", get_record), methods=["GET"]),
        Route("/{object}/{id}", endpoint("write", patch_record, with_body=True), methods=["PATCH"]),
        Route("/{object}/{id}", endpoint("write", delete_record), methods=["DELETE"]),
    ]
    return [Mount("/api", routes=routes)]


def _error(exc: ApiError) -> Response:
    return JSONResponse({"error": exc.message, **exc.extra}, status_code=exc.status, headers=exc.headers)


# -- OpenAPI -------------------------------------------------------------------------------------------------
def _column_schema(object_name: str, name: str) -> dict[str, Any]:
    kind = hub_table(object_name).c[name].type
    if isinstance(kind, Boolean):
        s: dict[str, Any] = {"type": "boolean"}
    elif isinstance(kind, Integer):
        s = {"type": "integer"}
    elif isinstance(kind, Numeric):
        digits, scale = (kind.precision or 18) - (kind.scale or 0), kind.scale or 0
        s = {
            "type": "string",
            "pattern": rf"^-?[0-9]{{1,{digits}}}(\.[0-9]{{1,{scale}}})?$"
            if scale
            else rf"^-?[0-9]{{1,{digits}}}$",
            "description": "decimal text",
        }
    elif isinstance(kind, DateTime):
        s = {"type": "string", "format": "date-time"}
    elif isinstance(kind, Date):
        s = {"type": "string", "format": "date"}
    elif isinstance(kind, JSON):
        s = {}
    elif isinstance(kind, String):
        s = {"type": "string", **({"maxLength": kind.length} if kind.length else {})}
    else:
        s = {"type": "string"}
    return {**s, "nullable": True} if s else s


def openapi_schema() -> dict[str, Any]:
    """The OpenAPI 3.0 description of ``/api`` (served at ``/api/openapi.json``)."""
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string"},
                "existing_id": {"type": "integer"},
                "current_version": {"type": "string"},
                "field": {"type": "string"},
            },
        }
    }
    paths: dict[str, Any] = {}
    errors = {
        code: {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for code, text in (
            ("400", "bad request"),
            ("401", "no valid token"),
            ("403", "the token may not write"),
            ("404", "no such record"),
            ("409", "a duplicate (same credit code or number)"),
            ("410", "the record was deleted"),
            ("412", "the record changed since it was read"),
            ("413", "body too large"),
            ("415", "not JSON"),
            ("422", "invalid fields"),
            ("428", "If-Match missing"),
        )
    }

    def pick(*codes: str) -> dict[str, Any]:
        return {c: errors[c] for c in codes}

    for obj in OBJECTS:
        cols = business_columns(obj)
        title = "".join(p.capitalize() for p in obj.split("_"))
        writable = {c: _column_schema(obj, c) for c in cols}
        shown = {
            "id": {"type": "integer"},
            "source_system": {"type": "string"},
            "source_id": {"type": "string"},
            "created_at": {"type": "string", "nullable": True},
            "updated_at": {"type": "string", "nullable": True},
            "deleted_at": {"type": "string", "nullable": True},
            "version": {"type": "string"},
        }
        read_props = {
            **shown,
            **{
                c: {k: v for k, v in s.items() if k not in ("pattern", "format")} for c, s in writable.items()
            },
        }
        schemas[title] = {"type": "object", "required": ["id", "version"], "properties": read_props}
        schemas[f"{title}Write"] = {"type": "object", "additionalProperties": False, "properties": writable}
        schemas[f"{title}Page"] = {
            "type": "object",
            "required": ["items", "next_after"],
            "properties": {
                "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{title}"}},
                "next_after": {"type": "integer", "nullable": True},
            },
        }
        one = {"application/json": {"schema": {"$ref": f"#/components/schemas/{title}"}}}
        body = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{title}Write"}}},
        }
        id_param = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
        if_match = {"name": "If-Match", "in": "header", "required": True, "schema": {"type": "string"}}
        paths[f"/api/{obj}"] = {
            "get": {
                "operationId": f"list_{obj}",
                "summary": f"List {obj} (by id, in pages)",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                    },
                    {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {
                        "name": "updated_since",
                        "in": "query",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    {
                        "name": "include_deleted",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["true", "false"]},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "a page",
                        "content": {
                            "application/json": {"schema": {"$ref": f"#/components/schemas/{title}Page"}}
                        },
                    },
                    **pick("400", "401", "404", "422"),
                },
            },
            "post": {
                "operationId": f"create_{obj}",
                "summary": f"Create a record in {obj} (duplicate check; author = the token's name)",
                "requestBody": body,
                "responses": {
                    "201": {"description": "created", "content": one},
                    **pick("400", "401", "403", "404", "409", "413", "415", "422"),
                },
            },
        }
        paths[f"/api/{obj}/{{id}}"] = {
            "get": {
                "operationId": f"get_{obj}",
                "parameters": [id_param],
                "responses": {
                    "200": {"description": "the record; ETag is its version", "content": one},
                    **pick("401", "404"),
                },
            },
            "patch": {
                "operationId": f"update_{obj}",
                "summary": "Change some fields, against the version read (If-Match)",
                "parameters": [id_param, if_match],
                "requestBody": body,
                "responses": {
                    "200": {"description": "the record after the change", "content": one},
                    **pick("400", "401", "403", "404", "409", "410", "412", "413", "415", "422", "428"),
                },
            },
            "delete": {
                "operationId": f"delete_{obj}",
                "summary": "Delete (soft), against the version read (If-Match)",
                "parameters": [id_param, if_match],
                "responses": {
                    "204": {"description": "deleted"},
                    **pick("401", "403", "404", "410", "412", "428"),
                },
            },
        }
    return {
        "openapi": "3.0.3",
        "info": {"title": "tongbu CRM API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
