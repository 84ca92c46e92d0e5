"""Dagster starts quiet: schedules of an unconfigured connection are stopped, and one rule decides.

A connection is configured when every ``vault:`` secret its config names is stored; the project file
may force ``schedules: on|off`` on the connection or the pipeline. Also: asset owners, kinds, and
metadata only where it means something.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from dagster_project.assets import build_definitions, run_metadata
from dagster_project.freshness import source_lag_s
from pipelines.project import load_project
from pipelines.runner import RunResult
from tests.helpers.vault import key_text, new_key_source

ROOT = Path(__file__).resolve().parents[2]
RUNNING, STOPPED = dg.DefaultScheduleStatus.RUNNING, dg.DefaultScheduleStatus.STOPPED


def write(tmp_path: Path, *, conn_extra: dict | None = None, pipe_extra: dict | None = None) -> Path:
    """A project with a Kingdee connection (one vault secret) and a WeCom one (three)."""
    data: dict[str, Any] = {
        "connections": {
            "kingdee": {
                "connector": "kingdee",
                "config": {
                    "base_url": "http://127.0.0.1:9",
                    "acct_id": "x",
                    "username": "demo",
                    "password": "vault:kingdee.password",
                },
                **(conn_extra or {}),
            },
            "wecom": {
                "connector": "wecom",
                "config": {
                    "corp_id": "ww1",
                    "corp_secret": "vault:wecom.corp_secret",
                    "callback_token": "vault:wecom.callback_token",
                },
            },
        },
        "pipelines": {
            "kingdee_customers": {
                "source": {"connection": "kingdee", "stream": "customers"},
                "mapping": str(ROOT / "mappings/library/kingdee_to_crm.yaml"),
                "target": {"object": "accounts"},
                **(pipe_extra or {}),
            },
            "kingdee_sales_orders": {
                "source": {"connection": "kingdee", "stream": "sales_orders"},
                "mapping": str(ROOT / "mappings/library/kingdee_to_crm.yaml"),
                "target": {"object": "sales_orders"},
            },
        },
    }
    path = tmp_path / "tongbu.yaml"
    # `schedules: on` written as a YAML user would (bare on/off), not as a Python bool
    text = (
        yaml.safe_dump(data)
        .replace("schedules: true", "schedules: on")
        .replace("schedules: false", "schedules: off")
    )
    path.write_text(text, encoding="utf-8")
    return path


def statuses(path: Path) -> dict[str, dg.DefaultScheduleStatus]:
    defs = build_definitions(load_project(path))
    return {s.name: s.default_status for s in defs.schedules or []}


def init_vault(monkeypatch: pytest.MonkeyPatch, **secrets: str) -> None:
    from tongbu.vault import Vault

    monkeypatch.setenv("TONGBU_MASTER_KEY", key_text(new_key_source()))
    Vault.initialize()
    for name, value in secrets.items():
        Vault.default().set(name.replace("__", "."), value)


def test_fresh_project_starts_no_schedule(tmp_path: Path) -> None:
    # No vault at all (a fresh clone): nothing runs, WeCom's rescan does not call the real host.
    assert statuses(write(tmp_path)) == {
        "kingdee_customers_schedule": STOPPED,
        "kingdee_sales_orders_schedule": STOPPED,
        "wecom_rescan_schedule": STOPPED,
        "drift_check_schedule": STOPPED,
        "freshness_schedule": STOPPED,
    }
    defs = build_definitions(load_project(write(tmp_path)))
    assert defs.resolve_sensor_def("tongbu_alerts").default_status == dg.DefaultSensorStatus.STOPPED


def test_schedules_start_once_the_connection_secrets_are_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # WeCom has only one of its two secrets: still off.
    init_vault(monkeypatch, kingdee__password="pw", wecom__corp_secret="s")
    got = statuses(write(tmp_path))
    assert got["kingdee_customers_schedule"] == RUNNING
    assert got["kingdee_sales_orders_schedule"] == RUNNING
    assert got["wecom_rescan_schedule"] == STOPPED
    assert got["freshness_schedule"] == RUNNING  # something syncs now: its freshness is watched


def test_project_file_switches_schedules_on_and_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    got = statuses(write(tmp_path, conn_extra={"schedules": True}))
    assert got["kingdee_customers_schedule"] == RUNNING and got["kingdee_sales_orders_schedule"] == RUNNING
    # The pipeline's own setting wins over the connection's, and over a configured connection.
    init_vault(monkeypatch, kingdee__password="pw")
    got = statuses(write(tmp_path, pipe_extra={"schedules": False}))
    assert got["kingdee_customers_schedule"] == STOPPED and got["kingdee_sales_orders_schedule"] == RUNNING


def test_unknown_schedules_value_is_a_one_line_error(tmp_path: Path) -> None:
    from pipelines.project import ProjectError

    path = write(tmp_path)
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "connector: kingdee", "connector: kingdee\n    schedules: maybe"
        )
    )
    with pytest.raises(ProjectError, match=r"connections\.kingdee\.schedules"):
        load_project(path)


def test_every_asset_has_description_owner_and_kinds(tmp_path: Path) -> None:
    defs = build_definitions(load_project(write(tmp_path, conn_extra={"owners": ["erp-team@example.com"]})))
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        spec = graph.get(key)
        assert spec.description, key
        assert spec.owners, key
        assert spec.kinds, key
    assert graph.get(dg.AssetKey(["kingdee", "customers"])).owners == ["erp-team@example.com"]
    assert "kingdee" in graph.get(dg.AssetKey(["kingdee", "customers"])).kinds
    assert graph.get(dg.AssetKey(["wecom", "external_contacts"])).owners == ["team:integrations"]


def test_jobs_run_in_one_process(tmp_path: Path) -> None:
    defs = build_definitions(load_project(write(tmp_path)))
    for name in ("sync_kingdee_customers", "sync_all", "wecom_rescan"):
        assert defs.resolve_job_def(name).executor_def.name == dg.in_process_executor.name, name


def test_metadata_has_order_lines_only_where_there_are_lines() -> None:
    result = RunResult(pipeline="p", rows_read=3, rows_written=3, cursor_after=None)
    assert "order_lines_written" not in run_metadata(result, has_lines=False)
    assert run_metadata(result, has_lines=True)["order_lines_written"] == 0
    assert "source_to_hub_lag_s" not in run_metadata(result, has_lines=False)


def test_source_lag_needs_an_offset() -> None:
    cursor = {"replication_key_value": "2024-05-01T10:00:00.000+08:00"}
    finished = 1714528800.0 + 90  # 2024-05-01T02:00:00Z + 90 s
    assert source_lag_s(cursor, finished) == 90.0
    assert source_lag_s({"replication_key_value": "2024-05-01T10:00:00"}, finished) is None
    assert source_lag_s({"replication_key_value": 17}, finished) is None
    assert source_lag_s(None, finished) is None


def test_shipped_dagster_yaml_is_a_valid_instance_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # README: `cp deploy/dagster-dev.yaml $DAGSTER_HOME/dagster.yaml`; runs are dequeued every second.
    (tmp_path / "dagster.yaml").write_text((ROOT / "deploy/dagster-dev.yaml").read_text(encoding="utf-8"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as instance:
        assert instance.run_coordinator.dequeue_interval_seconds == 1
