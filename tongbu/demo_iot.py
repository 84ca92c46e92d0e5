"""``tongbu iot demo``: a device fault becomes a service case in the CRM and a WeCom alert to the rep.

Everything runs in this process on loopback, with nothing installed beyond tongbu: the embedded MQTT
broker (amqtt, checking each device's credentials as its platform would), N simulated devices
(ThingsBoard gateway + Alink), the IoT consumer writing the hub, and the WeCom simulator receiving the
app message the shared notifier sends. The device that faults belongs, by its serial number on an ERP
sales order line, to a customer whose owner is a WeCom user.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import select


def run_iot_demo(devices: int = 20, *, out: Any = print) -> dict[str, Any]:
    """Run the demo; returns what it showed (case, alert, latency) for tests."""
    from connectors.iot.linking import forget_order_index
    from connectors.iot.settings import IotSettings
    from connectors.iot.simulator import IotSimulator
    from connectors.kit.mqtt import EmbeddedBroker
    from connectors.wecom.simulator import WeComSimulator
    from pipelines.iot import IotService, notifier_alerter
    from pipelines.project import load_project
    from tongbu.db import get_engine
    from tongbu.hub.models import Account, Device, SalesOrder, SalesOrderLine, ServiceCase

    engine = get_engine()
    wecom = WeComSimulator(records=10, seed=5)
    wecom.start()
    sim = IotSimulator(records=devices, seed=8, broker="mqtt311://127.0.0.1:1", serial_prefix="DEMO")
    broker = EmbeddedBroker(authenticate=lambda c, u, p: u == "tongbu-consumer" or sim.authenticate(c, u, p))
    address = broker.start()
    sim.broker = sim.fleet.address = address
    service = None
    try:
        cred = wecom.credentials()
        owner = wecom.users[0]["userid"]
        folder = Path(tempfile.mkdtemp(prefix="tongbu-iot-demo-"))
        (folder / "tongbu.yaml").write_text(
            yaml.safe_dump({
                "connections": {"wecom": {"connector": "wecom", "config": {
                    "corp_id": cred["corp_id"], "corp_secret": cred["corp_secret"], "base_url": wecom.base_url}}},
                "alerts": {"channels": {"service_wecom": {"kind": "wecom_app", "connection": "wecom",
                                                          "agent_id": cred["agent_id"], "to": [owner]}}},
            }, allow_unicode=True), encoding="utf-8",
        )  # fmt: skip
        project = load_project(folder / "tongbu.yaml")
        faulty = sim.fleet.devices[0].serial
        # The ERP sold that device to 华东精密机械: its serial is on the order line (as Kingdee syncs it).
        with engine.begin() as conn:
            conn.execute(Account.__table__.insert().values(source_system="kingdee", source_id="DEMO-C1", row_hash="demo",
                                                           name="华东精密机械有限公司", owner=owner))  # fmt: skip
            conn.execute(SalesOrder.__table__.insert().values(source_system="kingdee", source_id="DEMO-O1",
                                                              row_hash="demo", order_no="XSDD-DEMO-1", account_ref="DEMO-C1"))  # fmt: skip
            conn.execute(SalesOrderLine.__table__.insert().values(
                source_system="kingdee", source_id="DEMO-L1", row_hash="demo", order_source_id="DEMO-O1",
                product_code="TB-300", extra={"serial_numbers": [faulty]}))  # fmt: skip
        forget_order_index()
        settings = IotSettings.from_config({"broker": address.url, "broker_username": "tongbu-consumer",
                                            "client_id": "tongbu-iot-demo", "batch_wait_ms": 10})  # fmt: skip
        service = IotService(engine, settings, alerter=notifier_alerter(project, engine, "service_wecom"))
        service.start()
        sim.start()
        out(
            f"embedded MQTT broker on {address.url}; {devices} devices connected (ThingsBoard token / Alink HMAC)"
        )
        sim.tick(5, hours=0.5)
        sim.fleet.flush(30)
        _wait(lambda: service.stats.applied >= devices * 5, 30)
        out(f"telemetry: {service.stats.applied} readings applied; devices in the hub: "
            f"{_count(engine, Device)}")  # fmt: skip
        sent = time.time()
        sim.fault(faulty, "Fault", 7, burst=3)
        _wait(lambda: bool(httpx.get(f"{wecom.base_url}/_sim/messages").json()), 20)
        alert_ms = (time.time() - sent) * 1000
        with engine.connect() as conn:
            case = conn.execute(
                select(ServiceCase.__table__).where(ServiceCase.__table__.c.device_ref == faulty)
            ).one()
        message = httpx.get(f"{wecom.base_url}/_sim/messages").json()[0]
        out(f"device {faulty} reported Fault ErrorCode 7 three times -> one case {case.source_id} "
            f"({case.status}, x{case.occurrences}) for account {case.account_ref}")  # fmt: skip
        out(
            f"WeCom app message to {message['touser']} {alert_ms:.0f} ms after the fault: {' '.join(message['content'].split())[:70]}…"
        )
        sim.fault(faulty, "Fault", 0)
        _wait(lambda: service.stats.cases_closed >= 1, 20)
        out("clear event (ErrorCode 0) -> case closed")
        return {"case": case.source_id, "account": case.account_ref, "touser": message["touser"],
                "occurrences": case.occurrences, "alert_ms": alert_ms, "closed": service.stats.cases_closed}  # fmt: skip
    finally:
        sim.stop()
        if service is not None:
            service.stop()
        broker.stop()
        wecom.stop()


def _wait(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("the demo did not get there in time (is the machine very busy?)")
        time.sleep(0.02)


def _count(engine: Any, model: Any) -> int:
    from sqlalchemy import func

    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model.__table__)).scalar_one())
