"""What a system must offer to take part in a two-way sync (a *spoke* of the hub).

Connectors implement it (``connectors/<system>/spoke.py``); the engine in ``pipelines/sync`` drives it.
That module also defines ``make_spoke(config, *, system) -> Spoke`` (see :data:`SpokeFactory`): the
registry finds it (``connectors.registry.load_spoke_factory``) and a project's ``syncs:`` build their
spokes with it from a connection's resolved config, so no list of spokes is kept anywhere.

A spoke speaks hub field names in canonical form (``tongbu.canon``): translating to and from the
system's own fields, and sending only what it is given (Kingdee's ``NeedUpDateFields``), is the
connector's job. Every method may raise :class:`SpokeError` subclasses; the engine retries transient
ones on the next cycle and reports the rest per record, never losing the change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class SpokeRecord:
    """One record as a system holds it now."""

    external_id: str
    values: Mapping[str, Any] = field(default_factory=dict)
    modified_at: dt.datetime | None = None
    author: str | None = None
    #: Deleted or voided in the system.
    deleted: bool = False


class SpokeError(RuntimeError):
    """A spoke call that failed; ``transient`` ones are retried on the next cycle."""

    transient = False


class TransientSpokeError(SpokeError):
    """Throttled, locked, timed out or a 5xx: the same call may succeed later."""

    transient = True


@runtime_checkable
class Spoke(Protocol):
    """A linked system, as the two-way engine sees it."""

    system: str

    def changes(self, object_name: str, cursor: Any) -> tuple[list[SpokeRecord], Any]:
        """Records changed since ``cursor`` (None: everything), and the cursor after them."""
        ...

    def fetch(self, object_name: str, external_ids: Sequence[str]) -> dict[str, SpokeRecord]:
        """The current state of some records (missing ids are absent from the answer)."""
        ...

    def find(self, object_name: str, keys: Mapping[str, Any]) -> str | None:
        """The id of an existing record that matches identity keys (number, credit code, intent key)."""
        ...

    def create(self, object_name: str, values: Mapping[str, Any], intent_key: str) -> str:
        """Create a record and return its id; ``intent_key`` makes a retried create findable."""
        ...

    def update(self, object_name: str, external_id: str, values: Mapping[str, Any]) -> None:
        """Change exactly the given fields of a record."""
        ...

    def delete(self, object_name: str, external_id: str, action: str) -> None:
        """Delete (``delete``) or void (``void``) a record."""
        ...

    def scan(self, object_name: str) -> Iterable[SpokeRecord]:
        """Every record, for reconciliation (out-of-band edits that no change feed shows)."""
        ...


class SpokeFactory(Protocol):
    """``make_spoke`` of ``connectors/<name>/spoke.py``: a spoke from a connection's resolved config."""

    def __call__(self, config: Mapping[str, Any], *, system: str) -> Spoke: ...
