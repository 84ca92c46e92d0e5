"""Save as the real WebAPI does it, through the client over HTTP: create and modify,
NeedUpDateFields, IsDeleteEntry, FNumber uniqueness, required fields, audited documents, derived
fields, value-update cascades and the write faults."""

from __future__ import annotations

import pytest

from connectors.kingdee.client import KingdeeLocked, KingdeeTransient, KingdeeWriteError

ORDER = "SAL_SaleOrder"


def order_truth(sim, fid):
    return next(t for t in sim.truth(ORDER) if t["FID"] == fid)


def customer_truth(sim, cid):
    return next(t for t in sim.truth("BD_Customer") if t["FCUSTID"] == cid)


def new_order(client, sim, lines: int = 3) -> tuple[int, str]:
    customer = sim.truth("BD_Customer", limit=1)[0]["FNumber"]
    model = {
        "FID": 0,
        "FBillTypeID": {"FNumber": "XSDD01_SYS"},
        "FDate": "2026-03-01",
        "FCustId": {"FNumber": customer},
        "FSaleOrgId": {"FNumber": "100"},
        "FSaleOrderEntry": [
            {"FMaterialId": {"FNumber": "1.01.001"}, "FQty": str(i + 1), "FTaxPrice": "113"}
            for i in range(lines)
        ],
    }
    return client.save(ORDER, model)


def test_create_computes_number_amounts_and_totals(client, sim) -> None:
    fid, number = new_order(client, sim, lines=3)
    t = order_truth(sim, fid)
    assert number.startswith("XSDD") and t["FBillNo"] == number and t["FDocumentStatus"] == "A"
    assert [(ln["FSaleOrderEntry_FQty"], ln["FSaleOrderEntry_FAllAmount"]) for ln in t["lines"]] == [
        (1.0, 113.0),
        (2.0, 226.0),
        (3.0, 339.0),
    ]
    assert [ln["FSaleOrderEntry_FPrice"] for ln in t["lines"]] == [100.0] * 3  # 113 / 1.13
    assert t["FBillAllAmount"] == 678.0
    # The customer's value-update event filled currency, salesperson and delivery address.
    assert t["FSettleCurrId.FNumber"] and t["FReceiveAddress"]


def test_modify_with_need_update_fields_changes_only_those(client, sim) -> None:
    cust = sim.truth("BD_Customer")[-1]
    cid = cust["FCUSTID"]
    client.lifecycle("unaudit", "BD_Customer", ids=[cid]) if cust["FDocumentStatus"] == "C" else None
    before = customer_truth(sim, cid)
    client.save(
        "BD_Customer", {"FCUSTID": cid, "FTEL": "021-1", "FADDRESS": "不应写入"}, need_update_fields=["FTEL"]
    )
    after = customer_truth(sim, cid)
    assert after["FTEL"] == "021-1"
    assert after["FADDRESS"] == before["FADDRESS"]  # in Model but not in NeedUpDateFields: untouched
    assert after["FModifyDate"] > before["FModifyDate"]  # the server stamps every write


def test_is_delete_entry_defaults_to_true_and_deletes_left_out_lines(client, sim) -> None:
    fid, _ = new_order(client, sim, lines=3)
    entries = [ln["FSaleOrderEntry_FEntryID"] for ln in order_truth(sim, fid)["lines"]]
    # Only the first line sent (to change its quantity): the other two are deleted by default.
    client.save(
        ORDER,
        {"FID": fid, "FSaleOrderEntry": [{"FEntryID": entries[0], "FQty": "5"}]},
        need_update_fields=["FSaleOrderEntry", "FQty"],
    )
    t = order_truth(sim, fid)
    assert [ln["FSaleOrderEntry_FEntryID"] for ln in t["lines"]] == entries[:1]
    assert t["FBillAllAmount"] == 565.0  # 5 x 113, recomputed
    # With IsDeleteEntry false the rows left out stay.
    fid2, _ = new_order(client, sim, lines=3)
    entries2 = [ln["FSaleOrderEntry_FEntryID"] for ln in order_truth(sim, fid2)["lines"]]
    client.save(
        ORDER,
        {"FID": fid2, "FSaleOrderEntry": [{"FEntryID": entries2[0], "FQty": "5"}]},
        need_update_fields=["FSaleOrderEntry", "FQty"],
        is_delete_entry=False,
    )
    assert [ln["FSaleOrderEntry_FEntryID"] for ln in order_truth(sim, fid2)["lines"]] == entries2


def test_a_header_only_modify_keeps_every_line(client, sim) -> None:
    fid, _ = new_order(client, sim, lines=20)
    before = [ln["FSaleOrderEntry_FEntryID"] for ln in order_truth(sim, fid)["lines"]]
    client.save(ORDER, {"FID": fid, "FNote": "只改表头"}, need_update_fields=["FNote"])
    t = order_truth(sim, fid)
    assert [ln["FSaleOrderEntry_FEntryID"] for ln in t["lines"]] == before and len(before) == 20
    assert t["FNote"] == "只改表头"


def test_resending_an_unchanged_customer_fires_its_value_update_event(client, sim) -> None:
    fid, _ = new_order(client, sim, lines=1)
    client.save(
        ORDER, {"FID": fid, "FReceiveAddress": "手工改过的地址"}, need_update_fields=["FReceiveAddress"]
    )
    cust_id = order_truth(sim, fid)["FCustId"]
    same_customer = customer_truth(sim, cust_id)["FNumber"]
    sim.reset_stats()
    client.save(ORDER, {"FID": fid, "FCustId": {"FNumber": same_customer}}, need_update_fields=["FCustId"])
    # Same value, yet the hand-edited address is back to the customer's: why a writer must never
    # resend an unchanged field.
    assert order_truth(sim, fid)["FReceiveAddress"] != "手工改过的地址"
    assert sim.stats()["cascade_resets"] == 3


