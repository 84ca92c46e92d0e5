"""Virtual devices publishing over MQTT the way ThingsBoard and Alink devices do, with faults, and a log
of everything published (the truth, against which the hub is counted: 0 lost, 0 applied twice).

Each device has a platform (alternating ``alink`` / ``thingsboard``), a serial (its deviceName), a
running-hours counter, firmware and a location. A *tick* publishes one telemetry message per device
(running hours, temperature, power); attributes go out retained on connect (state topics only).
ThingsBoard devices publish through the ThingsBoard **gateway** API (``v1/gateway/telemetry``, one
gateway connection authenticated with its access token); Alink devices publish to their own
``/sys/{pk}/{dn}/...`` topics on their own connections, authenticated with Alink's HMAC signature.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connectors.iot.auth import alink_credentials
from connectors.iot.payloads import _day, _digest
from connectors.kit.mqtt import BrokerAddress, connect, make_client

PRODUCT_KEY = "a1TongbuDemo"
GATEWAY_TOKEN = "tb-gateway-token-demo"  # noqa: S105 - a simulator's published demo token
FAULTS = ("Fault", "HighTempWarning")


@dataclass
class VirtualDevice:
    """One device's own state."""

    serial: str
    platform: str  # alink | thingsboard
    secret: str
    run_hours: float = 0.0  # the device's counter (may reset)
    true_hours: float = 0.0  # hours it really ran (never resets)
    reported_hours: float = 0.0  # the total the hub can compute from the readings it accepts
    accepted_raw: float = 0.0  # the counter in the last reading the hub can accept
    counted: bool = False  # whether the hub can have accepted a counter reading of it yet
    firmware: str = "1.0.0"
    latitude: float = 31.23
    longitude: float = 121.47
    model: str = "TB-300"
    next_id: int = 1
    silent: bool = False
    open_faults: set[str] = field(default_factory=set)

    def message_id(self) -> str:
        """Alink ``id``: a string of digits, unique per device per day."""
        mid = str(self.next_id)
        self.next_id += 1
        return mid


def _confirmed(info: Any) -> bool:
    """Whether the broker acknowledged a QoS 1 publish. ``is_published()`` raises for a message first
    tried while disconnected (its rc stays NO_CONN) even after paho resent it; the flag it reads is set
    by the PUBACK either way."""
    return bool(getattr(info, "_published", False))


