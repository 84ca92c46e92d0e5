"""The hub ⇄ Fxiaoke opportunities pair: key status changes (the stage) reach the other side within
one cycle both ways, the stage-driven win rate comes back derived and is never echoed, a CRM-created
opportunity is created in Fxiaoke once."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sqlalchemy import select, text

from connectors.fxiaoke.simulator import FxiaokeSimulator
from connectors.fxiaoke.spoke import FxiaokeSpoke
from pipelines.sync.config import build_pairs
from pipelines.sync.engine import SyncEngine
from tests.fxiaoke.conftest import client_for
from tongbu.hub.api import CrmApi
from tongbu.hub.models import RecordLink

ROOT = Path(__file__).resolve().parents[2]
PAIRS = {
    p.name: p
    for p in build_pairs(yaml.safe_load((ROOT / "mappings/library/sync/fxiaoke.yaml").read_text())["sync"])
}


@pytest.fixture
def world(hub_engine):
    with FxiaokeSimulator(records=6, seed=5, contacts=0, leads=0, orders=0, payments=0) as fx:
        client = client_for(fx)
        engine = SyncEngine(hub_engine, PAIRS["opportunities_fxiaoke"], [FxiaokeSpoke(client)])
        engine.run()
        fx.reset_stats()
        yield hub_engine, CrmApi(hub_engine), fx, engine
        client.close()


def linked(hub_engine) -> dict[int, str]:
    t = RecordLink.__table__
    with hub_engine.connect() as conn:
        rows = conn.execute(
            select(t.c.hub_id, t.c.external_id).where(t.c.object == "opportunities", t.c.state == "linked")
        )
        return {r.hub_id: r.external_id for r in rows}


def hub(hub_engine, hub_id: int) -> dict:
    with hub_engine.connect() as conn:
        return dict(
            conn.execute(text("SELECT * FROM opportunities WHERE id = :i"), {"i": hub_id}).mappings().one()
        )


def opp(fx, rid: str) -> dict:
    return next(r for r in fx.truth("NewOpportunityObj") if r["_id"] == rid)


def test_stage_changes_cross_in_one_cycle_both_ways_and_the_win_rate_is_not_echoed(world) -> None:
    hub_engine, api, fx, engine = world
    assert len(linked(hub_engine)) == 6
    (h1, f1), (h2, f2) = sorted(linked(hub_engine).items())[:2]
    fx.edit("NewOpportunityObj", f1, {"sales_stage": "5"})  # won, in the CRM's UI
    api.update("opportunities", h2, {"stage": "negotiation"}, author="alice")  # in the hub
    engine.run()
    assert (hub(hub_engine, h1)["stage"], float(hub(hub_engine, h1)["win_rate"])) == ("won", 100.0)
    assert (opp(fx, f2)["sales_stage"], opp(fx, f2)["probability"]) == ("4", "80")
    engine.run()
    engine.run()
    assert float(hub(hub_engine, h2)["win_rate"]) == 80.0  # derived by Fxiaoke, came back
    assert fx.stats()["updates"] == 1  # one write for one real change; nothing echoed


def test_a_crm_opportunity_is_created_in_fxiaoke_once(world) -> None:
    hub_engine, api, fx, engine = world
    account = fx.truth("AccountObj")[0]["_id"]
    hub_id = api.create(
        "opportunities",
        {"name": "新商机-产线改造", "account_ref": account, "stage": "proposal", "amount": "120000"},
        author="alice",
    )
    engine.run()
    engine.run()
    rid = linked(hub_engine)[hub_id]
    row = opp(fx, rid)
    assert (row["name"], row["sales_stage"], row["amount"], row["probability"]) == (
        "新商机-产线改造",
        "3",
        "120000",
        "50",
    )
    assert row["tongbu_key__c"] and fx.stats()["creates"] == 1
