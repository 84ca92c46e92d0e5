"""The only place tongbu reaches into singer-sdk internals.

singer-sdk has no public hook for three things tongbu needs; each is wrapped here once, and
``tests/test_kit_sdk_compat.py`` fails the moment an SDK upgrade changes the signature or the
behaviour we rely on (the SDK is pinned to ``>=0.54,<0.56``):

* **a custom bookmark** — :class:`CustomBookmarkStream`: the SDK's bookmark holds only
  ``replication_key_value`` and rejects re-read (lookback) records as unsorted; a stream with a
  compound cursor implements the public :meth:`CustomBookmarkStream.update_bookmark` instead, and the
  SDK's private ``Stream._increment_stream_state(latest_record, *, context)`` calls it;
* **quarantine instead of failing** — :class:`QuarantiningSinkMixin`: the SDK validates each record in
  the private ``Sink._validate_and_parse(record)`` and either raises or logs a traceback; a sink that
  quarantines bad records marks them and keeps going;
* **the starting bookmark outside a Singer sync** — :func:`write_starting_replication_value`: the
  in-process runner reads ``get_records`` directly and needs the state the SDK writes at the start of
  a sync (private ``Stream._write_starting_replication_value(context)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from singer_sdk import Stream
from singer_sdk.exceptions import InvalidRecord

__all__ = [
    "INVALID_RECORD_KEY",
    "CustomBookmarkStream",
    "QuarantiningSinkMixin",
    "write_starting_replication_value",
]

#: record key a :class:`QuarantiningSinkMixin` sets to the reason a record failed validation
INVALID_RECORD_KEY = "__tongbu_invalid__"


class CustomBookmarkStream(Stream):
    """A stream that keeps its own bookmark shape (e.g. ``(updated_at, id)``) in its Singer state."""

    def update_bookmark(self, state: dict[str, Any], record: Mapping[str, Any]) -> None:
        """Update this stream's (or partition's) ``state`` in place after ``record`` was emitted.

        Subclasses implement it; it must never move the bookmark backwards.
        """
        raise NotImplementedError

    # singer-sdk private API: Stream._increment_stream_state(latest_record, *, context=None)
    def _increment_stream_state(self, latest_record: dict[str, Any], *, context: Any = None) -> None:
        if latest_record:
            self.update_bookmark(self.get_context_state(context), latest_record)


class QuarantiningSinkMixin:
    """Mix into a singer-sdk sink (before the SDK class) to mark invalid records instead of failing.

    A record that fails JSON-schema validation gets ``record[INVALID_RECORD_KEY] = "schema: ..."`` and
    is passed on untouched (no timestamp parsing), so ``process_batch`` can quarantine it with the
    reason. Valid records are passed on as they came, too: the mapping layer parses what it needs.
    """

    _validator: Any

    # singer-sdk private API: Sink._validate_and_parse(record) -> record
    def _validate_and_parse(self, record: dict[str, Any]) -> dict[str, Any]:
        try:
            if self._validator is not None:
                self._validator.validate(record)
        except InvalidRecord as exc:
            record[INVALID_RECORD_KEY] = f"schema: {exc}"
        return record


def write_starting_replication_value(stream: Any, context: Mapping[str, Any] | None = None) -> None:
    """Write the stream's starting bookmark into its state, as the SDK does at the start of a sync
    (nothing for a stream that is not a singer-sdk one)."""
    if not isinstance(stream, Stream):
        return
    # singer-sdk private API: Stream._write_starting_replication_value(context)
    stream._write_starting_replication_value(dict(context) if context is not None else None)
