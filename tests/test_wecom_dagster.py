"""Dagster parts for WeCom: rescan asset upstream of the hub, checks, schedule; metadata an operator needs."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from connectors.wecom.dagster import dagster_definitions as wecom_definitions
from connectors.wecom.simulator import WeComSimulator
from dagster_project.assets import standalone_definitions
from dagster_project.resources import TongbuResource
from pipelines.project import load_project

pytestmark = pytest.mark.wecom_sim(records=400, seed=51)  # the `sim` fixture: tests/conftest.py


def project_file(tmp_path: Path, sim: WeComSimulator) -> Path:
    cred = sim.credentials()
    path = tmp_path / "tongbu.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "connections": {
                    "wecom": {
                        "connector": "wecom",
                        "config": {
                            "corp_id": cred["corp_id"],
                            "corp_secret": cred["corp_secret"],
                            "base_url": sim.base_url,
                            "rescan_schedule": "30 */4 * * *",
                        },
                    }
                }
            },
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    return path


def test_parts_and_schedule(tmp_path: Path, sim: WeComSimulator) -> None:
    parts = wecom_definitions(load_project(project_file(tmp_path, sim)))
    keys = {a.key.to_user_string() for a in parts.assets}
    assert keys == {
        "wecom/external_contacts",
        "wecom/corp_tags",
        "wecom/group_chats",
        "wecom/contact_grade_tags",
    }
    assert parts.hub_feeds == {
        obj: [dg.AssetKey(["wecom", "external_contacts"])] for obj in ("contacts", "accounts", "activities")
    }
    [schedule] = parts.schedules
    assert schedule.cron_schedule == "30 */4 * * *" and schedule.name == "wecom_rescan_schedule"
    defs = standalone_definitions(load_project(project_file(tmp_path, sim)), "wecom")
    graph = defs.resolve_asset_graph()
    assert (
        dg.AssetKey(["wecom", "external_contacts"]) in graph.get(dg.AssetKey(["crm", "contacts"])).parent_keys
    )
    assert len(list(graph.asset_check_keys)) == 2


def test_materialising_the_rescan_and_checks(tmp_path: Path, sim: WeComSimulator) -> None:
    path = project_file(tmp_path, sim)
    parts = wecom_definitions(load_project(path))
    rescan = next(a for a in parts.assets if a.key == dg.AssetKey(["wecom", "external_contacts"]))
    result = dg.materialize(
        [rescan, *parts.asset_checks], resources={"tongbu": TongbuResource(project_file=str(path))}
    )
    assert result.success
    [mat] = result.asset_materializations_for_node("wecom__external_contacts")
    md = {k: v.value for k, v in mat.metadata.items()}
    assert md["contacts_seen"] == 400 and md["rows_written"] == 400 and md["scan_complete"] is True
    assert md["rows_deleted"] == 0 and md["api_calls"]["externalcontact/batch/get_by_user"] >= 1
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["hub_matches_last_rescan"].passed and checks["event_path_healthy"].passed