def test_numbers_are_unique(client, sim) -> None:
    taken = sim.truth("BD_Customer", limit=1)[0]["FNumber"]
    with pytest.raises(KingdeeWriteError) as err:
        client.save(
            "BD_Customer",
            {
                "FNumber": taken,
                "FName": "重复",
                "FCreateOrgId": {"FNumber": "100"},
                "FTRADINGCURRID": {"FNumber": "PRE001"},
            },
        )
    assert err.value.errors[0]["FieldName"] == "FNumber" and "唯一" in err.value.errors[0]["Message"]
    assert sim.counts()["BD_Customer"] == 8


def test_required_fields_and_unknown_base_data(client, sim) -> None:
    with pytest.raises(KingdeeWriteError) as err:
        client.save("BD_Customer", {"FName": "缺组织", "FTRADINGCURRID": {"FNumber": "PRE001"}})
    assert [e["FieldName"] for e in err.value.errors] == ["FCreateOrgId"]
    with pytest.raises(KingdeeWriteError) as err:
        client.save(
            "BD_Customer",
            {"FName": "错币别", "FCreateOrgId": {"FNumber": "100"}, "FTRADINGCURRID": {"FNumber": "NOPE"}},
        )
    assert err.value.errors[0]["FieldName"] == "FTRADINGCURRID" and err.value.msg_code == 9
    customer = sim.truth("BD_Customer", limit=1)[0]["FNumber"]
    with pytest.raises(KingdeeWriteError, match="至少需要一行"):
        client.save(
            ORDER,
            {
                "FBillTypeID": {"FNumber": "XSDD01_SYS"},
                "FDate": "2026-03-01",
                "FCustId": {"FNumber": customer},
                "FSaleOrgId": {"FNumber": "100"},
            },
        )
    assert sim.counts()["BD_Customer"] == 8 and sim.counts()[ORDER] == 4  # nothing half-applied


def test_audited_documents_refuse_save_until_unaudited(client, sim) -> None:
    fid, number = new_order(client, sim, lines=2)
    assert client.lifecycle("submit", ORDER, numbers=[number]).ok
    with pytest.raises(KingdeeWriteError) as err:  # submitted (B) already refuses
        client.save(ORDER, {"FID": fid, "FNote": "x"}, need_update_fields=["FNote"])
    assert err.value.msg_code == 12
    assert client.lifecycle("audit", ORDER, numbers=[number]).ok
    assert order_truth(sim, fid)["FDocumentStatus"] == "C" and order_truth(sim, fid)["FApproveDate"]
    with pytest.raises(KingdeeWriteError):
        client.save(ORDER, {"FID": fid, "FNote": "x"}, need_update_fields=["FNote"])
    assert not client.lifecycle("audit", ORDER, numbers=[number]).ok  # already audited
    assert client.lifecycle("unaudit", ORDER, numbers=[number]).ok
    client.save(ORDER, {"FID": fid, "FNote": "改了"}, need_update_fields=["FNote"])
    assert (order_truth(sim, fid)["FDocumentStatus"], order_truth(sim, fid)["FNote"]) == ("D", "改了")


def test_auto_submit_and_audit_in_the_save(client, sim) -> None:
    fid, _ = client.save(
        "BD_Customer",
        {"FName": "一步审核", "FCreateOrgId": {"FNumber": "100"}, "FTRADINGCURRID": {"FNumber": "PRE001"}},
        extra={"IsAutoSubmitAndAudit": True},
    )
    assert customer_truth(sim, fid)["FDocumentStatus"] == "C"


def test_lost_response_applies_the_write_and_loses_the_answer(client, sim) -> None:
    sim.set_faults("lost_response=1")
    with pytest.raises(KingdeeTransient):
        client.save(
            "BD_Customer",
            {
                "FName": "丢了回复",
                "FCreateOrgId": {"FNumber": "100"},
                "FTRADINGCURRID": {"FNumber": "PRE001"},
            },
        )
    sim.set_faults(None)
    assert sim.counts()["BD_Customer"] == 9  # applied, exactly once: a write is never re-sent blind
    assert sim.stats()["lost_responses"] == 1 and sim.stats()["saves"] == 1


def test_lock_conflict_applies_nothing_and_is_retried(client, sim) -> None:
    sim.set_faults("lock_conflict=1")
    with pytest.raises(KingdeeLocked):
        client.save(
            "BD_Customer",
            {"FName": "被锁", "FCreateOrgId": {"FNumber": "100"}, "FTRADINGCURRID": {"FNumber": "PRE001"}},
        )
    assert sim.stats()["lock_conflicts"] == 4  # the first attempt and 3 retries
    assert sim.counts()["BD_Customer"] == 8
    sim.set_faults(None)


def test_5xx_before_applying_is_transient_and_not_resent(client, sim) -> None:
    sim.set_faults("http_5xx=1")
    with pytest.raises(KingdeeTransient):
        client.save(
            "BD_Customer",
            {"FName": "五百", "FCreateOrgId": {"FNumber": "100"}, "FTRADINGCURRID": {"FNumber": "PRE001"}},
        )
    sim.set_faults(None)
    assert sim.counts()["BD_Customer"] == 8 and sim.stats()["http_5xx"] == 1


def test_tamper_changes_a_record_without_a_timestamp(client, sim) -> None:
    cust = sim.truth("BD_Customer", limit=1)[0]
    sim.tamper("BD_Customer", cust["FCUSTID"], {"FTEL": "000"})
    after = customer_truth(sim, cust["FCUSTID"])
    assert after["FTEL"] == "000" and after["FModifyDate"] == cust["FModifyDate"]