class DeviceFleet:
    """The devices, their MQTT connections and the publish log."""

    def __init__(
        self,
        address: BrokerAddress,
        count: int,
        *,
        seed: int = 7,
        chance: Callable[[str], bool] | None = None,
        fault_value: Callable[[str, float], float] | None = None,
        max_connections: int = 64,
        client_prefix: str = "sim",
        log_path: str | None = None,
        serial_prefix: str = "SN",
    ) -> None:
        self.address = address
        self.rng = random.Random(seed)
        self.chance = chance or (lambda name: False)
        self.fault_value = fault_value or (lambda name, default=0.0: default)
        self.client_prefix = f"{client_prefix}-{seed}"
        self.devices = [
            VirtualDevice(
                serial=f"{serial_prefix}{seed:02d}{i:06d}",
                platform="alink" if i % 2 == 0 else "thingsboard",
                secret=f"secret-{seed}-{i}",
                run_hours=round(self.rng.uniform(10, 5000), 1),
                firmware=f"1.{i % 4}.{i % 7}",
                latitude=round(22 + self.rng.random() * 10, 5),
                longitude=round(110 + self.rng.random() * 10, 5),
                model=("TB-300", "TB-500", "AL-X1")[i % 3],
            )
            for i in range(count)
        ]
        for d in self.devices:
            d.true_hours = d.reported_hours = d.accepted_raw = d.run_hours
        self.max_connections = max_connections
        self._clients: list[Any] = []
        self._conn_of: dict[str, Any] = {}
        self._gateway: Any = None
        self._lock = threading.Lock()
        self.log: list[dict[str, Any]] = []  # the truth: one entry per logical message
        self._pending: list[Any] = []  # paho MQTTMessageInfo of QoS 1 publishes not yet confirmed
        self._held: dict[str, tuple[str, bytes, dict[str, Any]]] = {}  # out_of_order: held back per device
        self._log_file = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115
        self.stats = {"published": 0, "duplicates": 0, "reordered": 0, "resets": 0, "skewed": 0, "faults": 0}

    # -- connections ----------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the gateway connection and the Alink devices' connections (shared beyond the cap)."""
        tb = make_client(
            self.address, f"{self.client_prefix}-tbgw", durable=True, username=GATEWAY_TOKEN, password=""
        )
        tb.reconnect_delay_set(0.1, 1)
        connect(tb, self.address)
        tb.loop_start()
        self._gateway = tb
        self._clients.append(tb)
        alink = [d for d in self.devices if d.platform == "alink"]
        owners = alink[: max(1, self.max_connections)]
        for i, d in enumerate(alink):
            owner = owners[i % len(owners)]
            if owner is d:
                ts = int(time.time() * 1000)
                creds = alink_credentials(
                    PRODUCT_KEY, d.serial, d.secret, ts, client_id=f"{self.client_prefix}-{d.serial}"
                )
                c = make_client(
                    self.address,
                    creds.client_id,
                    durable=True,
                    username=creds.username,
                    password=creds.password,
                )
                c.reconnect_delay_set(0.1, 1)
                connect(c, self.address)
                c.loop_start()
                self._clients.append(c)
            self._conn_of[d.serial] = self._conn_of.get(owner.serial) or self._clients[-1]
        for d in self.devices:
            if d.platform == "thingsboard":
                self._conn_of[d.serial] = tb

    def close(self) -> None:
        """Wait for confirmations (briefly), then disconnect."""
        self.flush(10)
        for c in self._clients:
            c.disconnect()
            c.loop_stop()
        self._clients.clear()
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def flush(self, timeout: float = 30.0) -> bool:
        """Block until every QoS 1 publish so far is acknowledged by the broker (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        # Messages held back (out_of_order) go out now: a held message is published, only late.
        for serial, (topic, payload, _entry) in list(self._held.items()):
            self._send(self._conn_of[serial], topic, payload)
            del self._held[serial]
        with self._lock:
            pending = [i for i in self._pending if not _confirmed(i)]
        # Poll rather than wait_for_publish: a message published while the broker was away has
        # rc=NO_CONN and wait_for_publish gives up at once, but paho resends it after reconnecting.
        while pending:
            pending = [i for i in pending if not _confirmed(i)]
            if not pending:
                break
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        with self._lock:
            self._pending = [i for i in self._pending if not _confirmed(i)]
        return True

    # -- publishing -----------------------------------------------------------------------------------
    def _record(self, entry: dict[str, Any]) -> None:
        self.log.append(entry)
        if self._log_file:
            self._log_file.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def _send(self, client: Any, topic: str, payload: bytes, retain: bool = False) -> None:
        info = client.publish(topic, payload, qos=1, retain=retain)
        self.stats["published"] += 1
        with self._lock:
            self._pending.append(info)
            if len(self._pending) > 20000:  # keep the list bounded: old ones are long confirmed
                self._pending = [i for i in self._pending if not _confirmed(i)]

    def _emit(
        self, d: VirtualDevice, topic: str, payload: bytes, entry: dict[str, Any], retain: bool = False
    ) -> None:
        """Publish, applying duplicate and out-of-order faults; log the logical message once."""
        self._record(entry)
        client = self._conn_of[d.serial]
        if not retain and self.chance("out_of_order") and d.serial not in self._held:
            self._held[d.serial] = (topic, payload, entry)  # sent after this device's next message
            self.stats["reordered"] += 1
            return
        self._send(client, topic, payload, retain)
        if self.chance("duplicate_ids"):
            self._send(client, topic, payload, retain)
            self.stats["duplicates"] += 1
        held = self._held.pop(d.serial, None)
        if held is not None:
            self._send(client, held[0], held[1])

    def publish_attributes(self) -> None:
        """Each device's client attributes (retained: a new consumer sees the current state at once)."""
        now = int(time.time() * 1000)
        for d in self.devices:
            attrs = {"firmware": d.firmware, "serial": d.serial, "model": d.model,
                     "latitude": d.latitude, "longitude": d.longitude}  # fmt: skip
            if d.platform == "thingsboard":
                topic, payload = "v1/gateway/attributes", json.dumps({d.serial: attrs}).encode()
                key = f"tb:{d.serial}:a:{_digest(attrs)}"
            else:
                mid = d.message_id()
                topic = f"/sys/{PRODUCT_KEY}/{d.serial}/thing/event/property/post"
                body = {"id": mid, "version": "1.0", "sys": {"ack": 0}, "method": "thing.event.property.post",
                        "params": {"FirmwareVersion": {"value": d.firmware, "time": now},
                                   "Position": {"value": {"latitude": d.latitude, "longitude": d.longitude}, "time": now}}}  # fmt: skip
                payload = json.dumps(body).encode()
                key = f"alink:{PRODUCT_KEY}/{d.serial}:{_day(now)}:{mid}"
            self._emit(d, topic, payload, {"device": d.serial, "kind": "attributes", "key": key, "ts": now,
                                           "expect": "applied"}, retain=d.platform == "thingsboard")  # fmt: skip

    def tick(self, hours: float = 0.01) -> int:
        """One telemetry message per device that is not silent; returns how many were logged."""
        n = 0
        for d in self.devices:
            if d.silent:
                continue
            n += self.telemetry(d, hours)
            if self.chance("fault_rate"):
                n += self.fault_event(d, self.rng.choice(FAULTS), self.rng.randint(1, 9))
            elif d.open_faults and self.chance("clear_rate"):
                n += self.fault_event(d, sorted(d.open_faults)[0], 0)
        return n

    def telemetry(self, d: VirtualDevice, hours: float) -> int:
        """Publish one telemetry message of ``d``."""
        now = int(time.time() * 1000)
        ts, expect, reset = now, "applied", False
        d.true_hours = round(d.true_hours + hours, 3)
        if self.chance("clock_skew"):
            # The reading is rejected; the counter keeps counting, so the next reading's delta covers it.
            ts = now + int(self.fault_value("skew_seconds", 172800.0) * 1000)
            expect = "quarantined"
            self.stats["skewed"] += 1
            d.run_hours = round(d.run_hours + hours, 3)
        elif d.counted and d.run_hours > hours and self.chance("counter_reset"):
            # (a reset only shows when the counter comes back lower than it was; one that lands at or
            # above the last value is indistinguishable from running, so none is injected there)
            d.run_hours = round(hours, 3)  # the counter restarted from 0 and has run `hours` since
            reset = True
            self.stats["resets"] += 1
        else:
            d.run_hours = round(d.run_hours + hours, 3)
        if expect == "applied":
            # What the hub can know: the rise since the last accepted reading, or after a reset the
            # new counter (hours run between a rejected reading and a reset are unknowable); the
            # first accepted reading is the hub's starting point (so no reset is injected before it).
            rise = d.run_hours if reset else d.run_hours - d.accepted_raw
            d.reported_hours = round(d.reported_hours + rise, 3) if d.counted else d.run_hours
            d.accepted_raw = d.run_hours
            d.counted = True
        temp = round(20 + self.rng.random() * 30, 1)
        if d.platform == "thingsboard":
            values = {"runHours": d.run_hours, "temperature": temp, "power": "on"}
            topic = "v1/gateway/telemetry"
            payload = json.dumps({d.serial: [{"ts": ts, "values": values}]}).encode()
            key = f"tb:{d.serial}:{ts}:{_digest(values)}"
        else:
            mid = d.message_id()
            topic = f"/sys/{PRODUCT_KEY}/{d.serial}/thing/event/property/post"
            # Alink: a float must carry a decimal point (10.0, not 10)
            body = {"id": mid, "version": "1.0", "sys": {"ack": 0}, "method": "thing.event.property.post",
                    "params": {"RunningTime": {"value": float(d.run_hours), "time": ts},
                               "Temperature": {"value": float(temp), "time": ts},
                               "PowerSwitch": {"value": 1, "time": ts}}}  # fmt: skip
            payload = json.dumps(body).encode()
            key = f"alink:{PRODUCT_KEY}/{d.serial}:{_day(ts)}:{mid}"
        self._emit(d, topic, payload, {"device": d.serial, "kind": "telemetry", "key": key, "ts": ts,
                                       "raw": d.run_hours, "true_hours": d.true_hours, "reset": reset,
                                       "expect": expect})  # fmt: skip
        return 1

    def fault_event(self, d: VirtualDevice, identifier: str, code: int, burst: int = 1) -> int:
        """An Alink event post (``ErrorCode`` > 0 a fault, 0 its clear), or the ThingsBoard ``faultCode``."""
        n = 0
        for _ in range(max(1, burst)):
            now = int(time.time() * 1000)
            if d.platform == "thingsboard":
                topic = "v1/gateway/telemetry"
                values = {"faultCode": code, "faultName": identifier}
                payload = json.dumps({d.serial: [{"ts": now, "values": values}]}).encode()
                key, ident = f"tb:{d.serial}:{now}:{_digest(values)}", "faultCode"
            else:
                mid = d.message_id()
                topic = f"/sys/{PRODUCT_KEY}/{d.serial}/thing/event/{identifier}/post"
                body = {"id": mid, "version": "1.0", "sys": {"ack": 0}, "method": f"thing.event.{identifier}.post",
                        "params": {"value": {"ErrorCode": code}, "time": now}}  # fmt: skip
                payload = json.dumps(body).encode()
                key, ident = f"alink:{PRODUCT_KEY}/{d.serial}:{_day(now)}:{mid}", identifier
            if code:
                d.open_faults.add(ident)
                self.stats["faults"] += 1
            else:
                d.open_faults.discard(ident)
            self._emit(d, topic, payload, {"device": d.serial, "kind": "event", "key": key, "ts": now,
                                           "fault": ident, "code": code, "expect": "applied",
                                           "sent_at": time.time()})  # fmt: skip
            n += 1
        return n

    def truth_devices(self) -> list[dict[str, Any]]:
        """Per device: what the hub should hold."""
        return [
            {
                "serial": d.serial,
                "platform": d.platform,
                "true_hours": d.true_hours,
                "reported_hours": d.reported_hours,
                "raw": d.run_hours,
                "firmware": d.firmware,
                "model": d.model,
                "silent": d.silent,
                "open_faults": sorted(d.open_faults),
                "resets": sum(1 for e in self.log if e["device"] == d.serial and e.get("reset")),
            }  # fmt: skip
            for d in self.devices
        ]
