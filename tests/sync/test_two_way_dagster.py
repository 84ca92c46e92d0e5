"""Dagster for two-way syncs: an asset per sync with per-direction metadata and three checks,
materialised in process against the Kingdee simulator; schedules from the project file."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from connectors.kingdee.simulator import KingdeeSimulator
from dagster_project.assets import build_definitions
from tests.sync.project_fixture import write_sync_project
from tongbu.db import get_engine
from tongbu.hub.api import CrmApi
from tongbu.hub.models import RecordLink


@pytest.fixture
def defs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with KingdeeSimulator(records=5, orders=2, receivables=0, seed=3) as sim:
        monkeypatch.setenv("TONGBU_PROJECT", str(write_sync_project(tmp_path, sim, monkeypatch)))
        yield build_definitions(), sim


def _materialize(defs: dg.Definitions, name: str, reconcile: bool = False):
    job = defs.resolve_job_def(f"two_way_{name}")
    config = {"ops": {f"sync__{name}": {"config": {"reconcile": reconcile}}}}
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), run_config=config)
    assert result.success
    (mat,) = result.asset_materializations_for_node(f"sync__{name}")
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    return {k: v.value for k, v in mat.metadata.items()}, checks


def test_assets_checks_and_schedules_come_from_the_project(defs) -> None:
    definitions, _ = defs
    graph = definitions.resolve_asset_graph()
    key = dg.AssetKey(["sync", "accounts_kingdee"])
    assert key in graph.get(dg.AssetKey(["crm", "accounts"])).parent_keys
    assert {k.name for k in graph.asset_check_keys if k.asset_key == key} == {
        "open_conflicts",
        "drift",
        "write_amplification",
    }
    cycle = definitions.resolve_schedule_def("accounts_kingdee_two_way_schedule")
    assert cycle.cron_schedule == "*/15 * * * *"
    nightly = definitions.resolve_schedule_def("sales_orders_kingdee_reconcile_schedule")
    assert nightly.default_status == dg.DefaultScheduleStatus.STOPPED


def test_a_cycle_reports_both_directions_and_the_checks(defs) -> None:
    definitions, sim = defs
    meta, checks = _materialize(definitions, "accounts_kingdee")
    assert meta["hub_created"] == 5 and meta["kingdee_failed"] == 0
    assert meta["write_amplification"] == 1.0 and all(c.passed for c in checks.values())

    engine = get_engine()
    t = RecordLink.__table__
    with engine.connect() as conn:
        (hub_id, ext), (hub_id2, ext2) = conn.execute(
            t.select().with_only_columns(t.c.hub_id, t.c.external_id).order_by(t.c.hub_id).limit(2)
        ).all()
    CrmApi(engine).update("accounts", hub_id, {"name": "CRM改名"}, author="alice")  # a true conflict
    sim.edit("BD_Customer", int(ext), {"FName": "ERP改名"})
    CrmApi(engine).update("accounts", hub_id2, {"phone": "021-999"}, author="alice")  # one write
    meta, checks = _materialize(definitions, "accounts_kingdee")
    assert meta["kingdee_updated"] == 1 and meta["kingdee_writes"] == 1 and meta["kingdee_conflicted"] == 1
    assert meta["open_conflicts"] == 1
    assert (
        not checks["open_conflicts"].passed
        and checks["open_conflicts"].severity == dg.AssetCheckSeverity.WARN
    )
    assert checks["write_amplification"].passed

    # an out-of-band edit in the ERP's own store: no timestamp moves, no change feed shows it
    sim.tamper("BD_Customer", int(ext2), {"FTEL": "tampered"})
    meta, checks = _materialize(definitions, "accounts_kingdee", reconcile=True)
    assert meta["mode"] == "reconcile" and meta["drift"] == 1
    assert not checks["drift"].passed and checks["drift"].severity == dg.AssetCheckSeverity.WARN
