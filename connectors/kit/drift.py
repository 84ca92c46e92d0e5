"""What a connector implements so that drift between a source stream and the hub can be found.

Incremental syncs read "what changed since the cursor". A record whose modification time is stamped
*before* the cursor (an ERP that back-dates edits, a transaction that commits long after it started,
a restore from backup) is never read again, and a record deleted in the source is never read at all.
Drift detection compares both sides bucket by bucket on the source's modification time:

* a connector answers, for one stream and a time range, "per bucket: how many records, and an
  order-independent hash of ``(id, modification time)``" (:class:`DriftSource`);
* ``pipelines.drift`` computes the same buckets from the hub's ``source_id`` and
  ``source_modified_at`` and descends only into buckets that differ.

The hash is computed in Python on both sides (never with a database function), so it is identical
whatever stores the hub (SQLite, PostgreSQL) and whatever the connector is: each row contributes
``blake2b(f"{id}\\x1f{ms}")`` as a 64-bit integer, and a bucket's hash is the sum modulo 2**64, which
needs no ordering and no memory beyond one integer per bucket.

Times are integers: milliseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

_MASK = (1 << 64) - 1
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)


@dataclass
class Digest:
    """Count and order-independent hash of the ``(id, modified ms)`` pairs of one bucket."""

    count: int = 0
    hash: int = 0

    def add(self, source_id: str, modified_ms: int) -> None:
        """Fold one row in."""
        self.count += 1
        self.hash = (self.hash + row_digest(source_id, modified_ms)) & _MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Digest) and (self.count, self.hash) == (other.count, other.hash)

    def __hash__(self) -> int:
        return hash((self.count, self.hash))


def row_digest(source_id: str, modified_ms: int) -> int:
    """The 64-bit contribution of one row to its bucket's hash."""
    raw = hashlib.blake2b(f"{source_id}\x1f{int(modified_ms)}".encode(), digest_size=8).digest()
    return int.from_bytes(raw, "big")


def to_ms(value: dt.datetime) -> int:
    """Epoch milliseconds of a datetime; naive values are UTC (how the hub stores them on SQLite).

    Integer arithmetic, truncating below the millisecond: a float ``timestamp()`` would round
    differently for the same instant read from two databases.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (value - _EPOCH) // _MS


def from_ms(ms: int) -> dt.datetime:
    """The aware UTC datetime of epoch milliseconds."""
    return _EPOCH + dt.timedelta(milliseconds=int(ms))


#: a half-open time range ``[start_ms, end_ms)``; ``None`` is unbounded on that side
Range = tuple[int | None, int | None]


def merge_ranges(ranges: Iterable[Range]) -> list[Range]:
    """Sorted ranges with overlapping and touching ones joined (fewer, larger queries)."""
    lo_key = -(1 << 62)
    items = sorted(
        ((lo if lo is not None else lo_key), hi) for lo, hi in ranges if lo is None or hi is None or lo < hi
    )
    out: list[list[Any]] = []
    for lo, hi in items:
        if out and (out[-1][1] is None or lo <= out[-1][1]):
            if out[-1][1] is not None and (hi is None or hi > out[-1][1]):
                out[-1][1] = hi
            continue
        out.append([lo, hi])
    return [(None if lo == lo_key else lo, hi) for lo, hi in out]


def bucket_digests(rows: Iterable[tuple[str, int]], width_ms: int) -> dict[int, Digest]:
    """Digests keyed by bucket start (``ms - ms % width``) of ``(source_id, modified ms)`` rows.

    :func:`row_digest` and :meth:`Digest.add` inlined: this loop runs once per row on both sides.
    """
    out: dict[int, Digest] = {}
    blake, from_bytes, mask = hashlib.blake2b, int.from_bytes, _MASK
    for sid, ms in rows:
        start = ms - ms % width_ms
        d = out.get(start)
        if d is None:
            d = out[start] = Digest()
        d.count += 1
        d.hash = (d.hash + from_bytes(blake(f"{sid}\x1f{ms}".encode(), digest_size=8).digest(), "big")) & mask
    return out


@runtime_checkable
class DriftSource(Protocol):
    """One source stream as drift detection sees it (returned by a connector's ``drift_source``).

    ``id`` values are the stream's primary-key values as the source sends them (the pipeline layer
    turns them into hub ``source_id`` with the pipeline's mapping); ``ms`` is the source's own
    modification time of the record, in epoch milliseconds UTC, read exactly as the incremental
    sync reads it. Ranges are half-open ``[start_ms, end_ms)`` (:data:`Range`), sorted and
    disjoint (:func:`merge_ranges`); ``None`` means unbounded.
    """

    #: the property of the record that holds the primary key (the mapping reads the id from it)
    id_key: str

    def rows(self, ranges: Sequence[Range]) -> Iterator[tuple[Any, int]]:
        """``(id, ms)`` of every record modified in any of the ``ranges`` (cheap: only those two
        columns; several ranges in one request where the source allows, as drift descends into many
        small buckets at once)."""
        ...

    def buckets(self, ranges: Sequence[Range], width_ms: int) -> dict[int, Digest]:
        """Per-bucket digests of the ranges, keyed by bucket start; ids as in :meth:`rows`.

        A source that can aggregate on its side (a SQL database) answers this without sending the
        rows; one that cannot (a REST API) folds :meth:`rows` with :func:`bucket_digests`.
        """
        ...

    def lookup(self, ids: Sequence[Any]) -> dict[Any, int]:
        """Which of ``ids`` exist in the source now (whatever their time), with their ``ms``."""
        ...

    def records(self, ids: Sequence[Any]) -> Iterator[dict[str, Any]]:
        """The full records of ``ids``, exactly as the stream's incremental read yields them."""
        ...


class DriftNotSupported(Exception):
    """The connector or stream cannot answer drift queries; the message says why."""


__all__ = [
    "Digest",
    "DriftNotSupported",
    "DriftSource",
    "Range",
    "bucket_digests",
    "from_ms",
    "merge_ranges",
    "row_digest",
    "to_ms",
]
