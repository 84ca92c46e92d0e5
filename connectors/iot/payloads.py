"""Decode what devices publish (ThingsBoard device/gateway API, Alink JSON) and what Aliyun pushes
(server-side subscription JSON) into one shape, :class:`Reading`, or a :class:`Rejected` with the reason.

Parsing is linear in the payload, bounded (:data:`MAX_PAYLOAD`) and never trusts a type: a value of
the wrong kind rejects the message with a reason, it never raises.

Identity: a ThingsBoard device publishes to ``v1/devices/me/...`` and the platform knows it by its
access token, which a consumer on a shared broker cannot see. So device-API messages are read under a
per-device mount prefix (``<prefix>/<device>/v1/devices/me/telemetry``, what a broker bridge or mount
point produces), and the ThingsBoard **gateway** API (``v1/gateway/telemetry``), which names each
device in the payload, is read as is. Alink topics carry ``/sys/{productKey}/{deviceName}/``.

Message ids (what makes a redelivery a duplicate): Alink's ``id`` is unique per device per day, so
the key is ``alink:{pk}/{dn}:{day}:{id}`` with the day of the message's own time (+08:00); a
ThingsBoard message has no id, so the key is a digest of the device, its timestamp and its content
(the same values at the same millisecond from the same device are the same message).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

#: largest payload accepted (ThingsBoard's default limit is 64 KiB per message as well)
MAX_PAYLOAD = 65536
CHINA = dt.timezone(dt.timedelta(hours=8))
#: timestamps before this are invalid (a device clock that never synced reports 1970)
MIN_TS_MS = 946684800000  # 2000-01-01
#: keys that carry the running-hours counter, per platform convention (case-insensitive)
RUN_HOURS_KEYS = (
    "runhours",
    "run_hours",
    "runninghours",
    "runningtime",
    "hoodrunningtime",
    "run_hours_total",
)
#: keys that carry a fault code in telemetry (0 = cleared)
FAULT_KEYS = ("faultcode", "fault_code", "errorcode", "error_code")

_ALINK = re.compile(r"^/sys/([^/]{1,64})/([^/]{1,64})/thing/event/([^/]{1,64})/post$")
_TB_MOUNTED = re.compile(r"^(?:[^/]{1,64}/)?([^/]{1,128})/v1/devices/me/(telemetry|attributes)$")


@dataclass
class Reading:
    """One device message, decoded. ``kind`` is telemetry | attributes | event | status."""

    platform: str  # thingsboard | alink | aliyun
    device: str  # the device's serial / deviceName (the hub's join key)
    kind: str
    ts_ms: int
    dedup_key: str
    values: dict[str, Any] = field(default_factory=dict)
    product: str | None = None  # productKey / device profile
    event: str | None = None  # event identifier (Alink) or the telemetry key that carried a fault
    error_code: int | None = None  # fault code: > 0 open, 0 cleared
    topic: str = ""

    @property
    def run_hours(self) -> float | None:
        """The running-hours counter in this reading, if it carries one."""
        for key, value in self.values.items():
            if (
                key.lower() in RUN_HOURS_KEYS
                and isinstance(value, int | float)
                and not isinstance(value, bool)
            ):
                return float(value)
        return None


@dataclass
class Rejected:
    """A message that cannot be applied, with the reason (it goes to the IoT quarantine)."""

    reason: str
    topic: str
    payload: str
    device: str | None = None


def _digest(*parts: Any) -> str:
    return hashlib.blake2b(
        json.dumps(parts, sort_keys=True, separators=(",", ":")).encode(), digest_size=12
    ).hexdigest()


def _day(ts_ms: int) -> str:
    return dt.datetime.fromtimestamp(ts_ms / 1000, CHINA).strftime("%Y%m%d")


def check_ts(ts: Any, now_ms: int, max_future_ms: int) -> str | None:
    """Why ``ts`` (ms) is not acceptable, or None."""
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        return f"timestamp {str(ts)[:40]!r} is not a number of milliseconds"
    if ts < MIN_TS_MS:
        return f"timestamp {int(ts)} is before 2000-01-01 (device clock not set, or seconds instead of ms)"
    if ts > now_ms + max_future_ms:
        ahead = (ts - now_ms) / 1000
        return f"timestamp {int(ts)} is {ahead:.0f} s in the future (device clock skew)"
    return None


def _fault_of(values: dict[str, Any]) -> tuple[str | None, int | None]:
    for key, value in values.items():
        if key.lower() in FAULT_KEYS and isinstance(value, int) and not isinstance(value, bool):
            return key, value
    return None, None


def _scalar_values(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if not isinstance(k, str) or len(k) > 128:
            return None
        if isinstance(v, float) and not math.isfinite(v):
            return None
        out[k] = v
    return out


class Decoder:
    """Topic + payload -> readings and rejections, with the clock rules of :func:`check_ts`."""

    def __init__(self, *, max_future_s: float = 300.0, clock: Any = None) -> None:
        import time

        self.max_future_ms = int(max_future_s * 1000)
        self._clock = clock or time.time

    def decode(self, topic: str, payload: bytes) -> Iterator[Reading | Rejected]:
        """Every reading in one MQTT message (a ThingsBoard array or gateway message holds several)."""
        text = payload[:2048].decode("utf-8", "replace")
        if len(payload) > MAX_PAYLOAD:
            yield Rejected(
                f"payload of {len(payload)} bytes is over the {MAX_PAYLOAD} byte limit", topic, text
            )
            return
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            yield Rejected(f"payload is not JSON: {str(exc)[:80]}", topic, text)
            return
        now_ms = int(self._clock() * 1000)
        if m := _ALINK.match(topic):
            yield from self._alink(m.group(1), m.group(2), m.group(3), doc, topic, text, now_ms)
        elif topic in ("v1/gateway/telemetry", "v1/gateway/attributes"):
            yield from self._tb_gateway(topic.rsplit("/", 1)[1], doc, topic, text, now_ms)
        elif m := _TB_MOUNTED.match(topic):
            yield from self._tb_device(m.group(1), m.group(2), doc, topic, text, now_ms)
        else:
            yield Rejected("topic is neither ThingsBoard nor Alink", topic, text)

    # ThingsBoard -------------------------------------------------------------------------------------
    def _tb_entries(self, doc: Any) -> list[tuple[Any, Any]] | None:
        """``{"k":v}``, ``{"ts":…,"values":{…}}`` or a list of the latter -> [(ts or None, values)]."""
        items = doc if isinstance(doc, list) else [doc]
        out = []
        for item in items:
            if not isinstance(item, dict):
                return None
            if "values" in item and "ts" in item:
                out.append((item["ts"], item["values"]))
            else:
                out.append((None, item))
        return out

    def _tb_device(
        self, device: str, kind: str, doc: Any, topic: str, text: str, now_ms: int
    ) -> Iterator[Reading | Rejected]:
        if kind == "attributes":
            values = _scalar_values(doc)
            if values is None:
                yield Rejected("attributes must be a JSON object of key: value", topic, text, device)
                return
            # Attributes are state, not events: the latest wins, and a repeat is harmless.
            yield Reading(
                "thingsboard",
                device,
                "attributes",
                now_ms,
                f"tb:{device}:a:{_digest(values)}",
                values,
                topic=topic,
            )
            return
        entries = self._tb_entries(doc)
        if entries is None:
            yield Rejected(
                "telemetry must be an object, {ts, values} or a list of {ts, values}", topic, text, device
            )
            return
        yield from self._tb_telemetry(device, entries, topic, text, now_ms)

    def _tb_telemetry(
        self, device: str, entries: list[tuple[Any, Any]], topic: str, text: str, now_ms: int
    ) -> Iterator[Reading | Rejected]:
        for ts, raw in entries:
            values = _scalar_values(raw)
            if values is None:
                yield Rejected("telemetry values must be a JSON object of key: value", topic, text, device)
                continue
            if ts is None:  # ThingsBoard uses the server's receive time; so do we
                ts = now_ms
            elif why := check_ts(ts, now_ms, self.max_future_ms):
                yield Rejected(why, topic, text, device)
                continue
            ts = int(ts)
            key, code = _fault_of(values)
            yield Reading(
                "thingsboard",
                device,
                "telemetry",
                ts,
                f"tb:{device}:{ts}:{_digest(values)}",
                values,
                event=key,
                error_code=code,
                topic=topic,
            )

    def _tb_gateway(
        self, kind: str, doc: Any, topic: str, text: str, now_ms: int
    ) -> Iterator[Reading | Rejected]:
        if not isinstance(doc, dict):
            yield Rejected("a gateway message must be an object keyed by device name", topic, text)
            return
        for device, body in doc.items():
            if not isinstance(device, str) or not device or len(device) > 128:
                yield Rejected("gateway device name must be a non-empty string", topic, text)
                continue
            if kind == "attributes":
                yield from self._tb_device(device, "attributes", body, topic, text, now_ms)
                continue
            entries = self._tb_entries(body)
            if entries is None:
                yield Rejected("gateway telemetry must be a list of {ts, values}", topic, text, device)
                continue
            yield from self._tb_telemetry(device, entries, topic, text, now_ms)

    # Alink ----------------------------------------------------------------------------------------------
    def _alink(
        self, pk: str, dn: str, what: str, doc: Any, topic: str, text: str, now_ms: int
    ) -> Iterator[Reading | Rejected]:
        if not isinstance(doc, dict):
            yield Rejected("an Alink message must be a JSON object", topic, text, dn)
            return
        mid, params = doc.get("id"), doc.get("params")
        if not isinstance(mid, str) or not mid.isdigit() or len(mid) > 20:
            # Alink: id is a string of digits, unique per device per day (460 otherwise)
            yield Rejected(f"Alink id {str(mid)[:30]!r} must be a string of digits", topic, text, dn)
            return
        if not isinstance(params, dict):
            yield Rejected("Alink params must be an object", topic, text, dn)
            return
        if what == "property":
            values: dict[str, Any] = {}
            times = []
            for name, prop in params.items():
                if isinstance(prop, dict) and "value" in prop:
                    values[name] = prop["value"]
                    times.append(prop.get("time", now_ms))
                else:  # the short form {"Power": "on"}
                    values[name] = prop
            ts = max(times) if times else now_ms
            if why := check_ts(ts, now_ms, self.max_future_ms):
                yield Rejected(why, topic, text, dn)
                return
            key, code = _fault_of(values)
            yield Reading(
                "alink",
                dn,
                "telemetry",
                int(ts),
                f"alink:{pk}/{dn}:{_day(int(ts))}:{mid}",
                values,
                product=pk,
                event=key,
                error_code=code,
                topic=topic,
            )
            return
        value, ts = params.get("value"), params.get("time", now_ms)
        if not isinstance(value, dict):
            yield Rejected(f"Alink event {what} params.value must be an object", topic, text, dn)
            return
        if why := check_ts(ts, now_ms, self.max_future_ms):
            yield Rejected(why, topic, text, dn)
            return
        code = value.get("ErrorCode")
        if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
            yield Rejected(
                f"Alink event {what} ErrorCode {str(code)[:20]!r} is not an integer", topic, text, dn
            )
            return
        yield Reading(
            "alink",
            dn,
            "event",
            int(ts),
            f"alink:{pk}/{dn}:{_day(int(ts))}:{mid}",
            dict(value),
            product=pk,
            event=what,
            error_code=code,
            topic=topic,
        )

    # Aliyun server-side subscription (HTTP push / AMQP) ----------------------------------------------
    def decode_aliyun(self, doc: Any, topic: str = "aliyun") -> Iterator[Reading | Rejected]:
        """One server-side subscription message: property ``items`` or an event (``identifier``)."""
        text = json.dumps(doc, ensure_ascii=False)[:2048] if not isinstance(doc, str) else doc[:2048]
        if not isinstance(doc, dict):
            yield Rejected("a subscription message must be a JSON object", topic, text)
            return
        pk, dn = doc.get("productKey"), doc.get("deviceName")
        if not isinstance(pk, str) or not isinstance(dn, str) or not pk or not dn:
            yield Rejected("productKey and deviceName are required", topic, text)
            return
        now_ms = int(self._clock() * 1000)
        rid = doc.get("requestId") or doc.get("messageId") or ""
        if isinstance(doc.get("items"), dict):
            values, times = {}, []
            for name, item in doc["items"].items():
                if not isinstance(item, dict) or "value" not in item:
                    yield Rejected(f"items.{name} must be {{value, time}}", topic, text, dn)
                    return
                values[name] = item["value"]
                times.append(item.get("time", doc.get("gmtCreate", now_ms)))
            ts = max(times) if times else doc.get("gmtCreate", now_ms)
            if why := check_ts(ts, now_ms, self.max_future_ms):
                yield Rejected(why, topic, text, dn)
                return
            key, code = _fault_of(values)
            dedup = f"alink:{pk}/{dn}:{_day(int(ts))}:{rid}" if rid else f"aliyun:{pk}/{dn}:{_digest(doc)}"
            yield Reading(
                "aliyun",
                dn,
                "telemetry",
                int(ts),
                dedup,
                values,
                product=pk,
                event=key,
                error_code=code,
                topic=topic,
            )
            return
        ident = doc.get("identifier")
        if isinstance(ident, str) and ident:
            value, ts = doc.get("value"), doc.get("time", now_ms)
            if not isinstance(value, dict):
                yield Rejected(f"event {ident} value must be an object", topic, text, dn)
                return
            if why := check_ts(ts, now_ms, self.max_future_ms):
                yield Rejected(why, topic, text, dn)
                return
            code = value.get("ErrorCode")
            if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
                yield Rejected(f"event {ident} ErrorCode is not an integer", topic, text, dn)
                return
            dedup = f"alink:{pk}/{dn}:{_day(int(ts))}:{rid}" if rid else f"aliyun:{pk}/{dn}:{_digest(doc)}"
            yield Reading(
                "aliyun",
                dn,
                "event",
                int(ts),
                dedup,
                dict(value),
                product=pk,
                event=ident,
                error_code=code,
                topic=topic,
            )
            return
        if isinstance(doc.get("status"), str):  # device status change: {"status": "online"|"offline"}
            ts = doc.get("lastTime") or doc.get("time") or now_ms
            ts = ts if isinstance(ts, int) else now_ms
            yield Reading(
                "aliyun",
                dn,
                "status",
                ts,
                f"aliyun:{pk}/{dn}:s:{_digest(doc)}",
                {"online": doc["status"] == "online"},
                product=pk,
                topic=topic,
            )
            return
        yield Rejected("neither items, an event identifier nor a status", topic, text, dn)
