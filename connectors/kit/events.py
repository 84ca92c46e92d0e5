"""What a connector provides to receive pushed events (webhooks, push messages) in ``tongbu serve``.

A connector that receives pushes defines ONE :class:`EventSource` subclass in
``connectors/<name>/events.py``; :func:`connectors.registry.load_event_source` finds it (no central
list). ``tongbu serve`` mounts one instance per configured connection at ``/hooks/<connection>``:
``parse`` verifies and decodes a delivery (cheap checks and the signature first), the server stores the
events in its inbox and answers at once with ``ack``, and a worker later calls ``prepare`` per record,
in order, whose ``write`` runs inside the shared hub transaction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sqlalchemy import Connection, Engine
from starlette.responses import PlainTextResponse, Response

from tongbu.config import DEFAULT_TENANT


@dataclass
class InboundEvent:
    """One decoded event. ``record_key`` orders and coalesces; ``dedup_key`` makes replays no-ops."""

    source: str
    dedup_key: str
    record_key: str
    kind: str
    payload: dict[str, Any]
    received_at: float = 0.0
    occurred_at: float | None = None
    id: int | None = None
    attempts: int = 0


class EventRejected(Exception):
    """The request is not an authentic, acceptable event; nothing is stored. The message is public."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason


@dataclass
class PreparedChange:
    """The I/O half of applying a record's events (fetched and mapped), ready to be committed.

    ``write`` runs inside the shared transaction and returns counts (written, unchanged, deleted,
    quarantined); None means there is nothing to write (the event is only observed).
    ``assets`` are hub assets the write changes; ``observed`` are source assets the event is about.
    """

    write: Callable[[Connection], Mapping[str, int]] | None
    assets: tuple[str, ...] = ()
    observed: tuple[str, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)
    status: str = "applied"


class EventSource(ABC):
    """A connector's webhook: decode and verify requests, and turn events into hub changes."""

    #: connector name this source serves (its folder under ``connectors/``)
    connector: ClassVar[str] = ""

    def __init__(
        self, name: str, config: Mapping[str, Any], *, engine: Engine, tenant: str = DEFAULT_TENANT
    ) -> None:
        self.name = name
        self.config = dict(config)
        self.engine = engine
        self.tenant = tenant

    @property
    def path(self) -> str:
        """Where the webhook is mounted."""
        return f"/hooks/{self.name}"

    def verify_url(self, query: Mapping[str, str]) -> str:
        """Answer a URL-verification GET (the body to echo); raise :class:`EventRejected` if not genuine."""
        raise EventRejected(405, "this source has no URL verification")

    @abstractmethod
    def parse(
        self, query: Mapping[str, str], headers: Mapping[str, str], body: bytes, received_at: float
    ) -> list[InboundEvent]:
        """Verify and decode one delivery; raise :class:`EventRejected` for anything not authentic."""

    def ack(self) -> Response:
        """The answer that tells the sender the delivery was accepted."""
        return PlainTextResponse("success")

    @abstractmethod
    def prepare(self, record_key: str, events: list[InboundEvent]) -> PreparedChange:
        """Fetch what the events are about and map it (no hub writes here; they happen in ``write``)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients."""
