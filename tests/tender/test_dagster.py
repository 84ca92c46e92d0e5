"""The tender feed in Dagster: the asset with its checks, the schedule, and the alert sensor."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import yaml

from connectors.tender.history import SubscriptionSpec, TenderHistory
from connectors.tender.simulator import TenderSimulator
from dagster_project.assets import build_definitions
from dagster_project.resources import TongbuResource
from dagster_project.tenders import tenders_definitions as dagster_definitions
from pipelines.project import load_project
from tests.helpers.smtp import SmtpServer
from tongbu.db import get_engine


def project_file(tmp_path: Path, sim: TenderSimulator, smtp: SmtpServer | None = None) -> Path:
    doc = {
        "connections": {
            "tender": {
                "connector": "tender",
                "config": sim.tap_config(request_interval=0, antibot_backoff=0.1),
            }
        },
        "tenders": {"connection": "tender", "schedule": "*/10 * * * *", "alert_interval": 15},
    }
    if smtp is not None:
        doc["alerts"] = {
            "channels": {
                "mail": {"kind": "email", "host": "127.0.0.1", "port": smtp.port, "sender": "t@example.com"}
            }
        }
    path = tmp_path / "tongbu.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def test_parts_asset_checks_and_schedule(tmp_path: Path) -> None:
    with TenderSimulator(records=45, seed=5, faults="antibot_per_min=15,antibot_window=0.5") as sim:
        path = project_file(tmp_path, sim)
        parts = dagster_definitions(load_project(path))
        [asset] = parts.assets
        assert asset.key == dg.AssetKey(["tender", "tender_feed"])
        assert set(parts.hub_feeds) == {"opportunities", "leads"}
        [schedule] = parts.schedules
        assert schedule.cron_schedule == "*/10 * * * *"
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
        [sensor] = parts.sensors
        assert sensor.minimum_interval_seconds == 15
        defs = build_definitions(load_project(path))
        graph = defs.resolve_asset_graph()
        assert asset.key in graph.get(dg.AssetKey(["crm", "leads"])).parent_keys
        result = dg.materialize([asset], resources={"tongbu": TongbuResource(project_file=str(path))})
        assert result.success
        [mat] = result.asset_materializations_for_node("tender__tender_feed")
        md = {k: v.value for k, v in mat.metadata.items()}
        assert md["new"] == md["listed"] == md["parsed"] == 45 and md["antibot"] > 0
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert checks["parsed_vs_listed"].passed
        assert checks["antibot_backoffs"].metadata["antibot_pages"].value == md["antibot"]


def test_the_sensor_alerts_a_new_notice_within_its_tick(tmp_path: Path, smtp_server: SmtpServer) -> None:
    with TenderSimulator(records=30, seed=5) as sim:
        path = project_file(tmp_path, sim, smtp_server)
        TenderHistory(get_engine()).subscribe(
            "all", "ops@example.com", SubscriptionSpec.from_dict({}), {"mail": ["ops@example.com"]}
        )
        [sensor] = dagster_definitions(load_project(path)).sensors
        resources = {"tongbu": TongbuResource(project_file=str(path))}
        with dg.build_sensor_context(resources=resources) as ctx:
            first = sensor(ctx)
        assert "30 new notice(s)" in str(first.skip_message)
        assert smtp_server.wait(30)
        published = time.time()
        sim.publish(1)
        with dg.build_sensor_context(resources=resources) as ctx:
            second = sensor(ctx)
        assert "1 new notice(s), 1 match(es); alerts: 1 sent" in str(second.skip_message)
        assert smtp_server.wait(31)
        assert time.time() - published < 60  # one tick (15 s apart) plus this poll, well inside a minute
        with dg.build_sensor_context(resources=resources) as ctx:
            third = sensor(ctx)
        assert "0 new notice(s)" in str(third.skip_message) and len(smtp_server.messages) == 31
