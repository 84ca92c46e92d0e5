"""Stream bases for the two shapes most REST sources page in, so a connector declares only its endpoints.

* :class:`KeysetStream` — "records changed since ``(updated_at, id)``", ascending, resumable after
  any record: a compound cursor (:mod:`connectors.kit.cursor`) kept in the Singer state, a lookback
  window, ``start_date``, and keyset paging (:class:`~connectors.kit.pagination.KeysetPaginator`).
  A subclass implements :meth:`KeysetStream.fetch_page` (one API call).
* :class:`OpaqueCursorStream` — a full read paged by an opaque ``next_cursor`` the source hands out
  (:class:`~connectors.kit.pagination.CursorPaginator`). A subclass implements
  :meth:`OpaqueCursorStream.fetch_page`.

Both read their page size from the config key ``page_size``. Records with nested line items need
nothing special: they are one record with an array property.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

from singer_sdk import Stream

from connectors.kit.cursor import CompoundCursor, ReadPlan, plan_read
from connectors.kit.pagination import CursorPaginator, KeysetPaginator, paginate
from connectors.kit.sdk_compat import CustomBookmarkStream

__all__ = ["KeysetStream", "OpaqueCursorStream", "utc_iso"]

_UNSET: Any = object()


def utc_iso(value: str) -> str:
    """``value`` (any ISO 8601 time; naive means UTC) as fixed-width UTC with milliseconds, the form
    :class:`~connectors.kit.cursor.CompoundCursor` compares as text."""
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).isoformat(timespec="milliseconds")


class _PagedStream(Stream):
    default_page_size: ClassVar[int] = 500
    #: the API's largest page (None: no cap); ``page_size`` is clamped to it
    max_page_size: ClassVar[int | None] = None

    @property
    def page_size(self) -> int:
        """Records per API call (config ``page_size``), at most :attr:`max_page_size`."""
        size = max(1, int(self.config.get("page_size") or self.default_page_size))
        return size if self.max_page_size is None else min(self.max_page_size, size)


class KeysetStream(CustomBookmarkStream, _PagedStream):
    """Records in ascending ``(replication_key, id_key)`` order, read after a compound cursor.

    The bookmark is ``{replication_key, replication_key_value, tiebreak_key, tiebreak_value}``, the
    same shape the in-process runner stores (:meth:`cursor_for_record`), so records that share a
    timestamp are never skipped at a page boundary or between runs.
    """

    replication_key: str = "updated_at"
    #: the record's id: the tie-break of the cursor (an integer)
    id_key: ClassVar[str] = "id"
    is_sorted = True

    def __init__(self, tap: Any) -> None:
        super().__init__(tap)
        self._start_override: Any = _UNSET

    def fetch_page(self, since: str | None, after_id: int | None, limit: int) -> Sequence[dict[str, Any]]:
        """One API call: at most ``limit`` records in ascending ``(updated_at, id)`` order, those
        strictly after ``(since, after_id)``; ``after_id`` None means ``updated_at >= since``, ``since``
        None means from the first record. ``since`` is fixed-width UTC ISO 8601 (:func:`utc_iso`)."""
        raise NotImplementedError

    # -- cursor ------------------------------------------------------------------------------------
    def cursor_for_record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The bookmark that resumes right after ``record``."""
        return {
            "replication_key": self.replication_key,
            "replication_key_value": record[self.replication_key],
            "tiebreak_key": self.id_key,
            "tiebreak_value": record[self.id_key],
        }

    def start_cursor_from(self, cursor: Mapping[str, Any] | None) -> None:
        """Start the next read after ``cursor`` (a :meth:`cursor_for_record` bookmark) instead of the
        Singer state; None reads from the beginning (or ``start_date``)."""
        self._start_override = None if cursor is None else dict(cursor)

    def _cursor(self, bookmark: Mapping[str, Any] | None) -> CompoundCursor | None:
        if not bookmark or not bookmark.get("replication_key_value"):
            return None
        if bookmark.get("replication_key", self.replication_key) != self.replication_key:
            return None
        tiebreak = bookmark.get("tiebreak_value")
        return CompoundCursor(
            utc_iso(str(bookmark["replication_key_value"])), None if tiebreak is None else int(tiebreak)
        )

    def starting_cursor(self, context: Mapping[str, Any] | None = None) -> CompoundCursor | None:
        """Where this read starts: an override, else the stream's Singer bookmark."""
        if self._start_override is not _UNSET:
            return self._cursor(self._start_override)
        return self._cursor(self.get_context_state(dict(context) if context else None))

    def update_bookmark(self, state: dict[str, Any], record: Mapping[str, Any]) -> None:
        """Advance the compound bookmark, never backwards (lookback re-reads are older)."""
        new = self._cursor(self.cursor_for_record(record))
        if new is not None and new.after(self._cursor(state)):
            state.update(self.cursor_for_record(record))

    # -- reading -----------------------------------------------------------------------------------
    def read_plan(self, context: Mapping[str, Any] | None) -> ReadPlan:
        """The read's plan: the starting cursor minus ``lookback_seconds``, never before ``start_date``."""
        start_date = self.config.get("start_date")
        return plan_read(
            self.starting_cursor(context),
            lookback_seconds=float(self.config.get("lookback_seconds") or 0),
            start=utc_iso(str(start_date)) if start_date else None,
            nulls=False,
        )

    def read_start(self, context: Mapping[str, Any] | None) -> tuple[CompoundCursor | None, str | None]:
        """``(after, since)`` for a source that filters only by an inclusive change time: ``since`` is
        the earliest change to ask for (None: everything), ``after`` the cursor a record must be past
        (:meth:`is_past`) to be emitted — the inclusive filter re-sends the records at the cursor."""
        plan = self.read_plan(context)
        after = plan.ts_after
        return after, plan.ts_floor or (after.ts if after else None)

    @staticmethod
    def is_past(after: CompoundCursor | None, ts: str, record_id: int) -> bool:
        """Whether the record at ``(ts, record_id)`` (``ts`` any ISO 8601 time) comes after ``after``."""
        return after is None or CompoundCursor(utc_iso(ts), record_id).after(after)

    def get_records(self, context: Mapping[str, Any] | None) -> Iterator[dict[str, Any]]:
        """Every record after the starting cursor (minus ``lookback_seconds``, never before
        ``start_date``), ascending."""
        plan = self.read_plan(context)
        if plan.ts_floor is not None:
            first: tuple[str | None, int | None] = (plan.ts_floor, None)
        elif plan.ts_after is not None:
            first = (plan.ts_after.ts, plan.ts_after.id)
        else:
            first = (None, None)
        rk, ik, size = self.replication_key, self.id_key, self.page_size

        def fetch(token: tuple[str | None, int | None] | None) -> Sequence[dict[str, Any]]:
            since, after_id = token or first
            return self.fetch_page(since, after_id, size)

        for page in paginate(fetch, KeysetPaginator(lambda r: (utc_iso(str(r[rk])), int(r[ik])))):
            yield from page


class OpaqueCursorStream(_PagedStream):
    """A full read paged by the source's opaque cursor (``next_cursor``; missing or empty = done)."""

    #: body key of the next cursor, and of the records
    cursor_key: ClassVar[str] = "next_cursor"
    records_key: ClassVar[str] = "data"

    def fetch_page(self, cursor: str | None, limit: int) -> Mapping[str, Any]:
        """One API call: the decoded page after ``cursor`` (None: the first page)."""
        raise NotImplementedError

    def get_records(self, context: Mapping[str, Any] | None) -> Iterator[dict[str, Any]]:
        """Every record, page by page, in the source's order."""
        size = self.page_size
        for page in paginate(lambda token: self.fetch_page(token, size), CursorPaginator(self.cursor_key)):
            yield from page.get(self.records_key) or []
