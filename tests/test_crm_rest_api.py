"""The CRM's REST API on ``tongbu serve`` over real HTTP: auth, author and origin, duplicates,
optimistic concurrency against a racing two-way sync, bounded JSON bodies, and a schemathesis
contract test of every operation against the served OpenAPI schema."""

from __future__ import annotations

import json

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import text

from connectors.kit.server import BackgroundServer
from tongbu.api.app import openapi_schema
from tongbu.api.tokens import TokenStore
from tongbu.db import get_engine
from tongbu.hub.api import CrmApi
from tongbu.serve.app import build_app
from tongbu.serve.config import ServeConfig

USCC = "91350100M000100Y0J"  # any 18 characters: the API does not judge credit codes


@pytest.fixture
def server(hub_engine):
    app = build_app(ServeConfig(sources=[], database_url=str(hub_engine.url)), engine=hub_engine)
    with BackgroundServer(app) as srv:
        store = TokenStore(hub_engine)
        writer, reader = store.create("erp-team", "write"), store.create("viewer", "read")
        with httpx.Client(base_url=srv.url, timeout=10) as http:
            yield http, {"w": writer, "r": reader}, hub_engine, store


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_auth_401_403_and_tokens_never_stored_or_echoed(server, caplog) -> None:
    http, tok, engine, store = server
    assert http.get("/api/accounts").status_code == 401
    r = http.get("/api/accounts", headers=bearer("tbk_" + "x" * 43))
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert http.get("/api/accounts", headers=bearer(tok["r"])).status_code == 200
    r = http.post("/api/accounts", headers=bearer(tok["r"]), json={"name": "甲"})
    assert r.status_code == 403 and "may only read" in r.json()["error"]
    store.revoke("viewer")
    assert http.get("/api/accounts", headers=bearer(tok["r"])).status_code == 401
    with engine.connect() as conn:
        dump = json.dumps([list(r) for r in conn.exec_driver_sql("SELECT * FROM api_tokens")], default=str)
    assert tok["w"] not in dump and tok["r"] not in dump
    assert tok["w"] not in caplog.text and tok["r"] not in caplog.text


