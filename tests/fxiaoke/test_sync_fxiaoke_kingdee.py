"""Fxiaoke ⇄ hub ⇄ Kingdee with the unchanged two-way engine, both simulators over real HTTP, on
SQLite and PostgreSQL: the acceptance scenarios of issue 10 (disjoint edits, true conflicts,
ownership, ping-pong, lost response, delete vs edit, rapid updates, drift) for the pair, with the
API calls counted at each simulator. "Lost" and "duplicated" are checked against both simulators'
ground truth; write amplification is writes sent per real change."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select, text

from connectors.fxiaoke.simulator import FxiaokeSimulator
from connectors.fxiaoke.spoke import FxiaokeSpoke
from connectors.kingdee.simulator import KingdeeSimulator
from connectors.kingdee.spoke import KingdeeSpoke
from connectors.kit import uscc
from pipelines.sync.config import build_pairs
from pipelines.sync.engine import SyncEngine, verify_audit
from tests.fxiaoke.conftest import client_for
from tests.kingdee.conftest import client_for as kingdee_client_for
from tongbu.hub.api import CrmApi
from tongbu.hub.models import RecordLink

ROOT = Path(__file__).resolve().parents[2]
PAIRS = {
    p.name: p
    for p in build_pairs(yaml.safe_load((ROOT / "mappings/library/sync/fxiaoke.yaml").read_text())["sync"])
}
KD_WRITES = (
    "saves",
    "batch_saves",
    "submits",
    "audits",
    "unaudits",
    "cancel_assigns",
    "deletes",
    "operations",
)
FX_WRITES = ("creates", "updates", "invalids", "deletes", "change_owners")
N = 10


def kd_writes(sim: KingdeeSimulator) -> int:
    return sum(sim.stats()[k] for k in KD_WRITES)


def fx_writes(sim: FxiaokeSimulator) -> int:
    return sum(sim.stats()[k] for k in FX_WRITES)


@pytest.fixture
def world(hub_engine):
    with (
        KingdeeSimulator(records=N, orders=0, receivables=0, seed=5) as kd,
        FxiaokeSimulator(records=N, seed=5) as fx,
    ):
        kc, fc = kingdee_client_for(kd), client_for(fx)
        engine = SyncEngine(
            hub_engine, PAIRS["accounts_fxiaoke_kingdee"], [FxiaokeSpoke(fc), KingdeeSpoke(kc)]
        )
        engine.run()  # link what both already have, create what one side lacks
        # Companies on both sides disagree where they were typed twice (name variants, other phone
        # numbers): those fields went to review. A reviewer keeps the hub's value for each.
        initial = engine.conflicts()
        assert initial and {c["field"] for c in initial} <= {"name", "phone", "address"}
        for c in initial:
            engine.resolve(c["id"], "hub", by="reviewer")
        engine.run()
        engine.run()
        assert not engine.conflicts()
        kd.reset_stats()
        fx.reset_stats()
        yield hub_engine, CrmApi(hub_engine), kd, fx, engine
        kc.close()
        fc.close()


def links(hub_engine, system: str) -> dict[int, str]:
    t = RecordLink.__table__
    with hub_engine.connect() as conn:
        rows = conn.execute(
            select(t.c.hub_id, t.c.external_id).where(
                t.c.object == "accounts", t.c.system == system, t.c.state == "linked"
            )
        )
        return {r.hub_id: r.external_id for r in rows}


def pairs(hub_engine) -> list[tuple[int, str, str]]:
    """(hub id, Fxiaoke _id, Kingdee FCUSTID) of every entity linked on both sides, in hub order."""
    f, k = links(hub_engine, "fxiaoke"), links(hub_engine, "kingdee")
    return [(h, f[h], k[h]) for h in sorted(set(f) & set(k))]


def hub_rows(hub_engine) -> dict[int, dict]:
    with hub_engine.connect() as conn:
        return {
            r["id"]: dict(r)
            for r in conn.execute(text("SELECT * FROM accounts WHERE deleted_at IS NULL")).mappings()
        }


def fx_row(fx: FxiaokeSimulator, rid: str) -> dict:
    return next(r for r in fx.truth("AccountObj") if r["_id"] == rid)


def kd_row(kd: KingdeeSimulator, cid: str) -> dict:
    return next(r for r in kd.truth("BD_Customer") if str(r["FCUSTID"]) == str(cid))


def assert_exactly_once(hub_engine, kd: KingdeeSimulator, fx: FxiaokeSimulator) -> None:
    """0 lost, 0 duplicated: every company (by credit code) is once in each system and once in the hub."""
    fx_codes = Counter(
        r["uniform_social_credit_code"] for r in fx.truth("AccountObj") if r["life_status"] != "invalid"
    )
    kd_codes = Counter(r["FSOCIALCRECODE"] for r in kd.truth("BD_Customer") if r["FForbidStatus"] != "B")
    hub_codes = Counter(r["credit_code"] for r in hub_rows(hub_engine).values())
    for counter in (fx_codes, kd_codes, hub_codes):
        counter.pop(None, None)
        counter.pop("", None)
        assert max(counter.values(), default=1) == 1, counter.most_common(2)
    assert set(fx_codes) == set(kd_codes) == set(hub_codes)
    assert len(fx.truth("AccountObj")) == len(kd.truth("BD_Customer")) == len(hub_rows(hub_engine))


def test_first_cycles_link_by_credit_code_and_create_each_side_once(world) -> None:
    hub_engine, api, kd, fx, engine = world
    assert_exactly_once(hub_engine, kd, fx)
    # 8 of 10 companies were on both sides; 2 only in Fxiaoke, 2 only in Kingdee: 12 entities.
    assert len(pairs(hub_engine)) == 12
    engine.run()
    assert kd_writes(kd) == 0 and fx_writes(fx) == 0  # settled: nothing more to write
    # The ERP's number and figures reached Fxiaoke's ERP fields for every linked customer.
    for _h, f, k in pairs(hub_engine):
        row, kdr = fx_row(fx, f), kd_row(kd, k)
        assert row["erp_number__c"] == kdr["FNumber"]
        assert float(row["credit_limit__c"] or 0) == float(kdr["F_PAEZ_CreditLimit"] or 0), (row, kdr)


def test_a_customer_created_in_either_system_appears_in_the_other_once(world) -> None:
    hub_engine, api, kd, fx, engine = world
    code = "91330100MA2B0000" + "1" + uscc.check_char("91330100MA2B00001")
    from tests.fxiaoke.conftest import client_for as fxc

    c = fxc(fx)
    new_fx = c.create(
        "AccountObj", {"name": "杭州新建客户有限公司", "uniform_social_credit_code": code, "tel": "0571-1"}
    )
    c.close()
    engine.run()
    engine.run()
    hub_id = next(h for h, f, _k in pairs(hub_engine) if f == new_fx)
    kd_id = links(hub_engine, "kingdee")[hub_id]
    assert kd_row(kd, kd_id)["FName"] == "杭州新建客户有限公司"
    assert fx_row(fx, new_fx)["erp_number__c"] == kd_row(kd, kd_id)["FNumber"]  # the number came back
    assert_exactly_once(hub_engine, kd, fx)
    assert kd.stats()["saves"] == 1 and fx.stats()["creates"] == 1  # ours, in the test; none by the engine


def test_t1_disjoint_edits_on_both_sides_are_all_kept(world) -> None:
    hub_engine, api, kd, fx, engine = world
    linked = pairs(hub_engine)[:6]
    for i, (_h, f, k) in enumerate(linked):
        fx.edit("AccountObj", f, {"tel": f"010-{6000_0000 + i}"})
        kd.edit("BD_Customer", int(k), {"FADDRESS": f"ERP地址{i}"})
    engine.run()
    engine.run()
    rows = hub_rows(hub_engine)
    for i, (h, f, k) in enumerate(linked):
        assert rows[h]["phone"] == fx_row(fx, f)["tel"] == kd_row(kd, k)["FTEL"] == f"010-{6000_0000 + i}"
        assert rows[h]["address"] == fx_row(fx, f)["address"] == kd_row(kd, k)["FADDRESS"] == f"ERP地址{i}"
    # one write per change and system it did not come from, carrying only the changed field
    assert kd.stats()["saves"] == 6 and fx.stats()["updates"] == 6
    assert fx.stats()["fields_written"] == 6 and kd.stats()["fields_written"] == 6


def test_t2_a_true_conflict_is_queued_with_both_values(world) -> None:
    hub_engine, api, kd, fx, engine = world
    h, f, k = pairs(hub_engine)[0]
    fx.edit("AccountObj", f, {"name": "CRM的名字"})
    kd.edit("BD_Customer", int(k), {"FName": "ERP的名字"})
    report = engine.run()
    assert report.conflicts_opened == 1
    (conflict,) = engine.conflicts()
    assert conflict["field"] == "name"
    assert {conflict["hub_value"], conflict["system_value"]} <= {"CRM的名字", "ERP的名字"}
    assert (
        fx_row(fx, f)["name"] == "CRM的名字" and kd_row(kd, k)["FName"] == "ERP的名字"
    )  # nothing overwritten
    engine.resolve(
        conflict["id"], "ERP的名字" if conflict["system_value"] != "ERP的名字" else "system", by="bob"
    )
    engine.run()
    engine.run()
    assert fx_row(fx, f)["name"] == kd_row(kd, k)["FName"] == hub_rows(hub_engine)[h]["name"] == "ERP的名字"


def test_t3_ownership_credit_limit_by_the_erp_grade_and_owner_by_the_crm(world) -> None:
    hub_engine, api, kd, fx, engine = world
    h, f, k = pairs(hub_engine)[1]
    limit = kd_row(kd, k)["F_PAEZ_CreditLimit"]
    fx.edit("AccountObj", f, {"credit_limit__c": "1"})  # a sales rep "raises" the credit limit in the CRM
    report = engine.run()
    assert report.reverted >= 1
    assert float(fx_row(fx, f)["credit_limit__c"]) == limit  # put back in Fxiaoke within the cycle
    assert kd_row(kd, k)["F_PAEZ_CreditLimit"] == limit and kd.stats()["saves"] == 0
    # The ERP changes it: it reaches Fxiaoke.
    kd.edit("BD_Customer", int(k), {"F_PAEZ_CreditLimit": 777000.0})
    engine.run()
    assert fx_row(fx, f)["credit_limit__c"] == "777000"
    # Grade and owner belong to the CRM: changed in Fxiaoke they stay; an edit in the hub is reverted.
    fx.edit("AccountObj", f, {"account_level": "1", "owner": ["FSUID_1004"]})
    engine.run()
    assert (hub_rows(hub_engine)[h]["grade"], hub_rows(hub_engine)[h]["owner"]) == ("A", "FSUID_1004")
    api.update("accounts", h, {"grade": "D"}, author="mallory")
    engine.run()
    assert hub_rows(hub_engine)[h]["grade"] == "A" and fx_row(fx, f)["account_level"] == "1"
    assert verify_audit(hub_engine, "accounts_fxiaoke_kingdee") is None


def test_owner_changes_go_through_change_owner_never_update(world) -> None:
    hub_engine, api, kd, fx, engine = world
    h, f, _k = pairs(hub_engine)[2]
    spoke = engine.spokes["fxiaoke"]
    spoke.update("accounts", f, {"owner": "FSUID_1002", "phone": "021-5"})
    assert fx.stats()["change_owners"] == 1 and fx.stats()["updates"] == 1
    assert fx.stats()["fields_written"] == 2  # the phone through update, the owner through changeOwner
    assert fx_row(fx, f)["owner"] == ["FSUID_1002"]


def test_t4_ping_pong_write_amplification_is_one(world) -> None:
    hub_engine, api, kd, fx, engine = world
    linked = pairs(hub_engine)
    changes = 0
    for rnd in range(4):
        for i, (_h, f, k) in enumerate(linked[:6]):
            if (i + rnd) % 2:
                fx.edit("AccountObj", f, {"tel": f"020-{rnd}{i}"})
            else:
                kd.edit("BD_Customer", int(k), {"FTEL": f"021-{rnd}{i}"})
            changes += 1
        engine.run()
    for _ in range(3):
        engine.run()
    # each change is written once to the one other system, and nothing comes back
    assert kd.stats()["saves"] + fx.stats()["updates"] == changes
    assert_exactly_once(hub_engine, kd, fx)


def test_t5_a_lost_answer_after_create_makes_no_duplicate(world) -> None:
    hub_engine, api, kd, fx, engine = world
    hub_id = api.create("accounts", {"name": "丢失回复有限公司", "phone": "0755-1"}, author="alice")
    fx.set_faults("lost_response=1")
    first = engine.run()
    fx.set_faults(None)
    assert first.direction("fxiaoke").failed == 1 and fx.stats()["lost_responses"] == 1
    engine.run()
    engine.run()
    named = [r for r in fx.truth("AccountObj") if r["name"] == "丢失回复有限公司"]
    assert len(named) == 1 and links(hub_engine, "fxiaoke")[hub_id] == named[0]["_id"]
    assert fx.stats()["creates"] == 1
    assert len([r for r in kd.truth("BD_Customer") if r["FName"] == "丢失回复有限公司"]) == 1


def test_t13_delete_in_fxiaoke_while_kingdee_edits_voids_and_never_resurrects(world) -> None:
    hub_engine, api, kd, fx, engine = world
    h, f, k = pairs(hub_engine)[3]
    from tests.fxiaoke.conftest import client_for as fxc

    c = fxc(fx)
    c.invalid("AccountObj", f)
    c.close()
    kd.edit("BD_Customer", int(k), {"FTEL": "edited-meanwhile"})
    for _ in range(3):
        engine.run()
    assert kd_row(kd, k)["FForbidStatus"] == "B"  # void_notify: forbidden in Kingdee
    assert h not in hub_rows(hub_engine)
    kd.edit("BD_Customer", int(k), {"FTEL": "edited-after"})
    for _ in range(2):
        engine.run()
    assert h not in hub_rows(hub_engine) and fx_row(fx, f)["life_status"] == "invalid"


def test_t15_rapid_updates_end_on_the_last_value_on_both_sides(world) -> None:
    hub_engine, api, kd, fx, engine = world
    (h1, f1, k1), (h2, f2, k2) = pairs(hub_engine)[4:6]
    for i in range(10):
        fx.edit("AccountObj", f1, {"tel": f"021-{i}"})
        kd.edit("BD_Customer", int(k2), {"FTEL": f"022-{i}"})
    engine.run()
    engine.run()
    assert kd_row(kd, k1)["FTEL"] == fx_row(fx, f1)["tel"] == "021-9"
    assert fx_row(fx, f2)["tel"] == kd_row(kd, k2)["FTEL"] == "022-9"
    assert kd.stats()["saves"] == 1 and fx.stats()["updates"] == 1  # ten edits coalesced into one write


def test_t17_drift_an_out_of_band_edit_is_found_by_reconciliation(world) -> None:
    hub_engine, api, kd, fx, engine = world
    h, f, k = pairs(hub_engine)[5]
    fx.tamper("AccountObj", f, {"tel": "021-99990000"})
    engine.run()
    assert kd_row(kd, k)["FTEL"] != "021-99990000"  # no change feed shows it
    engine.run(reconcile=True)
    assert kd_row(kd, k)["FTEL"] == "021-99990000" == hub_rows(hub_engine)[h]["phone"]


def test_the_rate_limits_held_through_every_scenario_call(world) -> None:
    hub_engine, api, kd, fx, engine = world
    for _ in range(3):
        engine.run(reconcile=True)
    stats = fx.stats()
    assert stats["throttled"] == 0 and fx.peaks()["calls_per_window"] <= 100
    assert stats["token_calls"] <= 1  # the token was cached across cycles
