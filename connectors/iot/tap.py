"""``tap-iot``: a batch read of the devices' **retained state** on the broker (Singer).

Devices publish their state topics retained (ThingsBoard attributes, shadows); a client that
subscribes gets the newest value of each at once. The tap subscribes with a clean, short-lived
session, collects the retained messages for ``retained_wait_seconds`` (retained ones arrive first,
flagged), decodes them with the same :class:`~connectors.iot.payloads.Decoder` as the consumer and
emits one ``device_state`` record per device (its newest attributes and telemetry). Live, unretained
messages are ignored: continuous ingestion is ``tongbu iot run``'s job.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

from singer_sdk import Stream, Tap
from singer_sdk import typing as th

from connectors.iot.payloads import Decoder, Reading
from connectors.iot.settings import IotSettings, iot_properties
from connectors.kit.mqtt import MqttError, connect, make_client

SETTING_KEYS = {p.name for p in iot_properties()}


def read_retained(settings: IotSettings) -> list[dict[str, Any]]:
    """Every device's retained state, newest value per key."""
    address = settings.address
    client = make_client(address, f"{settings.client_id}-tap-{uuid.uuid4().hex[:8]}")
    got: list[tuple[str, bytes]] = []
    subscribed = threading.Event()
    last = [time.monotonic()]

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            c.subscribe([(t, 1) for t in settings.topics])

    def on_subscribe(*args: Any) -> None:
        subscribed.set()

    def on_message(c: Any, userdata: Any, msg: Any) -> None:
        if msg.retain:
            got.append((msg.topic, msg.payload))
            last[0] = time.monotonic()

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    connect(client, address)
    client.loop_start()
    try:
        if not subscribed.wait(10):
            raise MqttError(f"MQTT broker {address.url} did not confirm the subscription within 10 s")
        last[0] = time.monotonic()
        # Retained messages come right after SUBACK; stop once none arrived for the wait time.
        while time.monotonic() - last[0] < settings.retained_wait_seconds:
            time.sleep(0.05)
    finally:
        client.disconnect()
        client.loop_stop()
    decoder = Decoder(max_future_s=settings.max_future_seconds)
    state: dict[str, dict[str, Any]] = {}
    for topic, payload in got:
        for item in decoder.decode(topic, payload):
            if not isinstance(item, Reading):
                continue
            rec = state.setdefault(item.device, {"device": item.device, "platform": item.platform,
                                                 "product": item.product, "attributes": {}, "ts_ms": 0})  # fmt: skip
            rec["attributes"].update(item.values)
            rec["ts_ms"] = max(rec["ts_ms"], item.ts_ms)
    return sorted(state.values(), key=lambda r: r["device"])


class DeviceStateStream(Stream):
    """Each device's retained attributes and state (full table: the broker keeps only the newest)."""

    name = "device_state"
    primary_keys = ("device",)
    replication_key = None
    schema = th.PropertiesList(
        th.Property("device", th.StringType, required=True),
        th.Property("platform", th.StringType),
        th.Property("product", th.StringType),
        th.Property("attributes", th.ObjectType(additional_properties=True)),
        th.Property("ts_ms", th.IntegerType),
    ).to_dict()

    def get_records(self, context: Any) -> Iterable[dict[str, Any]]:
        """Read the retained messages once."""
        cfg = {k: v for k, v in self.config.items() if k in SETTING_KEYS}
        yield from read_retained(IotSettings.from_config(cfg))


class TapIot(Tap):
    """Singer tap for the retained device state on an MQTT broker."""

    name = "tap-iot"
    package_name = "tongbu"
    config_jsonschema = th.PropertiesList(*iot_properties()).to_dict()

    def discover_streams(self) -> list[Stream]:
        """The one stream (no network access needed)."""
        return [DeviceStateStream(self)]


if __name__ == "__main__":
    TapIot.cli()
