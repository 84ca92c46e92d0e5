"""The IoT connection's settings (``connections.<name>.config`` with ``connector: iot``), one schema for
the long-running consumer (``tongbu iot run``) and the batch tap (``tap-iot``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from singer_sdk import typing as th

from connectors.kit.mqtt import BrokerAddress

#: what the consumer subscribes to by default: Alink device topics and the ThingsBoard gateway API
DEFAULT_TOPICS = (
    "/sys/+/+/thing/event/+/post",
    "v1/gateway/telemetry",
    "v1/gateway/attributes",
    "+/+/v1/devices/me/telemetry",
    "+/+/v1/devices/me/attributes",
)


@dataclass
class IotSettings:
    """Validated settings; :meth:`from_config` rejects unknown keys with a did-you-mean."""

    broker: str = "mqtt://127.0.0.1:1883"
    broker_username: str | None = None
    broker_password: str | None = field(default=None, repr=False)
    client_id: str = "tongbu-iot"
    topics: list[str] = field(default_factory=lambda: list(DEFAULT_TOPICS))
    batch_size: int = 5000
    batch_wait_ms: int = 50
    max_future_seconds: float = 300.0
    silent_after_seconds: float = 3600.0
    ledger_days: float = 2.0
    alert_channel: str | None = None
    push_secret: str | None = field(default=None, repr=False)
    retained_wait_seconds: float = 1.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> IotSettings:
        """Settings from a connection config; ValueError (one line) on an unknown key or bad value."""
        import difflib

        known = {f.name for f in fields(cls)}
        for key in config:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"iot: unknown setting {key!r}{hint}")
        s = cls(**{k: v for k, v in config.items() if v is not None})
        BrokerAddress.parse(s.broker)
        if not 1 <= int(s.batch_size) <= 100000:
            raise ValueError("iot: batch_size must be from 1 to 100000")
        if not s.topics or not all(isinstance(t, str) and t for t in s.topics):
            raise ValueError("iot: topics must be a non-empty list of MQTT topic filters")
        return s

    @property
    def address(self) -> BrokerAddress:
        """The broker, with the configured credentials."""
        import dataclasses

        a = BrokerAddress.parse(self.broker)
        if self.broker_username is not None:
            a = dataclasses.replace(a, username=self.broker_username, password=self.broker_password)
        return a


def iot_properties() -> list[th.Property]:
    """The settings as singer-sdk properties (the tap's config schema, checked by the project file)."""
    return [
        th.Property("broker", th.StringType, default="mqtt://127.0.0.1:1883",
                    description="mqtt://host:port (MQTT 5) or mqtt311://host:port"),
        th.Property("broker_username", th.StringType),
        th.Property("broker_password", th.StringType, secret=True),
        th.Property("client_id", th.StringType, default="tongbu-iot",
                    description="Fixed client id of the durable session (one consumer per id)"),
        th.Property("topics", th.ArrayType(th.StringType)),
        th.Property("batch_size", th.IntegerType, default=5000),
        th.Property("batch_wait_ms", th.IntegerType, default=50),
        th.Property("max_future_seconds", th.NumberType, default=300),
        th.Property("silent_after_seconds", th.NumberType, default=3600),
        th.Property("ledger_days", th.NumberType, default=2),
        th.Property("alert_channel", th.StringType, description="alerts.channels.<name> for new cases"),
        th.Property("push_secret", th.StringType, secret=True,
                    description="HMAC secret of the HTTP push mode (tongbu serve)"),
        th.Property("retained_wait_seconds", th.NumberType, default=1.0),
    ]  # fmt: skip
