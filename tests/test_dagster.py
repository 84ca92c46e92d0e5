"""Dagster definitions built from a project: assets, checks, schedules and materialisation metadata."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml

from dagster_project.assets import build_definitions

ROOT = Path(__file__).resolve().parent.parent


def write_project(tmp_path: Path, records: int) -> Path:
    path = tmp_path / "tongbu.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "connections": {"synth": {"connector": "synthetic", "config": {"records": records}}},
                "pipelines": {
                    "synth_accounts": {
                        "source": {"connection": "synth", "stream": "records"},
                        "mapping": str(ROOT / "mappings/library/synthetic_to_crm.yaml"),
                        "target": {"object": "accounts"},
                        "schedule": "*/15 * * * *",
                    }
                },
            }
        ),
        encoding="utf-8",
    )
    return path


def test_definitions_have_assets_checks_and_schedules(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TONGBU_PROJECT", str(write_project(tmp_path, 10)))
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {"synth/records", "crm/accounts"}
    assert dg.AssetKey(["synth", "records"]) in graph.get(dg.AssetKey(["crm", "accounts"])).parent_keys
    schedule = defs.resolve_schedule_def("synth_accounts_schedule")
    assert schedule.cron_schedule == "*/15 * * * *"
    # the reconciliation check and the freshness check (dagster_project/freshness.py)
    assert {k.name for k in graph.asset_check_keys} == {"hub_matches_source", "fresh"}


def test_unscheduled_pipeline_still_has_its_job(tmp_path: Path, monkeypatch) -> None:
    path = write_project(tmp_path, 10)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["pipelines"]["synth_accounts"]["schedule"] = None
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    monkeypatch.setenv("TONGBU_PROJECT", str(path))
    defs = build_definitions()
    assert not list(defs.schedules or [])
    # Run on demand: the same job the schedule would launch.
    result = defs.resolve_job_def("sync_synth_accounts").execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success


def test_materialising_runs_the_sync_and_records_metadata(tmp_path: Path, monkeypatch) -> None:
    project = write_project(tmp_path, 1200)
    monkeypatch.setenv("TONGBU_PROJECT", str(project))
    defs = build_definitions()
    # The job the schedule launches: the stream asset, then the hub object downstream of it.
    result = defs.resolve_job_def("sync_synth_accounts").execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    [sync] = [m for m in result.asset_materializations_for_node("synth__records")]
    md = {k: v.value for k, v in sync.metadata.items()}
    assert md["rows_read"] == 1200 and md["rows_written"] == 1200 and md["rows_quarantined"] == 0
    assert md["cursor_before"] == {} and md["cursor_after"]["replication_key_value"].startswith(
        "2024-01-01T00:19:59"
    )
    assert md["duration_s"] >= 0
    [hub] = result.asset_materializations_for_node("crm__accounts")
    assert hub.metadata["rows_by_source_system"].value == {"synth": 1200}


def test_asset_check_reconciles_hub_with_source(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TONGBU_PROJECT", str(write_project(tmp_path, 300)))
    defs = build_definitions()
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    check = checks["hub_matches_source"]
    assert checks["fresh"].passed  # it has just synced
    assert (
        check.passed
        and check.metadata["hub_count"].value == 300
        and check.metadata["source_count"].value == 300
    )
