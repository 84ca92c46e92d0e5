"""The Kingdee K/3 Cloud simulator speaks the documented WebAPI and injects the documented faults."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from connectors.kingdee.simulator import (
    FORMS,
    MAX_DEPTH,
    MAX_FILTER_CHARS,
    MAX_PARAMS,
    SESSION_LOST_MESSAGE,
    FilterTranslator,
    KingdeeSimulator,
    QueryError,
    filter_array_to_string,
    kd_format,
    parse_literal_ms,
)
from connectors.kit import uscc
from connectors.kit.simulator import FaultError, load_simulator, simulator_names

SVC = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub."
LOGIN = SVC + "AuthService.ValidateUser.common.kdsvc"
LOGIN_APP = SVC + "AuthService.LoginByAppSecret.common.kdsvc"
QUERY = SVC + "DynamicFormService.ExecuteBillQuery.common.kdsvc"
BILL_QUERY = SVC + "DynamicFormService.BillQuery.common.kdsvc"
VIEW = SVC + "DynamicFormService.View.common.kdsvc"


@pytest.fixture(scope="module")
def sim() -> Iterator[KingdeeSimulator]:
    with KingdeeSimulator(records=60, seed=11) as s:
        yield s


def http(sim: KingdeeSimulator, *, login: bool = True) -> httpx.Client:
    client = httpx.Client(base_url=sim.base_url, timeout=10)
    if login:
        body = {
            "format": 1,
            "useragent": "ApiClient",
            "rid": {},
            "v": "1.0",
            "parameters": [sim.ACCT_ID, sim.USERNAME, sim.PASSWORD, 2052],
        }
        assert client.post(LOGIN, json=body).json()["LoginResultType"] == 1
    return client


def query(client: httpx.Client, **data: Any) -> Any:
    return client.post(QUERY, json={"data": data}).json()


def nested_error(body: Any) -> dict[str, Any]:
    assert isinstance(body, list) and len(body) == 1 and len(body[0]) == 1, body
    status = body[0][0]["Result"]["ResponseStatus"]
    assert status["IsSuccess"] is False
    return status


# -- login and session ----------------------------------------------------------------------------------
def test_registry_and_constructor_match_the_cli() -> None:
    cls = load_simulator("kingdee")
    assert cls is KingdeeSimulator
    s = cls(records=3, faults=None, seed=1)
    assert set(s.credentials()) >= {"acct_id", "username", "password", "app_id", "app_secret", "lcid"}


def test_validate_user_sets_both_session_cookies(sim: KingdeeSimulator) -> None:
    client = http(sim, login=False)
    r = client.post(LOGIN, json={"parameters": [sim.ACCT_ID, sim.USERNAME, sim.PASSWORD, 2052]})
    body = r.json()
    assert r.status_code == 200 and body["LoginResultType"] == 1 and body["IsSuccessByAPI"] is True
    assert r.cookies["kdservice-sessionid"] == body["KDSVCSessionId"]
    assert r.cookies["ASP.NET_SessionId"]


def test_login_by_app_secret_and_refusals(sim: KingdeeSimulator) -> None:
    client = http(sim, login=False)
    ok = client.post(
        LOGIN_APP, json={"parameters": [sim.ACCT_ID, sim.USERNAME, sim.APP_ID, sim.APP_SECRET, 2052]}
    )
    assert ok.json()["LoginResultType"] == 1
    bad = client.post(LOGIN, json={"parameters": [sim.ACCT_ID, sim.USERNAME, "wrong", 2052]}).json()
    assert bad["LoginResultType"] == 0 and "密码" in bad["Message"] and bad["KDSVCSessionId"] is None
    no_acct = client.post(LOGIN, json={"parameters": ["nope", sim.USERNAME, sim.PASSWORD, 2052]}).json()
    assert no_acct["LoginResultType"] == 0 and "数据中心" in no_acct["Message"]


def test_query_without_a_session_is_the_nested_session_lost_error(sim: KingdeeSimulator) -> None:
    r = http(sim, login=False).post(QUERY, json={"data": {"FormId": "BD_Customer", "FieldKeys": "FNumber"}})
    assert r.status_code == 200
    status = nested_error(r.json())
    assert status["Errors"][0]["Message"] == SESSION_LOST_MESSAGE and status["MsgCode"] == 1
    assert status["ErrorCode"] == 500


# -- ExecuteBillQuery ---------------------------------------------------------------------------------
def test_rows_are_arrays_in_fieldkeys_order(sim: KingdeeSimulator) -> None:
    rows = query(
        http(sim),
        FormId="BD_Customer",
        FieldKeys="FNumber,FCUSTID,FSELLER.FName,FModifyDate",
        OrderString="FCUSTID ASC",
        Limit=5,
    )
    truth = sim.truth("BD_Customer", limit=5)
    assert rows == [[t["FNumber"], t["FCUSTID"], t["FSELLER.FName"], t["FModifyDate"]] for t in truth]
    assert "T" in rows[0][3] and "+" not in rows[0][3]  # naive local time, as Kingdee sends it


@pytest.mark.parametrize("style", ["sdk", "string", "classic"])
def test_request_styles_are_all_accepted(sim: KingdeeSimulator, style: str) -> None:
    data = {"FormId": "BD_Customer", "FieldKeys": "FCUSTID", "Limit": 3, "OrderString": "FCUSTID"}
    body = {
        "sdk": {"data": data},
        "string": {"FormId": "BD_Customer", "data": json.dumps(data)},
        "classic": {"format": 1, "parameters": [json.dumps(data)]},
    }[style]
    assert http(sim).post(QUERY, json=body).json() == [[100000], [100001], [100002]]


def test_unknown_field_key_is_a_nested_error(sim: KingdeeSimulator) -> None:
    status = nested_error(query(http(sim), FormId="BD_Customer", FieldKeys="FNumber,FNoSuchField"))
    assert "字段不存在" in status["Errors"][0]["Message"] and status["MsgCode"] == 9


def test_malformed_json_gets_the_response_error_prefix(sim: KingdeeSimulator) -> None:
    r = http(sim).post(QUERY, content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.text.startswith("response_error:")


def _where(sim: KingdeeSimulator, filter_string: str) -> list[int]:
    rows = query(
        http(sim),
        FormId="BD_Customer",
        FieldKeys="FCUSTID",
        FilterString=filter_string,
        OrderString="FCUSTID",
        Limit=10000,
    )
    return [r[0] for r in rows]


@pytest.mark.parametrize(
    ("filter_string", "predicate"),
    [
        ("FDocumentStatus = 'C'", lambda t: t["FDocumentStatus"] == "C"),
        ("FDocumentStatus <> 'C'", lambda t: t["FDocumentStatus"] != "C"),
        (
            "fdocumentstatus != 'C' and FForbidStatus = 'A'",
            lambda t: t["FDocumentStatus"] != "C" and t["FForbidStatus"] == "A",
        ),
        ("FNumber like 'CUST000001%'", lambda t: t["FNumber"].startswith("CUST000001")),
        ("FNumber NOT LIKE 'CUST000001%'", lambda t: not t["FNumber"].startswith("CUST000001")),
        (
            "FNumber IN ('CUST0000001', 'CUST0000005','CUST0000059')",
            lambda t: t["FNumber"] in {"CUST0000001", "CUST0000005", "CUST0000059"},
        ),
        ("FCUSTID >= 100010 AND FCUSTID < 100020", lambda t: 100010 <= t["FCUSTID"] < 100020),
        ("FCUSTID BETWEEN 100010 AND 100012", lambda t: 100010 <= t["FCUSTID"] <= 100012),
        (
            "(FGroup.FNumber = 'A' OR FGroup.FNumber = 'B') AND NOT FForbidStatus = 'B'",
            lambda t: t["FGroup.FNumber"] in ("A", "B") and t["FForbidStatus"] != "B",
        ),
        ("FModifyDate >= '2024-01-01 00:00:00'", lambda t: t["FModifyDate"] >= "2024-01-01"),
        ("FModifyDate < '2024-01-01'", lambda t: t["FModifyDate"] < "2024-01-01"),
        ("FApproveDate IS NULL", lambda t: t["FApproveDate"] is None),
        ("FApproveDate IS NOT NULL", lambda t: t["FApproveDate"] is not None),
        ("FName LIKE N'%有限%'", lambda t: "有限" in (t["FName"] or "")),
        (
            "FPROVINCIAL.FName = '广东省' OR FPROVINCIAL.FName = '上海市'",
            lambda t: t["FPROVINCIAL.FName"] in ("广东省", "上海市"),
        ),
        ("", lambda t: True),
    ],
)
def test_filter_string_subset_matches_the_ground_truth(
    sim: KingdeeSimulator, filter_string: str, predicate: Any
) -> None:
    expected = [t["FCUSTID"] for t in sim.truth("BD_Customer") if predicate(t)]
    assert _where(sim, filter_string) == expected


def test_keyset_filter_on_millisecond_timestamps(sim: KingdeeSimulator) -> None:
    truth = sorted(sim.truth("BD_Customer"), key=lambda t: (t["FModifyDate"], t["FCUSTID"]))
    pivot = truth[20]
    ts = pivot["FModifyDate"].replace("T", " ")
    fs = f"FModifyDate >= '{ts}' AND (FModifyDate > '{ts}' OR (FModifyDate = '{ts}' AND FCUSTID > {pivot['FCUSTID']}))"
    rows = query(
        http(sim),
        FormId="BD_Customer",
        FieldKeys="FCUSTID",
        FilterString=fs,
        OrderString="FModifyDate ASC, FCUSTID ASC",
        Limit=10000,
    )
    assert [r[0] for r in rows] == [t["FCUSTID"] for t in truth[21:]]


def test_translator_produces_parameterised_sql() -> None:
    tr = FilterTranslator(FORMS["bd_customer"])
    sql = tr.translate("FName = 'O''Brien' AND (FModifyDate > '2024-05-01 10:20:30.5' OR FCUSTID IN (1, 2))")
    assert "'" not in sql and sql.count("?") == 4
    assert tr.params == ["O'Brien", parse_literal_ms("2024-05-01 10:20:30.500"), 1, 2]
    assert kd_format(tr.params[1]) == "2024-05-01T10:20:30.5"


@pytest.mark.parametrize(
    "bad",
    [
        "FName = ",
        "FName = 'x' AND",
        "(FName = 'x'",
        "FName ~ 'x'",
        "FModifyDate > 'yesterday'",
        "FCUSTID = 'abc'",
        "FNope = 1",
        "FName = 'x')",
        "FName LIKE 5",
    ],
)
def test_translator_rejects_bad_filters_with_a_query_error(bad: str) -> None:
    with pytest.raises(QueryError):
        FilterTranslator(FORMS["bd_customer"]).translate(bad)


def test_array_filter_form_is_accepted(sim: KingdeeSimulator) -> None:
    items = [
        {
            "Left": "(",
            "FieldName": "FDocumentStatus",
            "Compare": "=",
            "Value": "C",
            "Right": "",
            "Logic": "0",
        },
        {"Left": "", "FieldName": "FForbidStatus", "Compare": "=", "Value": "A", "Right": ")", "Logic": "0"},
    ]
    assert filter_array_to_string(items) == "(FDocumentStatus = 'C' AND FForbidStatus = 'A')"
    rows = query(
        http(sim), FormId="BD_Customer", FieldKeys="FCUSTID", FilterString=items, OrderString="FCUSTID"
    )
    expected = [
        t["FCUSTID"]
        for t in sim.truth("BD_Customer")
        if t["FDocumentStatus"] == "C" and t["FForbidStatus"] == "A"
    ]
    assert [r[0] for r in rows] == expected
    with pytest.raises(QueryError):
        filter_array_to_string([{"FieldName": "FNumber", "Compare": "67", "Value": "x"}])


def test_order_string_start_row_limit_and_top_row_count(sim: KingdeeSimulator) -> None:
    client = http(sim)
    all_desc = [
        r[0]
        for r in query(
            client, FormId="BD_Customer", FieldKeys="FCUSTID", OrderString="FNumber DESC", Limit=100
        )
    ]
    assert all_desc == sorted(all_desc, reverse=True) and len(all_desc) == 60
    pages = [
        query(
            client, FormId="BD_Customer", FieldKeys="FCUSTID", OrderString="FNumber DESC", StartRow=s, Limit=7
        )
        for s in range(0, 70, 7)
    ]
    assert [r[0] for page in pages for r in page] == all_desc
    top = query(
        client,
        FormId="BD_Customer",
        FieldKeys="FCUSTID",
        OrderString="FCUSTID",
        StartRow=10,
        Limit=50,
        TopRowCount=15,
    )
    assert [r[0] for r in top] == list(range(100010, 100015))  # TopRowCount is an absolute end row
    assert (
        len(query(client, FormId="BD_Customer", FieldKeys="FCUSTID", Limit=50_000)) == 60
    )  # capped, not refused


def test_entry_fields_return_one_row_per_line(sim: KingdeeSimulator) -> None:
    client = http(sim)
    truth = sim.truth("SAL_SaleOrder")
    heads = query(client, FormId="SAL_SaleOrder", FieldKeys="FID,FBillNo", Limit=10000)
    assert len(heads) == len(truth) == 60
    rows = query(
        client,
        FormId="SAL_SaleOrder",
        OrderString="FID,FSaleOrderEntry_FEntryID",
        Limit=10000,
        FieldKeys="FID,FCustId.FNumber,FSaleOrderEntry_FEntryID,FEntryID,FMaterialId.FNumber,FQty,FAllAmount",
    )
    expected = [
        [
            t["FID"],
            None,
            ln["FSaleOrderEntry_FEntryID"],
            ln["FSaleOrderEntry_FEntryID"],
            ln["FSaleOrderEntry_FMaterialId.FNumber"],
            ln["FSaleOrderEntry_FQty"],
            ln["FSaleOrderEntry_FAllAmount"],
        ]
        for t in truth
        for ln in t["lines"]
    ]
    assert [r[:1] + r[2:] for r in rows] == [e[:1] + e[2:] for e in expected]
    customers = {c["FCUSTID"]: c["FNumber"] for c in sim.truth("BD_Customer")}
    by_order = {t["FID"]: customers[t["FCustId"]] for t in truth}
    assert all(r[1] == by_order[r[0]] for r in rows)  # referenced base data resolves live
    assert all(1 <= len(t["lines"]) <= 4 for t in truth)
    for t in truth:
        total = round(sum(ln["FSaleOrderEntry_FAllAmount"] for ln in t["lines"]), 2)
        assert abs(total - t["FBillAllAmount"]) < 0.011


def test_bill_query_returns_objects(sim: KingdeeSimulator) -> None:
    rows = (
        http(sim)
        .post(
            BILL_QUERY,
            json={
                "data": {
                    "FormId": "AR_receivable",
                    "FieldKeys": "FBillNo,FALLAMOUNTFOR",
                    "OrderString": "FID",
                    "Limit": 2,
                }
            },
        )
        .json()
    )
    truth = sim.truth("AR_receivable", limit=2)
    assert rows == [{"FBillNo": t["FBillNo"], "FALLAMOUNTFOR": t["FALLAMOUNTFOR"]} for t in truth]


def test_view_returns_the_orm_entity(sim: KingdeeSimulator) -> None:
    client = http(sim)
    body = client.post(
        VIEW, json={"formid": "SAL_SaleOrder", "data": {"CreateOrgId": 0, "Number": "XSDD00000001", "Id": ""}}
    ).json()
    assert body["Result"]["ResponseStatus"]["IsSuccess"] is True
    entity = body["Result"]["Result"]
    truth = sim.truth("SAL_SaleOrder", limit=1)[0]
    assert entity["Id"] == truth["FID"] and entity["BillNo"] == "XSDD00000001"
    assert entity["CustId"]["Name"][0]["Key"] == 2052
    assert [e["Seq"] for e in entity["SaleOrderEntry"]] == [
        ln["FSaleOrderEntry_FSeq"] for ln in truth["lines"]
    ]
    missing = client.post(VIEW, json={"formid": "BD_Customer", "data": {"Number": "NOPE"}}).json()
    assert (
        missing["Result"]["ResponseStatus"]["IsSuccess"] is False
        and missing["Result"]["ResponseStatus"]["MsgCode"] == 10
    )


# -- realistic, deterministic data ----------------------------------------------------------------------
def test_data_is_realistic_and_valid(sim: KingdeeSimulator) -> None:
    customers = sim.truth("BD_Customer")
    assert all(uscc.is_valid(c["FSOCIALCRECODE"]) for c in customers)
    assert len({c["FSOCIALCRECODE"] for c in customers}) == len(customers)
    assert all(c["FName"].endswith("公司") and c["FName"][:2] in c["FADDRESS"] for c in customers)
    assert all(c["FDocumentStatus"] in "ABCDZ" and c["FForbidStatus"] in "AB" for c in customers)
    orders = sim.truth("SAL_SaleOrder")
    assert all(o["FLinkPhone"].startswith("1") and len(o["FLinkPhone"]) == 11 for o in orders)
    assert all(
        r["FWRITTENOFFAMOUNTFOR"] + r["FNOTWRITTENOFFAMOUNTFOR"] == pytest.approx(r["FALLAMOUNTFOR"])
        for r in sim.truth("AR_receivable")
    )


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b, c = (KingdeeSimulator(records=15, seed=s) for s in (5, 5, 6))
    try:
        assert a.truth("SAL_SaleOrder") == b.truth("SAL_SaleOrder")
        assert a.truth("BD_Customer") != c.truth("BD_Customer")
    finally:
        for s in (a, b, c):
            s.close()


# -- control API -------------------------------------------------------------------------------------------
def test_control_api_modify_insert_counts_truth_stats() -> None:
    with KingdeeSimulator(records=20, seed=2) as s:
        api = httpx.Client(base_url=s.base_url)
        assert api.get("/_sim/counts").json()["BD_Customer"] == 20
        changed = api.post("/_sim/modify", json={"form": "customers", "count": 4}).json()
        assert len(changed["ids"]) == 4
        truth = {
            t["FCUSTID"]: t for t in api.get("/_sim/truth", params={"form": "BD_Customer"}).json()["records"]
        }
        assert {i for i, t in truth.items() if t["FModifyDate"] == changed["FModifyDate"]} == set(
            changed["ids"]
        )
        assert (
            max(t["FModifyDate"] for t in truth.values()) == changed["FModifyDate"]
        )  # one bulk stamp, newest
        inserted = api.post("/_sim/insert", json={"form": "SAL_SaleOrder", "count": 3}).json()
        assert inserted["ids"] == [100020, 100021, 100022]
        assert api.get("/_sim/counts").json()["SAL_SaleOrder"] == 23
        late = s.modify("AR_receivable", 1, modified_at="2023-05-01 08:00:00")
        assert late["FModifyDate"] == "2023-05-01T08:00:00"
        paid = s.truth("AR_receivable", offset=late["ids"][0] - 100000, limit=1)[0]
        assert paid["FWRITTENOFFSTATUS"] == "C" and paid["FNOTWRITTENOFFAMOUNTFOR"] == 0
        assert api.post("/_sim/modify", json={"form": "nope", "count": 1}).status_code == 400
        stats = api.get("/_sim/stats").json()
        assert stats["requests"] == 0 and "throttled" in stats  # control calls are not WebAPI traffic
        assert api.post("/_sim/faults", json={"faults": "throttle=0.5"}).json() == {
            "faults": {"throttle": 0.5}
        }


# -- faults -------------------------------------------------------------------------------------------------
def test_throttle_returns_msgcode_14() -> None:
    with KingdeeSimulator(records=5, faults="throttle=1") as s:
        status = nested_error(query(http(s), FormId="BD_Customer", FieldKeys="FNumber"))
        assert status["MsgCode"] == 14 and "限制" in status["Errors"][0]["Message"]
        assert s.stats()["throttled"] == 1


def test_http_5xx_fault() -> None:
    with KingdeeSimulator(records=5, faults="http_5xx=1") as s:
        r = httpx.post(s.base_url + QUERY, json={"data": {"FormId": "BD_Customer", "FieldKeys": "FNumber"}})
        assert r.status_code in (500, 502, 503) and "<html>" in r.text
        assert s.stats()["http_5xx"] == 1


def test_session_expiry_drops_the_session_after_n_queries() -> None:
    with KingdeeSimulator(records=5, faults="session_expiry=2") as s:
        client = http(s)
        for _ in range(2):
            assert isinstance(query(client, FormId="BD_Customer", FieldKeys="FNumber")[0][0], str)
        status = nested_error(query(client, FormId="BD_Customer", FieldKeys="FNumber"))
        assert status["Errors"][0]["Message"] == SESSION_LOST_MESSAGE
        nested_error(query(client, FormId="BD_Customer", FieldKeys="FNumber"))  # stays lost until a new login
        client = http(s)
        assert query(client, FormId="BD_Customer", FieldKeys="FNumber")[0]
        assert s.stats()["sessions_expired"] == 1 and s.stats()["session_lost"] == 2


def test_expire_sessions_and_idle_timeout() -> None:
    with KingdeeSimulator(records=5, faults="session_idle=0.2") as s:
        client = http(s)
        assert query(client, FormId="BD_Customer", FieldKeys="FNumber")[0]
        time.sleep(0.3)
        nested_error(query(client, FormId="BD_Customer", FieldKeys="FNumber"))
        client = http(s)
        assert s.expire_sessions() == 1
        nested_error(query(client, FormId="BD_Customer", FieldKeys="FNumber"))


def test_slow_and_timeout_faults() -> None:
    with KingdeeSimulator(records=5, faults="slow=0.2") as s:
        t0 = time.monotonic()
        http(s)
        assert time.monotonic() - t0 >= 0.2 and s.stats()["slow"] == 1
    with KingdeeSimulator(records=5, faults="timeout=1,hang=5") as s:
        t0 = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(s.base_url + LOGIN, json={"parameters": []}, timeout=0.3)
        assert s.stats()["timeouts"] == 1
    assert time.monotonic() - t0 < 3  # stop() releases the hung request instead of waiting 5 s


def test_same_second_fault_shares_one_timestamp() -> None:
    with KingdeeSimulator(records=40, faults="same_second=0.5") as s:
        for form in ("BD_Customer", "SAL_SaleOrder", "AR_receivable"):
            stamps = [t["FModifyDate"] for t in s.truth(form)]
            assert stamps.count("2024-06-28T18:00:00") == 20
    with KingdeeSimulator(records=40, faults="same_second=7") as s:
        assert [t["FModifyDate"] for t in s.truth("BD_Customer")].count("2024-06-28T18:00:00") == 7


def test_malformed_rows_carry_bad_values_and_are_named_in_the_truth() -> None:
    with KingdeeSimulator(records=120, faults="malformed=0.3", seed=4) as s:
        counts = s.counts()
        assert 0.15 * 360 < counts["malformed"] < 0.45 * 360
        for c in s.truth("BD_Customer"):
            reason = c["_malformed"]
            if reason is None:
                assert c["FName"] and uscc.is_valid(c["FSOCIALCRECODE"])
            elif reason.startswith("FName"):
                assert c["FName"] is None
            elif reason.startswith("FSOCIALCRECODE"):
                assert not uscc.is_valid(c["FSOCIALCRECODE"])
            else:
                assert c["FFoundDate"] == "2019-02-30T00:00:00"
        bad_amounts = [
            r for r in s.truth("AR_receivable") if (r["_malformed"] or "").startswith("FALLAMOUNTFOR")
        ]
        assert bad_amounts and all(isinstance(r["FALLAMOUNTFOR"], str) for r in bad_amounts)
        # Raw bad values come back through the WebAPI as they are stored.
        client = http(s)
        ids = ",".join(str(r["FID"]) for r in bad_amounts)
        rows = query(
            client, FormId="AR_receivable", FieldKeys="FID,FALLAMOUNTFOR", FilterString=f"FID IN ({ids})"
        )
        assert {r[1] for r in rows} == {"￥12,000.00"}
        # Rows without a defect are unaffected by the switch.
        clean = KingdeeSimulator(records=120, seed=4)
        try:
            good = {t["FCUSTID"]: t for t in clean.truth("BD_Customer")}
            for t in s.truth("BD_Customer"):
                if t["_malformed"] is None:
                    assert t == good[t["FCUSTID"]]
        finally:
            clean.close()


# -- NULL modification dates (issue 9, item 8) ---------------------------------------------------------------
def test_null_modify_date_fault_nulls_that_share_of_rows_deterministically() -> None:
    with (
        KingdeeSimulator(records=50, faults="null_modify_date=0.6", seed=8) as s,
        KingdeeSimulator(records=50, faults="null_modify_date=0.6", seed=8) as twin,
    ):
        for form in ("BD_Customer", "SAL_SaleOrder", "AR_receivable"):
            nulls = [t for t in s.truth(form) if t["FModifyDate"] is None]
            assert len(nulls) == 30  # RATE is a share of the rows: 0.6 of 50, exactly
            assert s.truth(form) == twin.truth(form)  # the same rows for the same seed
        rows = query(http(s), FormId="BD_Customer", FieldKeys="FCUSTID,FModifyDate", Limit=100)
        assert sum(1 for r in rows if r[1] is None) == 30  # the WebAPI sends them as null
        clean = KingdeeSimulator(records=50, seed=8)
        try:  # only FModifyDate changes, and only on the chosen rows
            good = {t["FCUSTID"]: t for t in clean.truth("BD_Customer")}
            for t in s.truth("BD_Customer"):
                assert {**t, "FModifyDate": good[t["FCUSTID"]]["FModifyDate"]} == good[t["FCUSTID"]]
        finally:
            clean.close()
    with KingdeeSimulator(records=50, faults="null_modify_date=7", orders=0, receivables=0) as s:
        assert sum(1 for t in s.truth("BD_Customer") if t["FModifyDate"] is None) == 7  # above 1: a count


def test_comparisons_with_null_other_than_equality_match_no_row() -> None:
    # Regression: ``FModifyDate > NULL`` used to be translated to ``IS NULL``.
    assert "IS NULL" not in FilterTranslator(FORMS["bd_customer"]).translate("FModifyDate > NULL")
    with KingdeeSimulator(records=40, faults="null_modify_date=0.25", seed=3, orders=0, receivables=0) as s:
        nulls = [t["FCUSTID"] for t in s.truth("BD_Customer") if t["FModifyDate"] is None]
        assert len(nulls) == 10
        for op in (">", ">=", "<", "<="):
            assert _where(s, f"FModifyDate {op} NULL") == [], op
        assert _where(s, "FModifyDate = NULL") == nulls == _where(s, "FModifyDate IS NULL")
        assert len(_where(s, "FModifyDate <> NULL")) == 30


# -- parser limits (issue 17) -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("(" * 100_000 + "FCUSTID = 1" + ")" * 100_000, "过长"),
        ("(" * (MAX_DEPTH + 1) + "FCUSTID = 1" + ")" * (MAX_DEPTH + 1), "嵌套过深"),
        ("NOT " * (MAX_DEPTH + 1) + "FCUSTID = 1", "嵌套过深"),
        ("FCUSTID IN (" + ",".join(["1"] * (MAX_PARAMS + 1)) + ")", "值过多"),
        ("FName = '" + "x" * (MAX_FILTER_CHARS + 1) + "'", "过长"),
        ("FName = '" + "x" * 50_000, "语法错误"),  # an unterminated string
    ],
)
def test_filters_beyond_the_limits_get_one_clear_query_error(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        FilterTranslator(FORMS["bd_customer"]).translate(text)


def test_nesting_up_to_the_limit_is_fine_and_huge_numbers_are_bound_safely(sim: KingdeeSimulator) -> None:
    depth = MAX_DEPTH - 1
    assert _where(sim, "(" * depth + "FCUSTID = 100003" + ")" * depth) == [100003]
    status = nested_error(query(http(sim), FormId="BD_Customer", FieldKeys="F" * 20_000))
    assert "过长" in status["Errors"][0]["Message"]
    assert _where(sim, "FCUSTID > 99999999999999999999999") == []


# -- the kit's fault switches, control API and registry ----------------------------------------------------------
def test_unknown_or_malformed_fault_switches_are_errors_with_a_hint() -> None:
    with pytest.raises(FaultError, match="did you mean 'throttle'"):
        KingdeeSimulator(records=1, faults="throtle=0.1")
    with pytest.raises(FaultError, match="probability from 0 to 1"):
        KingdeeSimulator(records=1, faults="http_5xx=5")
    with pytest.raises(FaultError, match="not a number"):
        KingdeeSimulator(records=1, faults="slow=fast")
    with KingdeeSimulator(records=2) as s:
        api = httpx.Client(base_url=s.base_url)
        bad = api.post("/_sim/faults", json={"faults": "sesion_expiry=3"})
        assert bad.status_code == 400 and "did you mean 'session_expiry'" in bad.json()["error"]
        assert api.get("/_sim/faults").json() == {"faults": {}}  # nothing half-applied
        specs = api.get("/_sim/fault-specs").json()
        assert specs["null_modify_date"]["kind"] == "ROWS" and specs["throttle"]["kind"] == "RATE"
        assert api.get("/_sim/truth", params={"stream": "nope"}).status_code == 400
        assert (
            api.get("/_sim/truth", params={"stream": "customers", "limit": 1}).json()["stream"]
            == "BD_Customer"
        )


def test_registry_finds_simulators_from_the_connectors_themselves() -> None:
    assert {"kingdee", "wecom"} <= set(simulator_names())
    with pytest.raises(KeyError, match="did you mean 'kingdee'"):
        load_simulator("kingde")
