"""Incremental cursor helpers: compound ``(updated_at, id)`` cursors, lookback, NULL timestamps.

A source read incrementally by "modified since" has three traps this module handles once:

* **ties** — many rows share a timestamp, and a page can end in the middle of them. The cursor is the
  pair ``(ts, id)`` and a page continues strictly after it (:meth:`CompoundCursor.after`).
* **late commits** — a transaction can commit after our read with a timestamp at or before the
  bookmark. A ``lookback`` window re-reads that tail (:func:`plan_read`); the re-read rows are
  duplicates the target upserts, and :class:`BoundaryDedupe` drops the ones this run already sent.
* **rows whose timestamp is NULL** — NULL fails every comparison, so a keyset on the timestamp can
  never step past one: a page ending on a NULL row used to restart at a made-up date and lose every
  NULL row after it. NULL rows sort first (SQL Server, Kingdee's database, sorts NULLs first) and are
  read in their own pass, keyset on the id alone, before the timestamped rows. A cursor whose ``ts``
  is None points into that pass; once the pass is complete the cursor moves to real timestamps and
  NULL rows are not read again (a NULL row that gets edited receives a timestamp and comes back).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable
from dataclasses import dataclass

__all__ = ["BoundaryDedupe", "CompoundCursor", "ReadPlan", "plan_read", "shift_iso"]


@dataclass(frozen=True)
class CompoundCursor:
    """A position in ``(ts, id)`` order. ``ts`` is a fixed-width ISO string that sorts as time (None:
    inside the NULL-timestamp pass); ``id`` None means "all of ``ts``" (a bookmark without a
    tie-break)."""

    ts: str | None
    id: int | None = None

    def sort_key(self) -> tuple[int, str, int]:
        """Total order: NULL timestamps first, then by time, then by id (a missing id first)."""
        return (0 if self.ts is None else 1, self.ts or "", -1 if self.id is None else self.id)

    def after(self, other: CompoundCursor | None) -> bool:
        """Whether this position comes strictly after ``other`` (anything is after None)."""
        return other is None or self.sort_key() > other.sort_key()

    @staticmethod
    def furthest(old: CompoundCursor | None, new: CompoundCursor) -> CompoundCursor:
        """The bookmark to keep: ``new`` only if it moves forward (a lookback re-read never moves a
        bookmark backwards)."""
        return new if new.after(old) else old  # type: ignore[return-value]


@dataclass(frozen=True)
class ReadPlan:
    """What an incremental read asks the source for, in order.

    * ``null_pass`` — read the NULL-timestamp rows first, keyset on id, after ``null_after_id``;
    * then the timestamped rows: from ``ts_floor`` inclusive (lookback or start date) when it is set,
      else strictly after ``ts_after``, else all of them.
    """

    null_pass: bool
    null_after_id: int | None
    ts_floor: str | None
    ts_after: CompoundCursor | None


def shift_iso(iso: str, seconds: float) -> str:
    """An ISO timestamp moved by ``seconds``, in the same millisecond-precision form."""
    return (dt.datetime.fromisoformat(iso) + dt.timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def plan_read(
    cursor: CompoundCursor | None,
    *,
    lookback_seconds: float = 0.0,
    start: str | None = None,
    nulls: bool = True,
) -> ReadPlan:
    """The passes that resume after ``cursor``.

    ``start`` (a normalised ISO time) is a floor on timestamps; when it is set NULL-timestamp rows are
    not read (their modification time is unknown, so they cannot be shown to be after it). ``nulls``
    False skips the NULL pass for sources whose timestamp is never NULL.
    """
    null_pass = nulls and start is None and (cursor is None or cursor.ts is None)
    null_after = cursor.id if cursor is not None and cursor.ts is None else None
    floor: str | None = None
    after: CompoundCursor | None = None
    if cursor is not None and cursor.ts is not None:
        if lookback_seconds > 0 or cursor.id is None:
            floor = shift_iso(cursor.ts, -lookback_seconds) if lookback_seconds > 0 else cursor.ts
        else:
            after = cursor
    if start is not None and (cursor is None or cursor.ts is None or (floor or cursor.ts) < start):
        floor, after = start, None
    return ReadPlan(null_pass=null_pass, null_after_id=null_after, ts_floor=floor, ts_after=after)


class BoundaryDedupe:
    """Drops records this run already emitted with the same key and version.

    A lookback re-read, a page boundary that moved under a concurrent edit or a retried page can hand
    back a row we sent moments ago; sending it twice is harmless for an upserting target but costs a
    write and a hash. Remembers at most ``capacity`` (key, version) pairs, oldest forgotten first.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._seen: dict[tuple[Hashable, Hashable], None] = {}

    def first_time(self, key: Hashable, version: Hashable) -> bool:
        """True the first time ``(key, version)`` is seen (and remembers it), False after that."""
        pair = (key, version)
        if pair in self._seen:
            return False
        self._seen[pair] = None
        if len(self._seen) > self.capacity:
            del self._seen[next(iter(self._seen))]
        return True
