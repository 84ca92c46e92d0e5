"""A 暂存 (Z) draft customer is changed by the two-way sync without a refused submit/audit, and a
write whose Save applied but whose audit was refused is read back, never taken for a Kingdee edit."""

from __future__ import annotations

from pathlib import Path

import yaml

from connectors.kingdee.spoke import KingdeeSpoke
from pipelines.sync.config import build_pairs
from pipelines.sync.engine import SyncEngine
from tests.kingdee.conftest import client_for
from tongbu.hub.api import CrmApi

ROOT = Path(__file__).resolve().parents[2]
PAIR = {
    p.name: p
    for p in build_pairs(yaml.safe_load((ROOT / "mappings/library/sync/kingdee.yaml").read_text())["sync"])
}["accounts_kingdee"]


def _customer(sim, ext: str) -> dict:
    return next(t for t in sim.truth("BD_Customer") if str(t["FCUSTID"]) == str(ext))


def test_a_draft_customer_takes_crm_edits_cycle_after_cycle_with_no_conflict(hub_engine, sim) -> None:
    client = client_for(sim)
    sync = SyncEngine(hub_engine, PAIR, [KingdeeSpoke(client)])
    sync.run()
    api = CrmApi(hub_engine)
    with hub_engine.connect() as conn:
        hub_id, ext = conn.exec_driver_sql(
            "SELECT hub_id, external_id FROM record_links WHERE object = 'accounts' ORDER BY hub_id LIMIT 1"
        ).first()
    sim.tamper("BD_Customer", int(ext), {"FDocumentStatus": "Z"})
    sync.run(reconcile=True)
    for i in range(3):
        api.update("accounts", hub_id, {"address": f"草稿地址{i}"}, author="alice")
        sim.edit("BD_Customer", int(ext), {"FTEL": f"0571-8888000{i}"})
        report = sync.run()
        assert report.errors == [] and report.conflicts_opened == 0
        k = _customer(sim, ext)
        assert (k["FADDRESS"], k["FDocumentStatus"]) == (f"草稿地址{i}", "Z")
        assert api.get("accounts", hub_id)["phone"] == f"0571-8888000{i}"
    assert sync.conflicts() == []
    client.close()
