"""The other ways in: Aliyun subscription JSON pushed to ``tongbu serve``, ThingsBoard's own device SDK
publishing unchanged, the embedded broker with the platforms' device auth, and the retained-state tap."""

from __future__ import annotations

import contextlib
import time
import uuid

import httpx
import pytest
from sqlalchemy import select

from connectors.iot.auth import alink_credentials, alink_password, alink_sign_content
from connectors.iot.settings import IotSettings
from connectors.iot.simulator import PUSH_SECRET, IotSimulator
from connectors.kit.mqtt import BrokerAddress, EmbeddedBroker, MqttError, connect, make_client
from pipelines.iot import IotService
from tests.iot.test_mqtt_e2e import wait_until
from tongbu.db import get_engine
from tongbu.hub.models import Device


def test_aliyun_subscription_json_pushed_over_http_lands_once(tmp_path) -> None:
    from connectors.kit.server import BackgroundServer
    from tongbu.serve.app import build_app

    engine = get_engine()
    cfg = {
        "sources": [{"name": "iot", "connector": "iot", "config": {"push_secret": PUSH_SECRET}}],
        "dagster": "off",
    }
    with BackgroundServer(build_app(cfg)) as server:
        url = server.url + "/hooks/iot"
        sim = IotSimulator(records=3, seed=2, push_url=url, serial_prefix="P")
        sim.start()
        try:
            sim.tick(3, hours=0.5)
            # a forged delivery is refused before it is parsed
            bad = httpx.post(url, content=b'{"deviceName":"x"}', headers={"X-Iot-Signature": "00" * 32})
            assert bad.status_code == 403
            # a redelivery of the last message changes nothing
            doc = {"productKey": "a1TongbuDemo", "deviceName": "P02000000", "requestId": "3",
                   "items": {"RunningTime": {"value": 1.0, "time": int(time.time() * 1000)}}}  # fmt: skip
            first_truth = {d["serial"]: d for d in sim.truth("devices")}

            def landed() -> bool:
                with engine.connect() as conn:
                    rows = {s: h for s, h in conn.execute(select(Device.source_id, Device.run_hours))}
                return all(
                    s in rows and float(rows[s]) == pytest.approx(d["reported_hours"])
                    for s, d in first_truth.items()
                )

            wait_until(landed, what="pushed readings in the hub")
            assert sim.push(doc) == 200  # requestId 3 of that device was applied already
            time.sleep(0.3)
            assert landed()
        finally:
            sim.stop()


def test_thingsboard_gateway_sdk_publishes_into_the_hub_unchanged(mosquitto) -> None:
    from tb_gateway_mqtt import TBGatewayMqttClient

    engine = get_engine()
    service = IotService(
        engine, IotSettings.from_config({"broker": mosquitto.url, "client_id": f"t-{uuid.uuid4().hex[:8]}"})
    )
    service.start()
    serial = f"TBSDK{uuid.uuid4().hex[:6].upper()}"
    gw = TBGatewayMqttClient(mosquitto.host, mosquitto.port, username="tb-gateway-token-demo")
    gw.connect()
    try:
        gw.gw_connect_device(serial, "TB-300")
        gw.gw_send_attributes(serial, {"firmware": "2.4.1", "latitude": 30.5, "longitude": 114.3})
        now = int(time.time() * 1000)
        gw.gw_send_telemetry(
            serial, [{"ts": now, "values": {"runHours": 10.5}}, {"ts": now + 1, "values": {"runHours": 11.0}}]
        )

        def seen() -> bool:
            with engine.connect() as conn:
                row = conn.execute(
                    select(Device.firmware, Device.run_hours).where(Device.source_id == serial)
                ).first()
            return bool(
                row and row.firmware == "2.4.1" and row.run_hours is not None and float(row.run_hours) == 11.0
            )

        wait_until(seen, what="the SDK's telemetry in the hub")
    finally:
        gw.disconnect()
        service.stop()


def test_alink_signature_matches_the_platform_rule() -> None:
    content = alink_sign_content("SN1928339", "light1983432", "a14Xib5kdYd", 1539421321846)
    assert content == "clientIdSN1928339deviceNamelight1983432productKeya14Xib5kdYdtimestamp1539421321846"
    import hashlib
    import hmac

    assert (
        alink_password("s3cr3t", "SN1928339", "light1983432", "a14Xib5kdYd", 1539421321846)
        == hmac.new(b"s3cr3t", content.encode(), hashlib.sha1).hexdigest()
    )


