"""The Fxiaoke simulator speaks the OpenAPI: checked with a third-party client used unchanged
(``fxiaoke-python`` from PyPI), and with raw HTTP shaped exactly as the public docs' examples."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid

import httpx
import pytest

from connectors.fxiaoke.simulator import (
    MAX_OFFSET,
    THROTTLED,
    TOKEN_CONCURRENT,
    TOKEN_EXPIRED,
    TOKEN_FREQ,
    FxiaokeSimulator,
)
from connectors.kit import uscc

#: The third-party client runs in its own interpreter: its top-level package is named ``fxiaoke``,
#: which this test folder (tests/fxiaoke, on sys.path under pytest) would shadow.
THIRD_PARTY = r"""
import json, sys
from requests.adapters import HTTPAdapter
from fxiaoke.api import FxiaokeApi
from fxiaoke.baseObj import baseObj

base, app_id, secret, code, user = sys.argv[1:6]

class ToSimulator(HTTPAdapter):
    # The library's URLs are hard-coded to https://open.fxiaoke.com; its requests.Session is public,
    # so routing it is configuration, not a change to the library.
    def send(self, request, **kwargs):
        request.url = request.url.replace("https://open.fxiaoke.com", base)
        return super().send(request, **kwargs)

api = FxiaokeApi.init(app_id=app_id, app_secret=secret, permanent_code=code, open_user_id=user)
api._session.requests.mount("https://open.fxiaoke.com", ToSimulator())
accounts = baseObj(api, dataObjectApiName="AccountObj")
rows = list(accounts.query(limit=100, orders=[{"fieldName": "_id", "isAsc": True}]))
fields = accounts.describe()["describe"]["fields"]
created = accounts.create(object_data={"name": "第三方客户端有限公司", "tel": "021-12345678"})
got = accounts.get(created["dataId"])
print(json.dumps({"ids": [r["_id"] for r in rows], "fields": fields, "got": got}, ensure_ascii=False))
"""


@pytest.fixture
def sim():
    with FxiaokeSimulator(records=230, seed=5, token_latency=0.05) as s:
        yield s


def token_v2(http: httpx.Client, sim: FxiaokeSimulator) -> dict:
    c = sim.credentials()
    body = {"appId": c["app_id"], "appSecret": c["app_secret"], "permanentCode": c["permanent_code"]}
    return http.post("/cgi/corpAccessToken/get/V2", json=body).json()


def test_the_third_party_client_unchanged_queries_describes_creates_and_gets(sim, tmp_path) -> None:
    c = sim.credentials()
    truth = [r["_id"] for r in sim.truth("AccountObj")]
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            THIRD_PARTY,
            sim.base_url,
            c["app_id"],
            c["app_secret"],
            c["permanent_code"],
            c["open_user_id"],
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # nothing of this repository on its path
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    # Its cursor pages by offset with the total the API returns (230 records in pages of 100) and
    # hands each page out from the end: every record exactly once, in its own order.
    assert sorted(answer["ids"]) == sorted(truth) and len(answer["ids"]) == 230
    assert answer["fields"]["account_level"]["type"] == "select_one" and "credit_limit__c" in answer["fields"]
    got = answer["got"]
    assert (got["name"], got["tel"], got["owner"]) == ("第三方客户端有限公司", "021-12345678", ["FSUID_1000"])
    assert sim.stats()["tokens_issued"] == 1  # the library cached its corpAccessToken


def test_raw_http_as_the_docs_show_v2_and_oauth_tokens(sim) -> None:
    with httpx.Client(base_url=sim.base_url) as http:
        tok = token_v2(http, sim)
        assert tok["errorCode"] == 0 and tok["expiresIn"] == 7200 and tok["corpId"].startswith("FSCID_")
        again = token_v2(http, sim)
        assert again["corpAccessToken"] == tok["corpAccessToken"]  # the same token within 6,600 s
        body = {
            "corpAccessToken": tok["corpAccessToken"],
            "corpId": tok["corpId"],
            "currentOpenUserId": "FSUID_1000",
            "data": {
                "dataObjectApiName": "AccountObj",
                "search_query_info": {
                    "limit": 10,
                    "offset": 0,
                    "filters": [{"field_name": "account_level", "operator": "EQ", "field_values": ["1"]}],
                    "orders": [{"fieldName": "last_modified_time", "isAsc": False}],
                },
            },
        }
        page = http.post("/cgi/crm/v2/data/query", json=body).json()
        assert page["errorCode"] == 0 and page["traceId"]
        assert all(r["account_level"] == "1" for r in page["data"]["dataList"])
        assert isinstance(page["data"]["dataList"][0]["last_modified_time"], int)  # ms epoch
        assert isinstance(page["data"]["dataList"][0]["credit_limit__c"], str)  # numbers are strings
        assert isinstance(page["data"]["dataList"][0]["owner"], list)  # employee fields are lists
        c = sim.credentials()
        o = http.post(
            "/oauth2.0/token",
            json={
                "grantType": "app_secret",
                "appId": c["app_id"],
                "appSecret": c["app_secret"],
                "permanentCode": c["permanent_code"],
            },
        ).json()
        assert o["errorCode"] == 0 and o["ea"]
        headers = {
            "authorization": f"Bearer {o['accessToken']}",
            "x-fs-ea": o["ea"],
            "x-fs-userid": "FSUID_1000",
        }
        q = {"data": {"dataObjectApiName": "ContactObj", "search_query_info": {"limit": 5, "offset": 0}}}
        ok = http.post(f"/cgi/crm/v2/data/query?thirdTraceId={uuid.uuid4()}", json=q, headers=headers).json()
        assert ok["errorCode"] == 0 and len(ok["data"]["dataList"]) == 5
        no_trace = http.post("/cgi/crm/v2/data/query", json=q, headers=headers).json()
        assert no_trace["errorCode"] != 0 and "thirdTraceId" in no_trace["errorMessage"]


def test_query_limits_limit_offset_multiple_offset_cap_and_the_id_cursor(sim) -> None:
    with httpx.Client(base_url=sim.base_url) as http:
        tok = token_v2(http, sim)
        auth = {
            "corpAccessToken": tok["corpAccessToken"],
            "corpId": tok["corpId"],
            "currentOpenUserId": "FSUID_1000",
        }

        def query(info: dict) -> dict:
            return http.post(
                "/cgi/crm/v2/data/query",
                json={**auth, "data": {"dataObjectApiName": "AccountObj", "search_query_info": info}},
            ).json()

        assert "limit" in query({"limit": 101, "offset": 0})["errorMessage"]
        assert "整数倍" in query({"limit": 30, "offset": 45})["errorMessage"]
        assert str(MAX_OFFSET) in query({"limit": 100, "offset": MAX_OFFSET + 100})["errorMessage"]
        assert query({"limit": 100, "offset": MAX_OFFSET})["errorCode"] == 0
        flt = [{"field_name": "name", "operator": "EQ", "field_values": "not a list"}]
        assert "列表" in query({"limit": 10, "offset": 0, "filters": flt})["errorMessage"]
        ids, last = [], None
        while True:
            filters = [{"field_name": "_id", "operator": "GT", "field_values": [last]}] if last else []
            page = query(
                {
                    "limit": 100,
                    "offset": 0,
                    "filters": filters,
                    "orders": [{"fieldName": "_id", "isAsc": True}],
                }
            )
            rows = page["data"]["dataList"]
            ids += [r["_id"] for r in rows]
            if len(rows) < 100:
                break
            last = rows[-1]["_id"]
        assert ids == [r["_id"] for r in sim.truth("AccountObj")]


def test_writes_value_formats_owner_invalid_delete_and_approval(sim) -> None:
    from tests.fxiaoke.conftest import client_for

    c = client_for(sim)
    try:
        with pytest.raises(Exception, match="选项值"):
            c.create("AccountObj", {"name": "格式测试", "account_level": "A类(重要客户)"})  # label, not value
        with pytest.raises(Exception, match="数字格式"):
            c.create("AccountObj", {"name": "格式测试", "credit_limit__c": "五十万"})
        with pytest.raises(Exception, match="列表"):
            c.call(
                "/cgi/crm/v2/data/create",
                {
                    "data": {
                        "object_data": {"dataObjectApiName": "AccountObj", "name": "x", "owner": "FSUID_1"}
                    }
                },
                write=True,
            )
        code = "91330100MA2B0000" + "2" + uscc.check_char("91330100MA2B00002")
        rid = c.create(
            "AccountObj",
            {"name": "格式测试", "uniform_social_credit_code": code, "credit_limit__c": "500000.50"},
        )
        with pytest.raises(Exception, match="changeOwner"):
            c.call(
                "/cgi/crm/v2/data/update",
                {
                    "data": {
                        "object_data": {
                            "dataObjectApiName": "AccountObj",
                            "_id": rid,
                            "owner": ["FSUID_1002"],
                        }
                    }
                },
                write=True,
            )
        c.change_owner("AccountObj", rid, ["FSUID_1002"])
        with pytest.raises(Exception, match="作废"):
            c.delete("AccountObj", [rid])  # delete is two steps
        c.invalid("AccountObj", rid)
        c.delete("AccountObj", [rid])
        assert rid not in {r["_id"] for r in sim.truth("AccountObj")}
        # A sales order with lines: amounts are derived; an approval flow locks it until approved.
        account = sim.truth("AccountObj")[0]["_id"]
        lines = [
            {"product_code__c": "1.01.002", "quantity": "2", "sales_price": "3000"},
            {"product_code__c": "1.07.001", "quantity": "3", "sales_price": "200.5"},
        ]
        oid = c.create(
            "SalesOrderObj",
            {"account_id": account, "order_time": 1_767_225_600_000},
            details={"SalesOrderProductObj": lines},
        )
        order = next(o for o in sim.truth("SalesOrderObj") if o["_id"] == oid)
        assert (
            order["order_amount"] == "6601.5"
            and order["life_status"] == "under_review"
            and len(order["lines"]) == 2
        )
        with pytest.raises(Exception, match="锁定"):
            c.update("SalesOrderObj", oid, {"remark": "改"})
        sim.approve("SalesOrderObj", oid)
        c.update("SalesOrderObj", oid, {"remark": "改"}, trigger_approval=False)
        # A stage sets the win rate (derived, not writable)
        opp = sim.truth("NewOpportunityObj")[0]["_id"]
        c.update("NewOpportunityObj", opp, {"sales_stage": "4"})
        assert next(o for o in sim.truth("NewOpportunityObj") if o["_id"] == opp)["probability"] == "80"
    finally:
        c.close()


def test_token_endpoint_refuses_concurrent_calls_and_more_than_ten_a_minute(sim) -> None:
    c = sim.credentials()
    body = {"appId": c["app_id"], "appSecret": c["app_secret"], "permanentCode": c["permanent_code"]}
    codes: list[int] = []
    barrier = threading.Barrier(4)

    def ask() -> None:
        with httpx.Client(base_url=sim.base_url) as http:
            barrier.wait()
            codes.append(http.post("/cgi/corpAccessToken/get/V2", json=body).json()["errorCode"])

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert TOKEN_CONCURRENT in codes and 0 in codes
    with httpx.Client(base_url=sim.base_url) as http:
        answers = [http.post("/cgi/corpAccessToken/get/V2", json=body).json()["errorCode"] for _ in range(10)]
    assert answers[-1] == TOKEN_FREQ  # 4 + 10 calls in one minute: the 11th on is refused


def test_a_token_expires_after_7200_seconds_with_20016(sim) -> None:
    with httpx.Client(base_url=sim.base_url) as http:
        tok = token_v2(http, sim)
        auth = {
            "corpAccessToken": tok["corpAccessToken"],
            "corpId": tok["corpId"],
            "currentOpenUserId": "FSUID_1000",
        }
        q = {
            **auth,
            "data": {"dataObjectApiName": "AccountObj", "search_query_info": {"limit": 1, "offset": 0}},
        }
        assert http.post("/cgi/crm/v2/data/query", json=q).json()["errorCode"] == 0
        sim.advance(6_700)
        assert token_v2(http, sim)["corpAccessToken"] != tok["corpAccessToken"]  # past 6,600 s: a new one
        sim.advance(600)
        assert http.post("/cgi/crm/v2/data/query", json=q).json()["errorCode"] == TOKEN_EXPIRED


def test_per_endpoint_rate_limit_answers_the_throttle_code() -> None:
    with (
        FxiaokeSimulator(records=5, seed=1, rate_limit=5, rate_window=30) as sim,
        httpx.Client(base_url=sim.base_url) as http,
    ):
        tok = token_v2(http, sim)
        auth = {
            "corpAccessToken": tok["corpAccessToken"],
            "corpId": tok["corpId"],
            "currentOpenUserId": "FSUID_1000",
        }
        q = {
            **auth,
            "data": {"dataObjectApiName": "AccountObj", "search_query_info": {"limit": 1, "offset": 0}},
        }
        codes = [http.post("/cgi/crm/v2/data/query", json=q).json()["errorCode"] for _ in range(7)]
        assert codes == [0] * 5 + [THROTTLED] * 2
        # another endpoint has its own budget
        g = {
            **auth,
            "data": {"dataObjectApiName": "AccountObj", "objectDataId": sim.truth("AccountObj")[0]["_id"]},
        }
        assert http.post("/cgi/crm/v2/data/get", json=g).json()["errorCode"] == 0
