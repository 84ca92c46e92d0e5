"""The two-way engine with the Kingdee spoke against the real simulator over HTTP, on SQLite and
PostgreSQL: the acceptance scenarios of issue 10 at small scale, with API calls counted at the
simulator (its stats counters)."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select, text

from connectors.kingdee.spoke import EXTERNAL_ID, KingdeeSpoke
from connectors.kit import uscc
from connectors.kit.spoke import TransientSpokeError
from pipelines.sync.config import build_pairs
from pipelines.sync.engine import SyncEngine, verify_audit
from tests.kingdee.conftest import client_for
from tongbu.hub.api import CrmApi
from tongbu.hub.models import RecordLink

ROOT = Path(__file__).resolve().parents[2]
PAIRS = {
    p.name: p
    for p in build_pairs(yaml.safe_load((ROOT / "mappings/library/sync/kingdee.yaml").read_text())["sync"])
}
USCC = "91330100MA2B0000" + "0" + uscc.check_char("91330100MA2B00000")
WRITES = ("saves", "batch_saves", "submits", "audits", "unaudits", "cancel_assigns", "deletes", "operations")


def writes(sim) -> int:
    s = sim.stats()
    return sum(s[k] for k in WRITES)


@pytest.fixture
def world(hub_engine, sim):
    client = client_for(sim)
    spoke = KingdeeSpoke(client)
    accounts = SyncEngine(hub_engine, PAIRS["accounts_kingdee"], [spoke])
    orders = SyncEngine(hub_engine, PAIRS["sales_orders_kingdee"], [spoke])
    accounts.run()  # link what Kingdee already has
    orders.run()
    sim.reset_stats()
    yield hub_engine, CrmApi(hub_engine), sim, accounts, orders
    client.close()


def links(hub_engine, obj: str) -> dict[int, str]:
    t = RecordLink.__table__
    with hub_engine.connect() as conn:
        return {
            r.hub_id: r.external_id
            for r in conn.execute(
                select(t.c.hub_id, t.c.external_id).where(t.c.object == obj, t.c.state == "linked")
            )
        }


def hub_rows(hub_engine, table: str) -> dict[int, dict]:
    with hub_engine.connect() as conn:
        return {
            r["id"]: dict(r)
            for r in conn.execute(text(f"SELECT * FROM {table} WHERE deleted_at IS NULL")).mappings()
        }


def customer(sim, ext: str) -> dict:
    return next(t for t in sim.truth("BD_Customer") if str(t["FCUSTID"]) == str(ext))


def test_first_cycle_links_every_kingdee_record_and_a_second_writes_nothing(world) -> None:
    hub_engine, api, sim, accounts, orders = world
    assert len(links(hub_engine, "accounts")) == 8 and len(links(hub_engine, "sales_orders")) == 4
    report = accounts.run()
    orders.run()
    assert writes(sim) == 0
    assert report.direction("kingdee").as_dict()["updated"] == 0


def test_a_crm_account_reaches_kingdee_in_one_call_and_its_number_comes_back(world) -> None:
    hub_engine, api, sim, accounts, _ = world
    hub_id = api.create(
        "accounts",
        {"name": "杭州同步科技有限公司", "phone": "0571-88886666", "credit_code": USCC},
        author="alice",
    )
    accounts.run()
    assert sim.stats()["saves"] == 1 and writes(sim) == 1  # Save with IsAutoSubmitAndAudit
    ext = links(hub_engine, "accounts")[hub_id]
    row = customer(sim, ext)
    assert (row["FName"], row["FTEL"], row["FDocumentStatus"]) == (
        "杭州同步科技有限公司",
        "0571-88886666",
        "C",
    )
    assert row[EXTERNAL_ID]  # the intent key: a retried create finds it
    accounts.run()  # the echo brings Kingdee's number back to the CRM; nothing is written to Kingdee
    assert writes(sim) == 1
    assert hub_rows(hub_engine, "accounts")[hub_id]["number"] == row["FNumber"]


def test_t1_disjoint_edits_on_both_sides_are_all_kept(world) -> None:
    hub_engine, api, sim, accounts, _ = world
    linked = links(hub_engine, "accounts")
    for i, (hub_id, ext) in enumerate(sorted(linked.items())):
        api.update(
            "accounts", hub_id, {"name": f"CRM改名{i}", "phone": f"010-{6000_0000 + i}"}, author="alice"
        )
        sim.edit("BD_Customer", int(ext), {"FADDRESS": f"ERP地址{i}", "FDomains": f"行业{i}"})
    accounts.run()
    accounts.run()
    rows = hub_rows(hub_engine, "accounts")
    for i, (hub_id, ext) in enumerate(sorted(linked.items())):
        k = customer(sim, ext)
        assert (rows[hub_id]["name"], k["FName"]) == (f"CRM改名{i}",) * 2
        assert (rows[hub_id]["phone"], k["FTEL"]) == (f"010-{6000_0000 + i}",) * 2
        assert (rows[hub_id]["address"], k["FADDRESS"]) == (f"ERP地址{i}",) * 2
        assert (rows[hub_id]["industry"], k["FDomains"]) == (f"行业{i}",) * 2


def test_t2_a_true_conflict_is_queued_with_both_values(world) -> None:
    hub_engine, api, sim, accounts, _ = world
    hub_id, ext = sorted(links(hub_engine, "accounts").items())[0]
    api.update("accounts", hub_id, {"name": "CRM的名字"}, author="alice")
    sim.edit("BD_Customer", int(ext), {"FName": "ERP的名字"})
    report = accounts.run()
    assert report.conflicts_opened == 1
    (conflict,) = accounts.conflicts()
    assert (conflict["field"], conflict["hub_value"], conflict["system_value"]) == (
        "name",
        "CRM的名字",
        "ERP的名字",
    )
    assert (
        customer(sim, ext)["FName"] == "ERP的名字"
        and hub_rows(hub_engine, "accounts")[hub_id]["name"] == "CRM的名字"
    )
    assert sim.stats()["saves"] == 0  # no silent overwrite in either direction
    accounts.resolve(conflict["id"], "hub", by="bob")
    accounts.run()
    assert customer(sim, ext)["FName"] == "CRM的名字"


def test_t3_an_erp_owned_field_edited_in_the_crm_is_reverted_and_audited(world) -> None:
    hub_engine, api, sim, accounts, _ = world
    hub_id, ext = sorted(links(hub_engine, "accounts").items())[0]
    limit = customer(sim, ext)["F_PAEZ_CreditLimit"]
    api.update("accounts", hub_id, {"credit_limit": "1"}, author="mallory")
    report = accounts.run()
    assert report.reverted == 1
    assert float(hub_rows(hub_engine, "accounts")[hub_id]["credit_limit"]) == limit
    assert customer(sim, ext)["F_PAEZ_CreditLimit"] == limit and writes(sim) == 0
    with hub_engine.connect() as conn:
        kinds = [r[0] for r in conn.execute(text("SELECT kind FROM sync_audit WHERE field = 'credit_limit'"))]
    assert "reverted" in kinds and verify_audit(hub_engine, "accounts_kingdee") is None


def test_t4_ping_pong_one_write_per_real_change_and_none_back(world) -> None:
    hub_engine, api, sim, accounts, orders = world
    rng = random.Random(4)
    linked = sorted(links(hub_engine, "accounts").items())
    crm_changes = 0
    for _round in range(5):
        touched = set()
        for _ in range(6):
            hub_id, ext = rng.choice(linked)
            if rng.random() < 0.5 and hub_id not in touched:
                api.update(
                    "accounts", hub_id, {"phone": f"020-{rng.randrange(10**7, 10**8)}"}, author="alice"
                )
                touched.add(hub_id)
            else:
                sim.edit("BD_Customer", int(ext), {"FZIP": "x", "FDomains": f"行业{rng.randrange(99)}"})
        before = sim.stats()["saves"]
        accounts.run()
        # Exactly one Save per CRM-changed record (the audited ones un-audited first), none for the
        # ERP-side edits coming in, none for the echoes of our own writes.
        assert sim.stats()["saves"] - before == len(touched)
        crm_changes += len(touched)
    for _ in range(3):
        accounts.run()
    assert sim.stats()["saves"] == crm_changes  # write amplification 1.00, 0 writes back
    # Derived fields: an order changed in the CRM comes back with recomputed amounts; not echoed.
    hub_id, ext = sorted(links(hub_engine, "sales_orders").items())[0]
    lines = api.get("sales_orders", hub_id)["lines"]
    lines[0] = {**lines[0], "qty": str(int(float(lines[0]["qty"])) + 1)}
    api.update("sales_orders", hub_id, {"lines": lines}, author="alice")
    before = sim.stats()["saves"]
    orders.run()
    orders.run()
    orders.run()
    assert sim.stats()["saves"] - before == 1
    truth = next(t for t in sim.truth("SAL_SaleOrder") if str(t["FID"]) == ext)
    assert float(hub_rows(hub_engine, "sales_orders")[hub_id]["amount"]) == truth["FBillAllAmount"]


def test_t5_a_lost_answer_after_save_makes_no_duplicate(world) -> None:
    hub_engine, api, sim, accounts, _ = world
    hub_id = api.create("accounts", {"name": "丢失回复有限公司"}, author="alice")
    sim.set_faults("lost_response=1")
    first = accounts.run()
    sim.set_faults(None)
    assert first.direction("kingdee").failed == 1 and sim.stats()["lost_responses"] == 1
    accounts.run()
    accounts.run()
    named = [t for t in sim.truth("BD_Customer") if t["FName"] == "丢失回复有限公司"]
    assert len(named) == 1  # found by its intent key, not created again
    assert links(hub_engine, "accounts")[hub_id] == str(named[0]["FCUSTID"])
    assert sim.stats()["saves"] == 1


def test_lock_conflicts_and_5xx_are_retried_next_cycle(world) -> None:
    hub_engine, api, sim, accounts, _ = world
    hub_id, ext = sorted(links(hub_engine, "accounts").items())[1]
    api.update("accounts", hub_id, {"phone": "0755-1"}, author="alice")
    sim.set_faults("lock_conflict=1")
    report = accounts.run()
    assert report.direction("kingdee").failed == 1
    sim.set_faults("http_5xx=1")
    with pytest.raises(TransientSpokeError):  # Kingdee down: the cycle stops, cursors stay put
        accounts.run()
    sim.set_faults(None)
    accounts.run()
    assert customer(sim, ext)["FTEL"] == "0755-1"
    assert sim.stats()["saves"] == 1


def test_lead_to_cash_a_crm_order_is_created_audited_and_its_bill_number_comes_back(world) -> None:
    hub_engine, api, sim, accounts, orders = world
    account_ext = sorted(links(hub_engine, "accounts").values())[0]
    lines = [
        {"line_no": i + 1, "product_code": "1.01.002", "qty": "2", "unit_price": "3000"} for i in range(3)
    ]
    hub_id = api.create(
        "sales_orders",
        {
            "account_ref": account_ext,
            "order_date": dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC),
            "currency": "CNY",
            "lines": lines,
        },
        author="alice",
    )
    orders.run()
    assert (sim.stats()["saves"], writes(sim)) == (1, 1)
    ext = links(hub_engine, "sales_orders")[hub_id]
    truth = next(t for t in sim.truth("SAL_SaleOrder") if str(t["FID"]) == ext)
    assert truth["FDocumentStatus"] == "C" and truth["FBillAllAmount"] == 18000.0
    assert truth["FDate"] == "2026-03-02T10:00:00"  # UTC 02:00 is 10:00 on the server's clock
    orders.run()
    row = api.get("sales_orders", hub_id)
    assert (row["erp_number"], row["erp_status"]) == (truth["FBillNo"], "approved")
    assert float(row["amount"]) == 18000.0
    assert [ln["entry_id"] for ln in row["lines"]] == [
        str(ln["FSaleOrderEntry_FEntryID"]) for ln in truth["lines"]
    ]
    assert writes(sim) == 1  # the bill number, status, amounts and entry ids came back without an echo


def test_t12_a_header_only_update_keeps_all_20_lines_and_their_ids(world) -> None:
    hub_engine, api, sim, accounts, orders = world
    account_ext = sorted(links(hub_engine, "accounts").values())[0]
    lines = [
        {"line_no": i + 1, "product_code": "1.07.001", "qty": "1", "unit_price": "200"} for i in range(20)
    ]
    hub_id = api.create(
        "sales_orders",
        {"account_ref": account_ext, "order_date": dt.datetime(2026, 3, 2, tzinfo=dt.UTC), "lines": lines},
        author="alice",
    )
    orders.run()
    orders.run()
    ext = links(hub_engine, "sales_orders")[hub_id]
    before = next(t for t in sim.truth("SAL_SaleOrder") if str(t["FID"]) == ext)
    sim.reset_stats()
    api.update("sales_orders", hub_id, {"order_date": dt.datetime(2026, 3, 9, tzinfo=dt.UTC)}, author="alice")
    orders.run()
    after = next(t for t in sim.truth("SAL_SaleOrder") if str(t["FID"]) == ext)
    ids = [ln["FSaleOrderEntry_FEntryID"] for ln in after["lines"]]
    assert ids == [ln["FSaleOrderEntry_FEntryID"] for ln in before["lines"]] and len(ids) == 20
    assert after["FDate"] == "2026-03-09T08:00:00"
    # Audited order: UnAudit, then one Save (with submit and audit) that sent only FDate.
    assert (sim.stats()["unaudits"], sim.stats()["saves"]) == (1, 1)
    assert sim.stats()["fields_written"] == 1 and sim.stats()["cascade_resets"] == 0


def test_t13_delete_in_the_crm_while_kingdee_edits_voids_and_never_resurrects(world) -> None:
    hub_engine, api, sim, accounts, _ = world
    hub_id, ext = sorted(links(hub_engine, "accounts").items())[2]
    api.delete("accounts", hub_id, author="alice")
    sim.edit("BD_Customer", int(ext), {"FTEL": "edited-meanwhile"})
    for _ in range(3):
        accounts.run()
    assert customer(sim, ext)["FForbidStatus"] == "B"  # void_notify: forbidden (禁用), kept
    assert hub_id not in hub_rows(hub_engine, "accounts")
    sim.edit("BD_Customer", int(ext), {"FTEL": "edited-after"})
    for _ in range(3):
        accounts.run()
    assert hub_id not in hub_rows(hub_engine, "accounts")  # no resurrection


def test_t15_rapid_updates_end_on_the_last_value_on_both_sides(world) -> None:
    hub_engine, api, sim, accounts, _ = world
    (h1, e1), (h2, e2) = sorted(links(hub_engine, "accounts").items())[3:5]
    for i in range(10):
        api.update("accounts", h1, {"phone": f"021-{i}"}, author="alice")
        sim.edit("BD_Customer", int(e2), {"FTEL": f"022-{i}"})
    accounts.run()
    accounts.run()
    rows = hub_rows(hub_engine, "accounts")
    assert customer(sim, e1)["FTEL"] == rows[h1]["phone"] == "021-9"
    assert rows[h2]["phone"] == customer(sim, e2)["FTEL"] == "022-9"
    assert sim.stats()["saves"] == 1  # ten CRM updates coalesced into one write


def test_t17_an_out_of_band_edit_is_found_by_reconciliation(world) -> None:
    hub_engine, api, sim, accounts, _ = world
    hub_id, ext = sorted(links(hub_engine, "accounts").items())[5]
    sim.tamper("BD_Customer", int(ext), {"FTEL": "021-99990000"})
    accounts.run()
    assert hub_rows(hub_engine, "accounts")[hub_id]["phone"] != "021-99990000"  # no feed can see it
    accounts.run(reconcile=True)
    assert hub_rows(hub_engine, "accounts")[hub_id]["phone"] == "021-99990000"
    # An ERP-owned value changed out of band reaches the CRM the same way.
    sim.tamper("BD_Customer", int(ext), {"F_PAEZ_CreditLimit": 4242.0})
    accounts.run(reconcile=True)
    assert float(hub_rows(hub_engine, "accounts")[hub_id]["credit_limit"]) == 4242.0
    assert writes(sim) == 0


class Killed(BaseException):
    """Stands for a SIGKILL at one exact point (not an Exception: nothing may catch it)."""


def test_a_crash_before_the_write_is_sent_still_sends_it_next_cycle(world, monkeypatch) -> None:
    hub_engine, api, sim, accounts, _ = world
    hub_id, ext = sorted(links(hub_engine, "accounts").items())[0]
    spoke = accounts.spokes["kingdee"]
    api.update("accounts", hub_id, {"phone": "0755-12345678"}, author="alice")

    def crash(*args, **kwargs):
        raise Killed()

    monkeypatch.setattr(spoke, "update", crash)
    with pytest.raises(Killed):  # the hub side is committed, the write never left
        accounts.run()
    monkeypatch.undo()
    accounts.run()
    assert customer(sim, ext)["FTEL"] == "0755-12345678"


def test_a_crash_after_kingdee_applied_but_before_the_base_moved_is_no_conflict(world, monkeypatch) -> None:
    hub_engine, api, sim, accounts, _ = world
    hub_id, ext = sorted(links(hub_engine, "accounts").items())[0]
    spoke = accounts.spokes["kingdee"]
    real = spoke.update
    api.update("accounts", hub_id, {"phone": "0755-11111111"}, author="alice")

    def applied_then_crash(*args, **kwargs):
        real(*args, **kwargs)
        raise Killed()

    monkeypatch.setattr(spoke, "update", applied_then_crash)
    with pytest.raises(Killed):
        accounts.run()
    monkeypatch.undo()
    api.update("accounts", hub_id, {"phone": "0755-22222222"}, author="alice")  # edited again meanwhile
    report = accounts.run()
    assert report.conflicts_opened == 0  # our own applied write is not mistaken for a Kingdee edit
    assert customer(sim, ext)["FTEL"] == "0755-22222222"
    assert hub_rows(hub_engine, "accounts")[hub_id]["phone"] == "0755-22222222"
