"""The two-way engine against an in-memory ERP: the acceptance scenarios at small scale, on both databases."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from memory_spoke import MemorySpoke
from sqlalchemy import func, select, text

from pipelines.sync.engine import SyncEngine, SyncPair, verify_audit
from pipelines.sync.models import SyncConflict
from pipelines.sync.policy import FieldRule, ObjectPolicy, Survivorship
from tongbu.canon import canon
from tongbu.hub.api import CrmApi
from tongbu.hub.models import RecordLink

FIELDS = ("name", "phone", "address", "grade", "industry", "credit_code", "credit_limit")


def account_pair(**extra: FieldRule) -> SyncPair:
    rules = [FieldRule("credit_limit", Survivorship.OWNER, owner="erp"), *extra.values()]
    return SyncPair(
        name="accounts_erp",
        object="accounts",
        fields=FIELDS,
        policy=ObjectPolicy.build("accounts", rules, systems=("erp",)),
        match_on=("credit_code",),
        create_in=frozenset({"erp"}),
    )


def uscc(i: int) -> str:
    return f"91310000{i:09d}X"[:18]


@pytest.fixture
def world(hub_engine):
    erp = MemorySpoke("erp")
    engine = SyncEngine(hub_engine, account_pair(), [erp])
    return hub_engine, CrmApi(hub_engine), erp, engine


def erp_equals_hub(hub_engine, erp: MemorySpoke) -> None:
    links = {}
    with hub_engine.connect() as conn:
        for row in conn.execute(
            select(RecordLink.__table__).where(RecordLink.__table__.c.system == "erp")
        ).mappings():
            links[row["hub_id"]] = row["external_id"]
        rows = conn.execute(text("SELECT * FROM accounts WHERE deleted_at IS NULL")).mappings().all()
    assert len(rows) == len(erp.live()) == len(links)
    for row in rows:
        erp_values = erp.records[links[row["id"]]].values
        for f in FIELDS:
            hub_v, erp_v = canon(row[f]), canon(erp_values.get(f))
            assert hub_v == erp_v, (f, hub_v, erp_v)


def test_crm_records_reach_the_erp_and_erp_records_reach_the_crm(world) -> None:
    hub_engine, api, erp, engine = world
    for i in range(20):
        api.create(
            "accounts", {"name": f"客户{i}", "credit_code": uscc(i), "phone": f"021-{i}"}, author="alice"
        )
    for i in range(20, 30):
        erp.user_create({"name": f"ERP客户{i}", "credit_code": uscc(i), "credit_limit": "5000"})
    report = engine.run()
    assert report.direction("erp").created == 20
    assert report.direction("hub").created == 10
    erp_equals_hub(hub_engine, erp)
    # The ERP's echo of our 20 creates comes back in its change feed: nothing is written anywhere.
    again = engine.run()
    assert again.direction("erp").as_dict() | {"calls": 0, "unchanged": 0} == {
        "created": 0,
        "updated": 0,
        "unchanged": 0,
        "conflicted": 0,
        "deleted": 0,
        "failed": 0,
        "calls": 0,
    }
    assert again.direction("hub").updated == 0 and again.conflicts_opened == 0


def test_disjoint_edits_on_both_sides_lose_nothing(world) -> None:
    hub_engine, api, erp, engine = world
    ids = [
        api.create("accounts", {"name": f"客户{i}", "credit_code": uscc(i)}, author="a") for i in range(50)
    ]
    engine.run()
    ext = _links(hub_engine)
    for i, hub_id in enumerate(ids):
        api.update("accounts", hub_id, {"name": f"新客户{i}", "phone": f"138{i:08d}"}, author="alice")
        erp.user_edit(ext[hub_id], address=f"地址{i}", grade="B")
    report = engine.run()
    assert report.conflicts_opened == 0
    assert report.direction("erp").updated == 50 and report.direction("hub").updated == 50
    erp_equals_hub(hub_engine, erp)
    assert engine.run().direction("erp").updated == 0  # converged: the second cycle writes nothing


def test_same_field_edited_on_both_sides_goes_to_review_and_is_resolved(world) -> None:
    hub_engine, api, erp, engine = world
    hub_id = api.create("accounts", {"name": "甲", "credit_code": uscc(1), "phone": "1"}, author="a")
    engine.run()
    ext = _links(hub_engine)[hub_id]
    api.update("accounts", hub_id, {"phone": "crm-phone"}, author="alice")
    erp.user_edit(ext, author="bob", phone="erp-phone")
    report = engine.run()
    assert report.conflicts_opened == 1
    with hub_engine.connect() as conn:
        c = conn.execute(select(SyncConflict.__table__)).mappings().one()
    assert (c["field"], c["base"], c["hub_value"], c["system_value"]) == (
        "phone",
        "1",
        "crm-phone",
        "erp-phone",
    )
    assert (c["hub_author"], c["system_author"], c["status"]) == ("alice", "bob", "open")
    assert erp.records[ext].values["phone"] == "erp-phone"  # no silent overwrite either way
    assert api.get("accounts", hub_id)["phone"] == "crm-phone"
    assert engine.run().conflicts_opened == 0  # seen again: still the one open conflict
    assert erp.records[ext].values["phone"] == "erp-phone"

    [open_conflict] = engine.conflicts()
    assert engine.resolve(open_conflict["id"], "system", by="carol") == "erp-phone"
    report = engine.run()
    assert api.get("accounts", hub_id)["phone"] == "erp-phone"
    assert report.direction("erp").updated == 0  # the ERP already holds the decided value
    assert engine.conflicts() == [] and engine.conflicts("resolved")[0]["resolved_by"] == "carol"
    with pytest.raises(ValueError, match="already resolved by carol"):
        engine.resolve(open_conflict["id"], "hub", by="dave")


def test_a_conflict_resolved_with_a_typed_value_reaches_both_sides(world) -> None:
    hub_engine, api, erp, engine = world
    hub_id = api.create("accounts", {"name": "甲", "credit_code": uscc(1), "phone": "1"}, author="a")
    engine.run()
    ext = _links(hub_engine)[hub_id]
    api.update("accounts", hub_id, {"phone": "crm"}, author="alice")
    erp.user_edit(ext, phone="erp")
    engine.run()
    [c] = engine.conflicts()
    engine.resolve(c["id"], "value", by="carol", value="021-12345678")
    engine.run()
    assert api.get("accounts", hub_id)["phone"] == "021-12345678"
    assert erp.records[ext].values["phone"] == "021-12345678"
    assert engine.run().direction("erp").updated == 0


def test_an_erp_owned_field_edited_in_the_crm_is_reverted_with_an_audit_entry(world) -> None:
    hub_engine, api, erp, engine = world
    ext = erp.user_create({"name": "乙", "credit_code": uscc(2), "credit_limit": "1000"})
    engine.run()
    hub_id = next(iter(_links(hub_engine)))
    api.update("accounts", hub_id, {"credit_limit": Decimal("999999")}, author="mallory")
    report = engine.run()
    assert report.reverted == 1
    assert api.get("accounts", hub_id)["credit_limit"] == Decimal("1000")
    assert erp.records[ext].values["credit_limit"] == "1000" and report.direction("erp").updated == 0
    with hub_engine.connect() as conn:
        kinds = [r[0] for r in conn.execute(text("SELECT kind FROM sync_audit WHERE field = 'credit_limit'"))]
    assert "reverted" in kinds
    assert verify_audit(hub_engine, "accounts_erp") is None


def test_a_direct_database_edit_in_the_hub_is_found_and_sent(world) -> None:
    hub_engine, api, erp, engine = world
    hub_id = api.create("accounts", {"name": "丙", "credit_code": uscc(3)}, author="a")
    engine.run()
    with hub_engine.begin() as conn:  # another application sharing the database, no API, no timestamp
        conn.execute(text("UPDATE accounts SET industry = '制造业' WHERE id = :i"), {"i": hub_id})
    report = engine.run()
    assert report.direction("erp").updated == 1
    assert erp.records[_links(hub_engine)[hub_id]].values["industry"] == "制造业"


def test_ping_pong_write_amplification_is_one_and_nothing_goes_back_to_its_origin(hub_engine) -> None:
    rng = random.Random(11)
    erp = MemorySpoke(
        "erp", derived=lambda v: {"grade": "VIP" if (v.get("credit_limit") or "0") > "5" else "STD"}
    )
    rules = [
        FieldRule("credit_limit", Survivorship.OWNER, owner="erp"),
        FieldRule("grade", Survivorship.OWNER, owner="erp"),  # derived by the ERP: never sent to it
    ]
    pair = SyncPair(
        "p",
        "accounts",
        FIELDS,
        ObjectPolicy.build("accounts", rules, systems=("erp",)),
        ("credit_code",),
        frozenset({"erp"}),
    )
    engine = SyncEngine(hub_engine, pair, [erp])
    api = CrmApi(hub_engine)
    ids = [api.create("accounts", {"name": f"n{i}", "credit_code": uscc(i)}, author="a") for i in range(40)]
    engine.run()
    ext = _links(hub_engine)
    writes_before = len(erp.writes)
    crm_edits = erp_edits = 0
    for _cycle in range(5):
        for _ in range(40):
            hub_id = rng.choice(ids)
            if rng.random() < 0.5:
                api.update("accounts", hub_id, {"address": f"a{rng.random():.6f}"}, author="alice")
                crm_edits += 1
            else:
                erp.user_edit(ext[hub_id], phone=f"p{rng.random():.6f}", credit_limit=str(rng.randint(0, 9)))
                erp_edits += 1
        engine.run()
    engine.run()
    to_erp = erp.writes[writes_before:]
    # Every write to the ERP carries only CRM-side fields: nothing that came from the ERP goes back.
    assert all(set(values) <= {"address"} for _, _, values in to_erp)
    # At most one write per entity per cycle, and never more writes than real CRM edits.
    assert len(to_erp) <= crm_edits
    erp_equals_hub(hub_engine, erp)


def test_a_lost_create_response_never_duplicates(hub_engine) -> None:
    # No identity keys: only the recorded intent can tell that the create already happened.
    erp = MemorySpoke("erp")
    pair = account_pair()
    engine = SyncEngine(
        hub_engine, SyncPair(pair.name, pair.object, pair.fields, pair.policy, (), pair.create_in), [erp]
    )
    api = CrmApi(hub_engine)
    api.create("accounts", {"name": "丁", "credit_code": uscc(4)}, author="a")
    erp.lose_create_responses = 1
    report = engine.run()
    assert report.direction("erp").failed == 1 and len(erp.records) == 1  # applied, answer lost
    engine.run()
    assert len(erp.records) == 1 and len(_links(hub_engine)) == 1
    erp_equals_hub(hub_engine, erp)


def test_the_same_company_created_on_both_sides_is_one_record_everywhere(world) -> None:
    hub_engine, api, erp, engine = world
    api.create("accounts", {"name": "戊公司", "credit_code": uscc(5)}, author="a")
    erp.user_create({"name": "戊公司", "credit_code": uscc(5)})
    engine.run()
    engine.run()
    with hub_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM accounts")).scalar_one() == 1
    assert len(erp.records) == 1 and len(_links(hub_engine)) == 1


def test_delete_in_the_erp_wins_over_a_crm_edit_and_nothing_resurrects(world) -> None:
    hub_engine, api, erp, engine = world
    hub_id = api.create("accounts", {"name": "己", "credit_code": uscc(6)}, author="a")
    engine.run()
    ext = _links(hub_engine)[hub_id]
    erp.user_delete(ext)
    api.update("accounts", hub_id, {"phone": "edited meanwhile"}, author="alice")
    engine.run()
    assert api.get("accounts", hub_id)["deleted_at"] is not None
    for _ in range(3):
        engine.run()
    assert api.get("accounts", hub_id)["deleted_at"] is not None
    assert erp.records[ext].deleted and not erp.live()


def test_rapid_updates_end_on_the_last_value(world) -> None:
    hub_engine, api, erp, engine = world
    hub_id = api.create("accounts", {"name": "庚", "credit_code": uscc(7)}, author="a")
    engine.run()
    for i in range(10):
        api.update("accounts", hub_id, {"phone": f"v{i}"}, author="alice")
    engine.run()
    assert erp.records[_links(hub_engine)[hub_id]].values["phone"] == "v9"


def test_reconciliation_finds_out_of_band_edits(world) -> None:
    hub_engine, api, erp, engine = world
    for i in range(100):
        erp.user_create({"name": f"客户{i}", "credit_code": uscc(i), "phone": "0"})
    engine.run()
    changed = random.Random(3).sample(sorted(erp.records), 5)
    for ext in changed:
        erp.out_of_band(ext, phone="changed in the database")
    assert engine.run().direction("hub").updated == 0  # no feed shows them
    report = engine.run(reconcile=True)
    assert report.direction("hub").updated == 5
    erp_equals_hub(hub_engine, erp)


def test_dry_run_writes_nothing_and_shows_both_directions(world) -> None:
    hub_engine, api, erp, engine = world
    api.create("accounts", {"name": "辛", "credit_code": uscc(8)}, author="a")
    erp.user_create({"name": "壬", "credit_code": uscc(9)})
    report = engine.run(dry_run=True)
    assert {(p.system, p.op) for p in report.planned} == {("erp", "create"), ("hub", "create")}
    assert len(erp.records) == 1 and not erp.writes
    with hub_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(RecordLink.__table__)).scalar_one() == 0


def test_a_tampered_audit_row_is_detected(world) -> None:
    hub_engine, api, erp, engine = world
    api.create("accounts", {"name": "癸", "credit_code": uscc(10)}, author="a")
    engine.run()
    assert verify_audit(hub_engine, "accounts_erp") is None
    with hub_engine.begin() as conn:
        first = conn.execute(text("SELECT min(id) FROM sync_audit")).scalar_one()
        conn.execute(text("UPDATE sync_audit SET detail = 'forged' WHERE id = :i"), {"i": first})
    assert verify_audit(hub_engine, "accounts_erp") == first


def _links(hub_engine) -> dict[int, str]:
    t = RecordLink.__table__
    with hub_engine.connect() as conn:
        return {
            r.hub_id: r.external_id
            for r in conn.execute(select(t.c.hub_id, t.c.external_id).where(t.c.system == "erp"))
        }
