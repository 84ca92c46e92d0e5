"""Youzan push messages (消息推送) as a ``tongbu serve`` event source.

Youzan POSTs JSON ``{client_id, id, kdt_id, msg, sign, type, status, version, msg_id, test, …}``:
``msg`` is the URL-encoded JSON of the record (for trades ``{full_order_info: …}``) and ``sign`` is
``md5(client_id + msg + client_secret)``. Checks, cheapest first: the body's size and shape, the
``client_id`` and shop (``kdt_id`` = the connection's ``grant_id``), then the signature (constant-time
compare); only then is ``msg`` decoded. A wrong signature is a 401 and nothing is stored. ``test``
messages (the console's "send a test push") are acknowledged and ignored. The ``msg_id`` is the dedup
key; ``version`` (the change time) orders the pushes of one trade, and the hub keeps the newest
(:class:`connectors.kit.record_events.RecordEventWriter`). Youzan expects ``{"code": 0, "msg":
"success"}`` and retries anything else.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from starlette.responses import JSONResponse, Response

from connectors.kit.events import EventRejected, InboundEvent, PreparedChange
from connectors.kit.logs import remember_secret
from connectors.kit.record_events import RecordEventSource, json_object
from connectors.youzan.streams import trade_record

MAPPING_FILE = Path(__file__).resolve().parents[2] / "mappings" / "library" / "youzan_to_crm.yaml"
MAPPINGS = {"trades": "youzan_trades_to_sales_orders"}
_HEX = frozenset("0123456789abcdef")


def push_signature(client_id: str, msg: str, client_secret: str) -> str:
    """The ``sign`` of a push: ``md5(client_id + msg + client_secret)`` (lower-case hex)."""
    return hashlib.md5(f"{client_id}{msg}{client_secret}".encode()).hexdigest()  # noqa: S324 - Youzan's scheme


class YouzanEventSource(RecordEventSource):
    """Verifies Youzan pushes and applies the trades they carry to the hub."""

    connector = "youzan"
    tap_class = "connectors.youzan.tap:TapYouzan"
    label = "Youzan"
    mapping_file = MAPPING_FILE
    mappings = MAPPINGS

    def configure(self, config: Mapping[str, Any]) -> None:
        """The app's client id and secret and the shop (a ValueError says which are missing)."""
        name = self.name
        missing = [k for k in ("client_id", "client_secret", "grant_id") if not config.get(k)]
        if missing:
            raise ValueError(
                f"connection {name!r}: Youzan pushes need {', '.join(missing)} "
                f"(store the secret with `tongbu vault set {name}.client_secret`)"
            )
        self.client_id, self.secret = str(config["client_id"]), str(config["client_secret"])
        self.grant_id = str(config["grant_id"])
        remember_secret(self.secret)

    def ack(self) -> Response:
        """What Youzan counts as delivered."""
        return JSONResponse({"code": 0, "msg": "success"})

    def parse(
        self, query: Mapping[str, str], headers: Mapping[str, str], body: bytes, received_at: float
    ) -> list[InboundEvent]:
        """Verify one push (shape, client, shop, md5 signature — before ``msg`` is decoded)."""
        push = json_object(body)
        msg, sign = push.get("msg"), push.get("sign")
        if not isinstance(msg, str) or not isinstance(sign, str):
            raise EventRejected(401, "msg and sign are required")
        if push.get("client_id") != self.client_id:
            raise EventRejected(401, "push is for another app")
        if len(sign) != 32 or not _HEX.issuperset(sign):
            raise EventRejected(401, "signature check failed")
        expected = push_signature(self.client_id, msg, self.secret)
        if not hmac.compare_digest(expected, sign):
            raise EventRejected(401, "signature check failed")
        if str(push.get("kdt_id")) != self.grant_id:
            raise EventRejected(403, "push is from another shop")
        kind = str(push.get("type") or "")[:64]
        tid = str(push.get("id") or "")[:64]
        msg_id = (
            str(push.get("msg_id") or "")[:64]
            or hashlib.sha1(f"{tid}:{kind}:{push.get('version')}".encode()).hexdigest()
        )
        if push.get("test"):
            return [InboundEvent(self.name, msg_id, "test", "test", {}, received_at)]
        payload = json_object(urllib.parse.unquote(msg), "msg")
        stream = "trades" if kind.startswith("trade_") else kind.split("_", 1)[0] or "other"
        version = push.get("version")
        return [
            InboundEvent(
                source=self.name,
                dedup_key=msg_id,
                record_key=f"{stream}:{tid}",
                kind=kind,
                payload=payload,
                received_at=received_at,
                occurred_at=float(version) if isinstance(version, int | float) else None,
            )
        ]

    def prepare(self, record_key: str, events: list[InboundEvent]) -> PreparedChange:
        """The newest trade among ``events``, mapped for the hub."""
        stream, _, tid = record_key.partition(":")
        if stream != "trades":
            return PreparedChange(write=None, status="ignored", summary={"ignored": [e.kind for e in events]})
        newest = max(events, key=lambda e: (e.occurred_at or 0.0, e.id or 0))
        try:
            record = trade_record(newest.payload, self.grant_id)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            reason = f"push msg is not a trade: {type(exc).__name__} {str(exc)[:100]}"
            return self.writer.quarantine_change("trades", tid, reason, newest.payload)
        return self.writer.upsert("trades", record, source_id=tid)