def test_embedded_broker_checks_device_credentials_as_the_platform_does() -> None:
    sim = IotSimulator(records=2, seed=4, broker="mqtt311://127.0.0.1:1", serial_prefix="AU")
    broker = EmbeddedBroker(authenticate=sim.authenticate)
    address = broker.start()
    try:
        dev = sim.fleet.devices[0]
        good = alink_credentials("a1TongbuDemo", dev.serial, dev.secret, int(time.time() * 1000))
        ok = make_client(address, good.client_id, username=good.username, password=good.password)
        connect(ok, address)
        wait_until(
            lambda: (ok.loop(0.1), ok.is_connected())[1], timeout=10, what="a genuine device connected"
        )
        ok.disconnect()
        forged = make_client(address, good.client_id, username=good.username, password="0" * 40)
        connect(forged, address)
        refused = []
        forged.on_connect = lambda c, u, f, reason, p: refused.append(reason.is_failure)
        deadline = time.monotonic() + 10
        while not refused and time.monotonic() < deadline:
            forged.loop(0.1)
        assert refused == [True]
        tb = make_client(address, "tbgw", username="tb-gateway-token-demo", password="")
        connect(tb, address)
        wait_until(
            lambda: (tb.loop(0.1), tb.is_connected())[1], timeout=10, what="the gateway token accepted"
        )
        tb.disconnect()
    finally:
        broker.stop()


def test_tap_reads_the_retained_state(mosquitto) -> None:
    from connectors.iot.tap import read_retained

    serial = f"RT{uuid.uuid4().hex[:6].upper()}"
    topic = f"tongbu-test/{serial}/v1/devices/me/attributes"
    pub = make_client(mosquitto, f"pub-{serial}")
    connect(pub, mosquitto)
    pub.loop_start()
    try:
        pub.publish(topic, b'{"firmware":"3.1.0","model":"TB-500"}', qos=1, retain=True).wait_for_publish(10)
        rows = read_retained(IotSettings.from_config({"broker": mosquitto.url, "topics": ["tongbu-test/+/v1/devices/me/attributes"],
                                                      "retained_wait_seconds": 0.5}))  # fmt: skip
        assert [r for r in rows if r["device"] == serial][0]["attributes"] == {
            "firmware": "3.1.0",
            "model": "TB-500",
        }
    finally:
        pub.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)  # clear it
        pub.disconnect()
        pub.loop_stop()


def test_settings_reject_unknown_keys_and_unreachable_brokers_say_so() -> None:
    with pytest.raises(ValueError, match="did you mean 'batch_size'"):
        IotSettings.from_config({"batch_sise": 10})
    with pytest.raises(MqttError, match="unreachable"):
        connect(make_client(BrokerAddress("127.0.0.1", 1), "x"), BrokerAddress("127.0.0.1", 1))


def test_aliyuns_own_device_sdk_signs_in_the_way_the_broker_checks() -> None:
    """Aliyun's Linkkit SDK (unchanged) computes its CONNECT signature; our Alink check accepts it."""
    from linkkit import linkkit

    from connectors.iot.auth import verify_alink

    secrets = {("a1LinkKit", "lk-device-1"): "lk-device-secret"}
    seen: list[tuple[str | None, bool]] = []

    def check(client_id: str, username: str | None, password: str | None) -> bool:
        ok = verify_alink(client_id, username, password, lambda pk, dn: secrets.get((pk, dn)))
        seen.append((username, ok))
        return ok

    broker = EmbeddedBroker(authenticate=check)
    address = broker.start()
    devices = []
    try:
        for secret in ("lk-device-secret", "wrong-secret"):
            lk = linkkit.LinkKit(host_name="127.0.0.1", product_key="a1LinkKit", device_name="lk-device-1",
                                 device_secret=secret)  # fmt: skip
            lk.config_mqtt(port=address.port, secure="", auto_reconnect_min_sec=60, auto_reconnect_max_sec=60)
            lk.connect_async()
            devices.append(lk)
            n = len(seen)
            wait_until(lambda n=n: len(seen) > n, timeout=15, what="the SDK's CONNECT")
        assert seen[:2] == [("lk-device-1&a1LinkKit", True), ("lk-device-1&a1LinkKit", False)]
    finally:
        for lk in devices:
            # the SDK's own state machine (written for paho 1.x) may refuse to be torn down mid-connect
            with contextlib.suppress(Exception):
                lk.destroy()
        broker.stop()
