"""An amqtt authentication plugin that asks a Python callback (used by :class:`~connectors.kit.mqtt.EmbeddedBroker`).

amqtt loads plugins by dotted name with a config dict, so the callback itself cannot travel in the
config: each embedded broker registers its callback under its ``host:port`` in :data:`CALLBACKS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

#: ``host:port`` of an embedded broker -> its ``authenticate(client_id, username, password)``
CALLBACKS: dict[str, Callable[[str, str | None, str | None], bool] | None] = {}


class CallbackAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt's base is untyped here
    """Accept a CONNECT when the broker's registered callback says so (refuse if there is none)."""

    @dataclass
    class Config:
        """Which broker's callback to ask."""

        broker: str = ""

    async def authenticate(self, *, session: Session) -> bool:
        """amqtt's hook: True accepts the connection."""
        callback = CALLBACKS.get(self.config.broker) if self.config.broker else None
        if callback is None and len(CALLBACKS) == 1:
            callback = next(iter(CALLBACKS.values()))
        if callback is None:
            return False
        password = session.password
        if isinstance(password, bytes):
            password = password.decode("utf-8", "replace")
        return bool(callback(session.client_id or "", session.username, password))
