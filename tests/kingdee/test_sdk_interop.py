"""The official Kingdee Python SDK (kingdee-cdp-webapi-sdk from PyPI), unchanged, against the simulator.

It signs every request (no login call) and parses the answers as JSON text; whatever it does, the
simulator must accept as a real K/3 Cloud server does.
"""

from __future__ import annotations

import json

import pytest

k3 = pytest.importorskip("k3cloud_webapi_sdk.main")


@pytest.fixture
def sdk(sim):
    c = sim.credentials()
    api = k3.K3CloudApiSdk(sim.base_url + "/k3cloud/")
    api.InitConfig(
        c["acct_id"], c["username"], c["app_id"], c["app_secret"], sim.base_url + "/k3cloud/", 2052
    )
    return api


def status(text: str) -> dict:
    return json.loads(text)["Result"]["ResponseStatus"]


NEW_CUSTOMER = {
    "FName": "上海同步测试机电有限公司",
    "FCreateOrgId": {"FNumber": "100"},
    "FUseOrgId": {"FNumber": "100"},
    "FTRADINGCURRID": {"FNumber": "PRE001"},
    "FTEL": "021-55550000",
}


def test_the_sdk_signs_in_and_queries(sdk, sim) -> None:
    rows = json.loads(
        sdk.ExecuteBillQuery({"FormId": "BD_Customer", "FieldKeys": "FCUSTID,FNumber", "Limit": 3})
    )
    assert [r[0] for r in rows] == [t["FCUSTID"] for t in sim.truth("BD_Customer", limit=3)]
    assert sim.stats()["signed_logins"] == 1
    sdk.ExecuteBillQuery({"FormId": "BD_Customer", "FieldKeys": "FNumber", "Limit": 1})
    assert sim.stats()["signed_logins"] == 1  # the session cookie it got back is reused


def test_a_tampered_signature_is_no_session(sdk, sim) -> None:
    sdk.identify.AppSecret = "0" * 32  # the X-Kd-Signature no longer matches
    answer = json.loads(sdk.ExecuteBillQuery({"FormId": "BD_Customer", "FieldKeys": "FNumber"}))
    assert "会话信息已丢失" in answer[0][0]["Result"]["ResponseStatus"]["Errors"][0]["Message"]
    assert sim.stats()["signed_logins"] == 0


def test_save_submit_audit_delete_through_the_sdk(sdk, sim) -> None:
    saved = json.loads(sdk.Save("BD_Customer", {"Model": NEW_CUSTOMER}))["Result"]
    assert saved["ResponseStatus"]["IsSuccess"] is True
    number, the_id = saved["Number"], saved["Id"]
    assert saved["ResponseStatus"]["SuccessEntitys"] == [{"Id": the_id, "Number": number, "DIndex": 0}]
    assert status(sdk.Submit("BD_Customer", {"Numbers": [number]}))["IsSuccess"]
    assert status(sdk.Audit("BD_Customer", {"Numbers": [number]}))["IsSuccess"]
    row = next(t for t in sim.truth("BD_Customer") if t["FCUSTID"] == the_id)
    assert (row["FDocumentStatus"], row["FName"], row["FTRADINGCURRID.FName"]) == (
        "C",
        NEW_CUSTOMER["FName"],
        "人民币",
    )
    # Audited: neither Save nor Delete until UnAudit.
    refused = status(
        sdk.Save("BD_Customer", {"NeedUpDateFields": ["FTEL"], "Model": {"FCUSTID": the_id, "FTEL": "1"}})
    )
    assert (refused["IsSuccess"], refused["MsgCode"]) == (False, 12)
    assert status(sdk.Delete("BD_Customer", {"Numbers": [number]}))["MsgCode"] == 12
    assert status(sdk.UnAudit("BD_Customer", {"Numbers": [number]}))["IsSuccess"]
    assert status(sdk.Delete("BD_Customer", {"Numbers": [number]}))["IsSuccess"]
    assert the_id not in {t["FCUSTID"] for t in sim.truth("BD_Customer")}


def test_a_refused_save_has_the_real_error_shape(sdk) -> None:
    answer = status(sdk.Save("BD_Customer", {"Model": {"FCreateOrgId": {"FNumber": "100"}}}))
    assert answer["IsSuccess"] is False and answer["ErrorCode"] == 500 and answer["MsgCode"] == 11
    assert {e["FieldName"] for e in answer["Errors"]} == {"FName", "FTRADINGCURRID"}
    assert all(set(e) == {"FieldName", "Message", "DIndex"} for e in answer["Errors"])
    assert answer["SuccessEntitys"] == []


def test_batch_save_reports_each_entity_by_dindex(sdk, sim) -> None:
    taken = sim.truth("BD_Customer", limit=1)[0]["FNumber"]
    models = [
        dict(NEW_CUSTOMER, FName="甲公司"),
        dict(NEW_CUSTOMER, FName="乙公司", FNumber=taken),
        dict(NEW_CUSTOMER, FName="丙公司"),
    ]
    answer = status(sdk.BatchSave("BD_Customer", {"Model": models}))
    assert answer["IsSuccess"] is False
    assert [e["DIndex"] for e in answer["SuccessEntitys"]] == [0, 2]
    assert [(e["DIndex"], e["FieldName"]) for e in answer["Errors"]] == [(1, "FNumber")]
    assert "唯一" in answer["Errors"][0]["Message"]


def test_excute_operation_forbids_a_customer(sdk, sim) -> None:
    audited = next(
        t for t in sim.truth("BD_Customer") if t["FDocumentStatus"] == "C" and t["FForbidStatus"] == "A"
    )
    answer = status(sdk.ExcuteOperation("BD_Customer", "Forbid", {"Ids": str(audited["FCUSTID"])}))
    assert answer["IsSuccess"] is True
    assert (
        next(t for t in sim.truth("BD_Customer") if t["FCUSTID"] == audited["FCUSTID"])["FForbidStatus"]
        == "B"
    )
