"""``tongbu simulate iot``: N virtual devices publishing ThingsBoard- and Alink-shaped MQTT messages
(see :mod:`.devices`), or pushing Aliyun's server-side subscription JSON over HTTP, with faults.

The HTTP side is the kit's simulator server: ``/_sim/health|faults|stats|truth|counts`` plus

* ``POST /_sim/tick`` ``{"ticks": n, "hours": h}`` — publish n rounds of telemetry now;
* ``POST /_sim/fault`` ``{"device": serial, "fault": "Fault", "code": 3, "burst": 1}`` — a fault event
  (``code`` 0 clears it);
* ``POST /_sim/silence`` ``{"devices": [serial, …]}`` — those devices stop publishing;
* ``POST /_sim/flush`` — wait until the broker acknowledged every QoS 1 publish.

Truth streams: ``messages`` (every logical message published, with what the hub should do with it)
and ``devices`` (what each device's hub row should say). With ``rate`` > 0 a background thread ticks
``rate`` telemetry messages per second in total.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
from typing import Any, ClassVar

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from connectors.iot.auth import verify_alink
from connectors.iot.simulator.devices import GATEWAY_TOKEN, PRODUCT_KEY, DeviceFleet
from connectors.kit.mqtt import BrokerAddress
from connectors.kit.simulator.base import Simulator
from connectors.kit.simulator.faults import FaultSpec

#: shared secret of the HTTP push mode's demo (the signature header is HMAC-SHA256 of the body)
PUSH_SECRET = "iot-push-demo-secret"  # noqa: S105 - a simulator's published demo secret


class IotSimulator(Simulator):
    """Virtual devices on an MQTT broker (default the local Mosquitto), controlled over HTTP."""

    system = "iot"
    FAULTS: ClassVar[tuple[str, ...]] = ()
    OWN_FAULTS: ClassVar[tuple[FaultSpec, ...]] = (
        FaultSpec("counter_reset", "RATE", "a telemetry message's running-hours counter restarts from 0"),
        FaultSpec("clock_skew", "RATE", "a telemetry message's time is `skew_seconds` in the future"),
        FaultSpec("skew_seconds", "SECONDS", "how far ahead a skewed clock is", default=3600.0),
        FaultSpec("duplicate_ids", "RATE", "a message is published twice with the same id and content"),
        FaultSpec("out_of_order", "RATE", "a message is held back and published after the device's next"),
        FaultSpec("fault_rate", "RATE", "per device and tick: a fault event (ErrorCode 1-9)"),
        FaultSpec("clear_rate", "RATE", "per device with an open fault and tick: the clear event"),
        FaultSpec("silent", "ROWS", "these devices publish their attributes, then fall silent"),
    )
    STATS: ClassVar[tuple[str, ...]] = ("ticks",)

    def __init__(
        self,
        *,
        records: int = 20,
        faults: Any = None,
        seed: int = 7,
        broker: str = "mqtt://127.0.0.1:1883",
        rate: float = 0.0,
        push_url: str | None = None,
        log_path: str | None = None,
        max_connections: int = 64,
        serial_prefix: str = "SN",
    ) -> None:
        super().__init__(records=records, faults=faults, seed=seed)
        self.broker = BrokerAddress.parse(broker)
        self.rate = rate
        self.push_url = push_url
        self.fleet = DeviceFleet(
            self.broker, records, seed=seed, chance=self.chance, fault_value=self.faults.value,
            max_connections=max_connections, log_path=log_path, serial_prefix=serial_prefix,
        )  # fmt: skip
        self._ticker: threading.Thread | None = None
        self._tick_lock = threading.Lock()

    # -- device auth, as the platforms check it (the embedded broker asks this) --------------------------
    def authenticate(self, client_id: str, username: str | None, password: str | None) -> bool:
        """ThingsBoard: the access token as username; Alink: the HMAC-signed password."""
        if username == GATEWAY_TOKEN:
            return True
        secrets = {(PRODUCT_KEY, d.serial): d.secret for d in self.fleet.devices}
        return verify_alink(client_id, username, password, lambda pk, dn: secrets.get((pk, dn)))

    # -- lifecycle -------------------------------------------------------------------------------------------
    def seed_data(self) -> None:
        """Connect the devices and publish their attributes (MQTT mode)."""
        if self.push_url:
            return
        self.fleet.connect()
        silent = self.faults.value("silent", 0.0)
        if silent:
            from connectors.kit.simulator.faults import pick_rows

            for i in pick_rows(len(self.fleet.devices), silent, random.Random(self.seed)):
                self.fleet.devices[i].silent = True
        self.fleet.publish_attributes()

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start the control server, the devices and (``rate`` > 0) the ticker."""
        url = super().start(host, port)
        if self.rate > 0:
            self._ticker = threading.Thread(target=self._tick_forever, name="iot-sim-ticker", daemon=True)
            self._ticker.start()
        return url

    def stop(self) -> None:
        """Stop ticking, disconnect the devices and the server."""
        self._stopping = True
        if self._ticker is not None:
            self._ticker.join(10)
            self._ticker = None
        self.fleet.close()
        super().stop()

    def _tick_forever(self) -> None:
        per_tick = max(1, sum(1 for d in self.fleet.devices if not d.silent))
        interval = per_tick / self.rate
        next_at = time.monotonic()
        while not self._stopping:
            self.tick(1, hours=round(interval / 3600, 6) or 0.001)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()  # behind: do not try to catch up in a burst

    def tick(self, ticks: int = 1, hours: float = 0.01) -> int:
        """Publish ``ticks`` rounds of telemetry (MQTT) or push them (HTTP mode)."""
        n = 0
        with self._tick_lock:
            for _ in range(ticks):
                n += self._push_tick(hours) if self.push_url else self.fleet.tick(hours)
                self.count("ticks")
        return n

    # -- HTTP push mode (Aliyun server-side subscription JSON) --------------------------------------------
    def _push_tick(self, hours: float) -> int:
        now = int(time.time() * 1000)
        for d in self.fleet.devices:
            d.run_hours = round(d.run_hours + hours, 3)
            d.true_hours = d.reported_hours = round(d.true_hours + hours, 3)
            d.accepted_raw = d.run_hours
            rid = str(d.next_id)
            d.next_id += 1
            doc = {"deviceType": d.model, "iotId": f"iot{d.serial}", "requestId": rid, "checkFailedData": {},
                   "productKey": PRODUCT_KEY, "gmtCreate": now, "deviceName": d.serial,
                   "items": {"RunningTime": {"value": d.run_hours, "time": now},
                             "Temperature": {"value": 36.5, "time": now}}}  # fmt: skip
            self.push(doc)
            self.fleet.log.append({"device": d.serial, "kind": "telemetry", "ts": now, "raw": d.run_hours,
                                   "true_hours": d.true_hours, "expect": "applied"})  # fmt: skip
        return len(self.fleet.devices)

    def push(self, doc: dict[str, Any]) -> int:
        """POST one subscription message to ``push_url`` (signed), returning the HTTP status."""
        body = json.dumps(doc, ensure_ascii=False).encode()
        sig = hmac.new(PUSH_SECRET.encode(), body, hashlib.sha256).hexdigest()
        r = httpx.post(self.push_url or "", content=body, headers={"Content-Type": "application/json",
                                                                   "X-Iot-Signature": sig}, timeout=10)  # fmt: skip
        return r.status_code

    # -- control API -----------------------------------------------------------------------------------------
    def control_routes(self) -> list[BaseRoute]:
        """``/_sim/tick``, ``/_sim/fault``, ``/_sim/silence``, ``/_sim/flush``."""
        return [
            Route("/_sim/tick", self._sim_tick, methods=["POST"]),
            Route("/_sim/fault", self._sim_fault, methods=["POST"]),
            Route("/_sim/silence", self._sim_silence, methods=["POST"]),
            Route("/_sim/flush", self._sim_flush, methods=["POST"]),
        ]

    def api_routes(self) -> list[BaseRoute]:
        """The devices speak MQTT; the HTTP side is only the control API."""
        return []

    async def _body(self, request: Request) -> dict[str, Any]:
        doc = json.loads(await request.body() or b"{}")
        if not isinstance(doc, dict):
            raise ValueError("the body must be a JSON object")
        return doc

    async def _sim_tick(self, request: Request) -> Response:
        b = await self._body(request)
        return await self.run_control(
            lambda: {"published": self.tick(int(b.get("ticks", 1)), float(b.get("hours", 0.01)))}
        )

    def fault(self, device: str, fault: str = "Fault", code: int = 3, burst: int = 1) -> int:
        """A fault event (or its clear, ``code`` 0) from ``device``."""
        d = next((x for x in self.fleet.devices if x.serial == device), None)
        if d is None:
            raise KeyError(f"no device {device!r}")
        with self._tick_lock:
            return self.fleet.fault_event(d, fault, code, burst)

    async def _sim_fault(self, request: Request) -> Response:
        b = await self._body(request)
        return await self.run_control(
            lambda: {
                "published": self.fault(
                    str(b["device"]),
                    str(b.get("fault", "Fault")),
                    int(b.get("code", 3)),
                    int(b.get("burst", 1)),
                )
            }  # fmt: skip
        )

    async def _sim_silence(self, request: Request) -> Response:
        b = await self._body(request)
        wanted = set(b.get("devices") or [])
        for d in self.fleet.devices:
            if d.serial in wanted:
                d.silent = True
        return self.json({"silent": sorted(d.serial for d in self.fleet.devices if d.silent)})

    async def _sim_flush(self, request: Request) -> Response:
        return await self.run_control(lambda: {"flushed": self.fleet.flush(30)})

    def credentials(self) -> dict[str, Any]:
        """How to reach the devices' broker, and the demo device credentials."""
        return {"broker": self.broker.url, "product_key": PRODUCT_KEY, "gateway_token": GATEWAY_TOKEN,
                "devices": len(self.fleet.devices), "push_secret": PUSH_SECRET if self.push_url else None}  # fmt: skip

    def truth_streams(self) -> tuple[str, ...]:
        """``messages`` and ``devices``."""
        return ("messages", "devices")

    def truth(self, stream: str, *, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """The publish log, or each device's expected hub state."""
        if stream == "messages":
            rows = list(self.fleet.log)
        elif stream == "devices":
            rows = self.fleet.truth_devices()
        else:
            raise KeyError(f"iot simulator has no truth for {stream!r} (messages, devices)")
        return rows[offset : offset + limit if limit is not None else None]

    def counts(self) -> dict[str, int]:
        """Devices and logged messages."""
        return {"devices": len(self.fleet.devices), "messages": len(self.fleet.log)}


SIMULATOR = IotSimulator

__all__ = ["PUSH_SECRET", "SIMULATOR", "IotSimulator"]
