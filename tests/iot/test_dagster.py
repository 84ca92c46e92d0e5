"""The IoT Dagster parts: devices and usage assets feeding crm/devices, the three checks, the cases sensor."""

from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg
import yaml

from connectors.iot.dagster import dagster_definitions
from connectors.iot.ingest import IotWriter
from connectors.iot.payloads import Decoder
from dagster_project.assets import standalone_definitions
from dagster_project.resources import TongbuResource
from pipelines.project import load_project
from tongbu.db import get_engine


def project_file(tmp_path: Path) -> Path:
    path = tmp_path / "tongbu.yaml"
    path.write_text(yaml.safe_dump({"connections": {"iot": {"connector": "iot", "config": {
        "broker": "mqtt://127.0.0.1:1883", "silent_after_seconds": 600}}}}), encoding="utf-8")  # fmt: skip
    return path


def feed(engine) -> None:
    now = int(time.time() * 1000)
    msgs = [
        ("/sys/pk/D1/thing/event/property/post", {"id": "1", "params": {"RunningTime": {"value": 5.0, "time": now}}}),
        ("/sys/pk/D2/thing/event/property/post", {"id": "1", "params": {"RunningTime": {"value": 9.0, "time": now - 3_600_000}}}),
        ("/sys/pk/D2/thing/event/property/post", {"id": "2", "params": {"RunningTime": {"value": 9.0, "time": now + 86_400_000}}}),
        ("/sys/pk/D1/thing/event/Fault/post", {"id": "2", "params": {"value": {"ErrorCode": 2}, "time": now}}),
    ]  # fmt: skip
    items = [x for t, p in msgs for x in Decoder().decode(t, json.dumps(p).encode())]
    with engine.begin() as conn:
        IotWriter(source_system="iot").write(
            conn,
            [i for i in items if hasattr(i, "dedup_key")],
            [i for i in items if not hasattr(i, "dedup_key")],
        )


def test_parts_assets_checks_and_sensor(tmp_path: Path) -> None:
    path = project_file(tmp_path)
    project = load_project(path)
    parts = dagster_definitions(project)
    assert {a.key.to_user_string() for a in parts.assets} == {"iot/devices", "iot/usage_daily"}
    assert parts.hub_feeds == {"devices": [dg.AssetKey(["iot", "devices"])]}
    graph = standalone_definitions(project, "iot").resolve_asset_graph()
    assert dg.AssetKey(["iot", "devices"]) in graph.get(dg.AssetKey(["crm", "devices"])).parent_keys
    feed(get_engine())
    resource = TongbuResource(project_file=str(path))
    result = dg.materialize([*parts.assets, *parts.asset_checks], resources={"tongbu": resource})
    assert result.success
    [mat] = result.asset_materializations_for_node("iot__devices")
    md = {k: v.value for k, v in mat.metadata.items()}
    assert (md["devices"], md["unlinked"], md["newly_offline"]) == (2, 2, 1)  # D2 silent for an hour
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks["silent_devices"].passed and checks["silent_devices"].metadata["silent"].value == 1
    assert not checks["unlinked_devices"].passed
    assert checks["quarantined_messages"].metadata["quarantined_24h"].value == 1
    [sensor] = parts.sensors
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources={"tongbu": resource})
        out = sensor.evaluate_tick(ctx)
        assert [e.metadata["status"].value for e in out.asset_events] == ["open"]
        ctx2 = dg.build_sensor_context(instance=instance, cursor=out.cursor, resources={"tongbu": resource})
        again = sensor.evaluate_tick(ctx2)
        assert not again.asset_events and again.skip_message == "no case changed"
