"""Freshness from the schedule, and alerts: a failed run, a failed check and an open conflict reach a
real local SMTP server and the simulated WeCom group robot, once per event, with secrets masked."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
import yaml

from connectors.wecom.simulator import WeComSimulator
from dagster_project.assets import build_definitions
from dagster_project.freshness import evaluate, schedule_interval_s
from dagster_project.resources import TongbuResource
from pipelines.project import load_project
from pipelines.sync.models import SyncConflict
from tests.helpers.smtp import SmtpServer
from tests.helpers.vault import canary
from tongbu.db import get_engine
from tongbu.state.models import SyncRun
from tongbu.vault import register_secret

pytestmark = pytest.mark.wecom_sim(records=20, seed=3)
ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


def test_schedule_interval_is_the_longest_gap() -> None:
    assert schedule_interval_s("*/15 * * * *", NOW) == 900
    assert schedule_interval_s("0 9 * * 1-5", NOW) == 3 * 86_400  # Friday 09:00 → Monday 09:00
    assert schedule_interval_s("0 0 1 * *", NOW) == 31 * 86_400  # October 1 → November 1 (max gap)


def _run(engine: Any, pipeline: str, finished: dt.datetime, **kw: Any) -> None:
    with engine.begin() as conn:
        conn.execute(
            SyncRun.__table__.insert().values(
                tenant_id="default",
                pipeline=pipeline,
                status="success",
                started_at=finished,
                finished_at=finished,
                **kw,
            )
        )


def test_freshness_check_goes_red_beyond_two_intervals(tmp_path: Path) -> None:
    project = load_project(project_file(tmp_path, channels={}))
    spec = project.pipeline("synth_accounts")  # every 15 minutes
    engine = get_engine()
    never = evaluate(engine, "default", spec, NOW)
    assert not never.passed and never.severity == dg.AssetCheckSeverity.WARN
    cursor = {"replication_key": "updated_at", "replication_key_value": "2026-12-04T19:40:00+08:00"}
    _run(engine, "synth_accounts", NOW - dt.timedelta(minutes=20), rows_written=5, cursor_after=cursor)
    fresh = evaluate(engine, "default", spec, NOW)
    assert fresh.passed and fresh.metadata["age_s"].value == 1200
    # newest change written 11:40 UTC, that run ended 11:40 UTC: the change took 0 s … then 5 min
    assert fresh.metadata["source_to_hub_lag_s"].value == 0
    stale = evaluate(engine, "default", spec, NOW + dt.timedelta(minutes=15))
    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.ERROR
    assert "stale" in stale.description and stale.metadata["allowed_age_s"].value == 1800


def project_file(tmp_path: Path, *, channels: dict, mapping: str | None = None) -> Path:
    path = tmp_path / "tongbu.yaml"
    doc = {
        "connections": {"synth": {"connector": "synthetic", "config": {"records": 20}}},
        "pipelines": {
            "synth_accounts": {
                "source": {"connection": "synth", "stream": "records"},
                "mapping": mapping or str(ROOT / "mappings/library/synthetic_to_crm.yaml"),
                "target": {"object": "accounts"},
                "schedule": "*/15 * * * *",
            }
        },
        "alerts": {"channels": channels},
    }
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def tick(defs: dg.Definitions, instance: Any, path: Path, cursor: str | None) -> str | None:
    sensor = defs.resolve_sensor_def("tongbu_alerts")
    ctx = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"tongbu": TongbuResource(project_file=str(path))}
    )
    sensor(ctx)
    return ctx.cursor


def test_failures_and_conflicts_are_alerted_once_by_mail_and_wecom_robot(
    tmp_path: Path, sim: WeComSimulator, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = canary("smtp-token")
    register_secret(secret)  # a value the vault handed out: it must not leave in an alert
    channels = {
        "ops_mail": {
            "kind": "email",
            "host": "127.0.0.1",
            "port": smtp_server.port,
            "sender": "tongbu@example.com",
            "to": ["ops@example.com"],
        },
        "ops_robot": {
            "kind": "wecom_robot",
            "webhook_url": f"{sim.base_url}/cgi-bin/webhook/send",
            "key": sim.credentials()["robot_key"],
        },
    }
    # The mapping file does not exist, and its path carries the secret: the run fails with it in the text.
    path = project_file(tmp_path, channels=channels, mapping=str(tmp_path / f"missing-{secret}.yaml"))
    monkeypatch.setenv("TONGBU_PROJECT", str(path))
    defs = build_definitions(load_project(path))
    assert defs.resolve_sensor_def("tongbu_alerts").default_status == dg.DefaultSensorStatus.RUNNING
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("sync_synth_accounts").execute_in_process(
            instance=instance, raise_on_error=False
        )
        assert not result.success
        cursor = tick(defs, instance, path, None)
        assert smtp_server.wait(1)
        [mail] = smtp_server.messages
        body = mail.get_payload(decode=True).decode()
        assert "sync_synth_accounts" in str(mail["Subject"]) and "failed" in body
        assert secret not in body and secret not in str(mail["Subject"])
        [robot] = httpx.get(f"{sim.base_url}/_sim/robot_messages").json()
        assert "sync_synth_accounts" in robot["content"] and secret not in robot["content"]

        # Nothing new: nothing sent again, even from a restarted sensor (no cursor; the ledger knows).
        assert tick(defs, instance, path, cursor)
        tick(defs, instance, path, None)
        assert len(smtp_server.messages) == 1
        assert len(httpx.get(f"{sim.base_url}/_sim/robot_messages").json()) == 1

        # An open two-way sync conflict: one more alert on each channel.
        with get_engine().begin() as conn:
            conn.execute(
                SyncConflict.__table__.insert().values(
                    tenant_id="default",
                    pair="kingdee",
                    object="accounts",
                    hub_id=7,
                    kind="field",
                    field="phone",
                    hub_value="13800000000",
                    system="kingdee",
                    system_value="13900000000",
                    status="open",
                    open_key="7:phone",
                )
            )
        cursor = tick(defs, instance, path, cursor)
        assert smtp_server.wait(2)
        assert "conflict" in str(smtp_server.messages[1]["Subject"])
        assert len(httpx.get(f"{sim.base_url}/_sim/robot_messages").json()) == 2
        tick(defs, instance, path, cursor)
        assert len(smtp_server.messages) == 2


def test_a_stale_stream_is_alerted_once(
    tmp_path: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    channels = {
        "ops_mail": {
            "kind": "email",
            "host": "127.0.0.1",
            "port": smtp_server.port,
            "sender": "tongbu@example.com",
            "to": ["ops@example.com"],
        }
    }
    path = project_file(tmp_path, channels=channels)
    monkeypatch.setenv("TONGBU_PROJECT", str(path))
    _run(get_engine(), "synth_accounts", dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    defs = build_definitions(load_project(path))
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("freshness_checks").execute_in_process(instance=instance)
        [check] = result.get_asset_check_evaluations()
        assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
        cursor = tick(defs, instance, path, None)
        assert smtp_server.wait(1)
        [mail] = smtp_server.messages
        assert "fresh" in str(mail["Subject"]) and "synth/records" in str(mail["Subject"])
        assert "stale" in mail.get_payload(decode=True).decode()
        tick(defs, instance, path, cursor)
        assert len(smtp_server.messages) == 1


def test_an_alert_that_could_not_be_delivered_is_sent_on_a_later_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.helpers.smtp import free_port

    port = free_port()  # nothing listens yet: the mail server is down
    channels = {
        "ops_mail": {
            "kind": "email",
            "host": "127.0.0.1",
            "port": port,
            "sender": "tongbu@example.com",
            "to": ["ops@example.com"],
        }
    }
    path = project_file(tmp_path, channels=channels, mapping=str(tmp_path / "missing.yaml"))
    monkeypatch.setenv("TONGBU_PROJECT", str(path))
    defs = build_definitions(load_project(path))
    with dg.instance_for_test() as instance:
        defs.resolve_job_def("sync_synth_accounts").execute_in_process(
            instance=instance, raise_on_error=False
        )
        cursor = tick(defs, instance, path, None)
        assert '"retry": [{' in (cursor or "")
        server = SmtpServer()
        server.port = port
        server.start()
        try:
            cursor = tick(defs, instance, path, cursor)  # the run is past the cursor; the retry list is not
            assert server.wait(1) and "failed" in str(server.messages[0]["Subject"])
            assert '"retry": []' in (cursor or "")
            tick(defs, instance, path, cursor)
            assert len(server.messages) == 1
        finally:
            server.stop()