def test_create_get_patch_with_author_origin_and_duplicate_check(server) -> None:
    http, tok, engine, _ = server
    h = bearer(tok["w"])
    r = http.post(
        "/api/accounts", headers=h, json={"name": "甲公司", "credit_code": USCC, "credit_limit": 5000}
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert r.headers["location"] == f"/api/accounts/{created['id']}"
    assert created["credit_limit"] == "5000" and created["source_system"] == "hub"
    dup = http.post("/api/accounts", headers=h, json={"name": "甲公司二", "credit_code": USCC})
    assert dup.status_code == 409 and dup.json()["existing_id"] == created["id"]

    got = http.get(f"/api/accounts/{created['id']}", headers=h)
    etag = got.headers["etag"]
    assert etag == f'"{created["version"]}"'
    r = http.patch(f"/api/accounts/{created['id']}", headers={**h, "If-Match": etag}, json={"phone": "021-1"})
    assert r.status_code == 200 and r.json()["phone"] == "021-1" and r.headers["etag"] != etag
    (change,) = [c for c in CrmApi(engine).changes("accounts", [created["id"]]) if c.op == "update"]
    assert (change.author, change.origin, change.values) == ("api:erp-team", "hub", {"phone": "021-1"})

    page = http.get("/api/accounts", headers=h, params={"limit": 1}).json()
    assert [i["id"] for i in page["items"]] == [created["id"]] and page["next_after"] == created["id"]
    assert http.get("/api/accounts", headers=h, params={"after": created["id"]}).json()["items"] == []


def test_a_patch_racing_a_sync_is_refused_not_lost(server) -> None:
    http, tok, engine, _ = server
    h = bearer(tok["w"])
    created = http.post("/api/accounts", headers=h, json={"name": "乙公司"}).json()
    etag = f'"{created["version"]}"'
    # A sync (or a direct database edit) changes the record after the client read it.
    CrmApi(engine).update(
        "accounts", created["id"], {"name": "乙公司(ERP)"}, author="kingdee", origin="kingdee"
    )
    r = http.patch(
        f"/api/accounts/{created['id']}", headers={**h, "If-Match": etag}, json={"name": "乙公司(CRM)"}
    )
    assert r.status_code == 412, r.text
    assert r.headers["etag"] != etag and r.json()["current_version"] == r.headers["etag"].strip('"')
    assert CrmApi(engine).get("accounts", created["id"])["name"] == "乙公司(ERP)"
    with engine.begin() as conn:  # another application edits the hub directly (row_hash untouched)
        conn.execute(text("UPDATE accounts SET phone = 'direct' WHERE id = :id"), {"id": created["id"]})
    fresh = r.headers["etag"]
    r = http.patch(f"/api/accounts/{created['id']}", headers={**h, "If-Match": fresh}, json={"phone": "api"})
    assert r.status_code == 412  # the direct edit changed the version too
    r = http.patch(f"/api/accounts/{created['id']}", headers=h, json={"phone": "api"})
    assert r.status_code == 428
    r = http.delete(f"/api/accounts/{created['id']}", headers={**h, "If-Match": r.headers.get("etag", '"x"')})
    assert r.status_code == 412


def test_bad_bodies_are_one_clear_line(server) -> None:
    http, tok, _, _ = server
    h = bearer(tok["w"])
    cases = [
        (
            http.post("/api/accounts", headers={**h, "Content-Type": "text/plain"}, content=b"{}"),
            415,
            "application/json",
        ),
        (
            http.post("/api/accounts", headers={**h, "Content-Type": "application/json"}, content=b"{"),
            400,
            "not valid",
        ),
        (
            http.post(
                "/api/accounts", headers={**h, "Content-Type": "application/json"}, content=b"[" * 100_000
            ),
            413,
            "body over 65536 bytes",
        ),
        (http.post("/api/accounts", headers=h, json={"nmae": "x"}), 422, "no writable field 'nmae'"),
        (http.post("/api/accounts", headers=h, json={"row_hash": "x"}), 422, "no writable field"),
        (http.post("/api/accounts", headers=h, json={"name": 5}), 422, "name: expected text"),
        (http.post("/api/accounts", headers=h, json={"credit_limit": "lots"}), 422, "credit_limit"),
        (http.post("/api/accounts", headers=h, json={"name": "x" * 300}), 422, "at most 255"),
        (http.post("/api/widgets", headers=h, json={}), 404, "no object 'widgets'"),
        (http.get("/api/accounts/abc", headers=h), 404, "no record"),
        (http.get("/api/accounts", headers=h, params={"limit": 0}), 400, "limit"),
        (http.get("/api/accounts", headers=h, params={"sort": "x"}), 400, "unknown query parameter 'sort'"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, (response.status_code, response.text)
        assert words in response.json()["error"]


def test_the_openapi_schema_is_served_and_valid(server) -> None:
    http, _, _, _ = server
    served = http.get("/api/openapi.json").json()
    assert served == json.loads(json.dumps(openapi_schema()))
    assert {"/api/accounts", "/api/contacts/{id}", "/api/sales_orders", "/api/opportunities/{id}"} <= set(
        served["paths"]
    )


SCHEMA = schemathesis.openapi.from_dict(openapi_schema())


@pytest.fixture
def live(tongbu_home):
    engine = get_engine()
    app = build_app(ServeConfig(sources=[]), engine=engine)
    with BackgroundServer(app) as srv:
        yield srv.url, TokenStore(engine).create("contract", "write")


@SCHEMA.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_contract(case, request) -> None:
    # One server per operation (the fixture is function-scoped; hypothesis calls within it).
    url, token = request.getfixturevalue("live")
    case.call_and_validate(
        base_url=url,
        headers=bearer(token),
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
