"""Aliyun IoT server-side subscription messages pushed over HTTP, as a ``tongbu serve`` event source.

Alibaba Cloud forwards device data to a consumer as JSON (property ``items`` with ``value``/``time``,
event posts with ``identifier``/``value``, status changes), normally over AMQP; a data-forwarding rule
or a small relay can POST the same JSON to ``/hooks/<connection>`` instead. Each delivery must carry
``X-Iot-Signature: hex(HMAC-SHA256(push_secret, body))`` (checked first, over the raw body, before
any parsing; bodies over 64 KiB are refused unread). The decoded readings go through the same
:class:`~connectors.iot.ingest.IotWriter` as MQTT, so a redelivery is applied once (ledger), future
timestamps are quarantined, and faults open service cases.

Connection config: the IoT connection's ``push_secret`` (``vault:iot.push_secret``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Engine

from connectors.iot.ingest import IotWriter
from connectors.iot.payloads import MAX_PAYLOAD, Decoder, Reading, Rejected
from connectors.iot.settings import IotSettings
from connectors.kit.events import EventRejected, EventSource, InboundEvent, PreparedChange
from tongbu.config import DEFAULT_TENANT


class IotPushSource(EventSource):
    """Signed HTTP pushes of Aliyun subscription JSON → devices, usage, cases."""

    connector = "iot"

    def __init__(
        self, name: str, config: Mapping[str, Any], *, engine: Engine, tenant: str = DEFAULT_TENANT
    ) -> None:
        super().__init__(name, config, engine=engine, tenant=tenant)
        self.settings = IotSettings.from_config(config)
        # Without a push_secret the connection is MQTT-only: ``tongbu serve`` still starts (it mounts
        # every connection whose connector has an event source) and refuses pushes to this one.
        self._secret = (self.settings.push_secret or "").encode()
        self.decoder = Decoder(max_future_s=self.settings.max_future_seconds)
        self.writer = IotWriter(tenant=tenant, source_system=name)

    def parse(
        self, query: Mapping[str, str], headers: Mapping[str, str], body: bytes, received_at: float
    ) -> list[InboundEvent]:
        """Signature first (constant time over the raw body), then size, then JSON."""
        if not self._secret:
            raise EventRejected(403, "HTTP push is not configured for this connection (set push_secret)")
        if len(body) > MAX_PAYLOAD:
            raise EventRejected(413, "body too large")
        sig = headers.get("x-iot-signature") or headers.get("X-Iot-Signature") or ""
        expected = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, sig.strip().lower()):
            raise EventRejected(403, "bad signature")
        try:
            doc = json.loads(body)
        except ValueError:
            raise EventRejected(400, "body is not JSON") from None
        if not isinstance(doc, dict):
            raise EventRejected(400, "body must be a JSON object")
        device = str(doc.get("deviceName") or "")[:128]
        digest = hashlib.blake2b(body, digest_size=12).hexdigest()
        return [
            InboundEvent(
                source=self.name,
                dedup_key=f"{self.name}:{doc.get('requestId') or digest}:{device}",
                record_key=f"device:{device}",
                kind="identifier" if "identifier" in doc else "items" if "items" in doc else "status",
                payload=doc,
                received_at=received_at,
            )
        ]

    def prepare(self, record_key: str, events: list[InboundEvent]) -> PreparedChange:
        """Decode every event of one device; the write applies them in one go."""
        readings: list[Reading] = []
        rejected: list[Rejected] = []
        for e in events:
            for item in self.decoder.decode_aliyun(e.payload, topic=f"http:{self.name}"):
                (readings if isinstance(item, Reading) else rejected).append(item)

        def write(conn: Connection) -> Mapping[str, int]:
            return self.writer.write(conn, readings, rejected).counts()

        return PreparedChange(
            write=write,
            assets=("crm/devices",),
            summary={
                "device": record_key.split(":", 1)[1],
                "readings": len(readings),
                "rejected": len(rejected),
            },
        )
