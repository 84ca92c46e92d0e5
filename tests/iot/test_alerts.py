"""A device fault becomes a service case and a WeCom app message to the account's owner, once."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import select

from connectors.iot.ingest import register_devices
from connectors.iot.settings import IotSettings
from connectors.iot.simulator import IotSimulator
from connectors.wecom.simulator import WeComSimulator
from pipelines.iot import IotService, notifier_alerter
from pipelines.project import load_project
from tests.iot.test_mqtt_e2e import wait_until
from tongbu.db import get_engine
from tongbu.hub.models import Account, ServiceCase

pytestmark = pytest.mark.wecom_sim(records=10, seed=3)


def test_fault_opens_a_case_and_alerts_the_owner_once(tmp_path: Path, sim: WeComSimulator, mosquitto) -> None:
    cred = sim.credentials()
    owner = sim.users[0]["userid"]
    path = tmp_path / "tongbu.yaml"
    path.write_text(yaml.safe_dump({
        "connections": {"wecom": {"connector": "wecom", "config": {
            "corp_id": cred["corp_id"], "corp_secret": cred["corp_secret"], "base_url": sim.base_url}}},
        "alerts": {"channels": {"service": {"kind": "wecom_app", "connection": "wecom",
                                            "agent_id": cred["agent_id"], "to": [owner]}}},
    }, allow_unicode=True), encoding="utf-8")  # fmt: skip
    project = load_project(path)
    engine = get_engine()
    prefix = f"AL{uuid.uuid4().hex[:5].upper()}"
    devices = IotSimulator(records=2, seed=1, broker=mosquitto.url, serial_prefix=prefix)
    serial = devices.fleet.devices[0].serial
    with engine.begin() as conn:
        conn.execute(Account.__table__.insert().values(source_system="kingdee", source_id="ACC1", row_hash="x",
                                                       name="苏州精工设备有限公司", owner=owner))  # fmt: skip
        register_devices(conn, "default", [(serial, "ACC1")], "test")
    settings = IotSettings.from_config(
        {"broker": mosquitto.url, "client_id": f"al-{prefix}", "batch_wait_ms": 10}
    )
    service = IotService(engine, settings, alerter=notifier_alerter(project, engine, "service"))
    service.start()
    devices.start()
    try:
        devices.tick(1)
        sent = time.time()
        devices.fault(serial, "Fault", 7, burst=3)  # a burst: one case, one alert

        def messages() -> list[dict]:
            return httpx.get(f"{sim.base_url}/_sim/messages").json()

        wait_until(lambda: len(messages()) >= 1, timeout=20, what="the WeCom app message")
        latency = time.time() - sent
        devices.fault(serial, "Fault", 0)  # the clear event closes the case
        wait_until(lambda: service.stats.cases_closed == 1, timeout=20, what="the case closed")
    finally:
        devices.stop()
        service.stop()
    [msg] = messages()
    assert msg["touser"] == [owner] and serial in msg["content"]
    with engine.connect() as conn:
        [case] = conn.execute(select(ServiceCase.__table__)).all()
    assert (case.status, case.occurrences, case.account_ref, case.owner) == ("closed", 3, "ACC1", owner)
    print(f"fault published -> WeCom message received: {latency * 1000:.0f} ms")
