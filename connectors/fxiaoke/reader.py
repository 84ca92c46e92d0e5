"""How Fxiaoke records are read, once for the tap and the spoke: a full pull and a change feed.

Offsets are never used to walk a result. Fxiaoke caps ``offset`` at 10,000, and offset paging over a
set that changes while it is read skips a row at every page boundary where an earlier row moved
(an edited record jumps to the end of a ``last_modified_time`` order). Instead:

* **full pull**: ``_id GT last`` ascending with offset 0 — the documented deep-paging switch, used
  from the first page, so any number of records costs exactly ``ceil(n / limit)`` calls (plus one
  that finds the end when ``n`` is a multiple of the page size). The pull's high-water mark is read
  first (the newest ``last_modified_time``); the change feed starts there, inclusive, so a record
  edited during the pull is read again, never lost.
* **change feed** after a compound cursor ``(t, _id)``: ``last_modified_time GTE t`` ordered by time
  then ``_id``, offset 0, rows at or before the cursor dropped client-side (one re-read row per page
  when times are distinct); a page whose rows all share one millisecond switches to
  ``last_modified_time EQ t AND _id GT last`` (keyset on ``_id`` inside the millisecond), then
  ``GT t``, so any number of rows sharing a millisecond is read exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

__all__ = ["Cursor", "high_water", "iter_all", "iter_changed"]

LMT = "last_modified_time"
ASC_TIME = [{"fieldName": LMT, "isAsc": True}, {"fieldName": "_id", "isAsc": True}]
ASC_ID = [{"fieldName": "_id", "isAsc": True}]

#: (last_modified_time ms, _id); ``_id`` None means "everything at or after the time"
Cursor = tuple[int, str | None]


class _Queries(Protocol):
    def query(self, api_name: str, **kwargs: Any) -> dict[str, Any]: ...


def _flt(field: str, op: str, value: Any) -> dict[str, Any]:
    return {"field_name": field, "operator": op, "field_values": [value]}


def high_water(client: _Queries, api_name: str) -> Cursor | None:
    """The last position of the change feed now: the newest ``(last_modified_time, _id)`` (None when
    the object is empty). One call."""
    desc = [{"fieldName": LMT, "isAsc": False}, {"fieldName": "_id", "isAsc": False}]
    rows = client.query(api_name, orders=desc, limit=1, fields=["_id", LMT]).get("dataList") or []
    return key_of(rows[0]) if rows else None


def iter_all(
    client: _Queries, api_name: str, *, after_id: str | None = None, limit: int = 100
) -> Iterator[dict[str, Any]]:
    """Every record in ``_id`` order after ``after_id``, keyset-paged (``_id GT last``, offset 0)."""
    last = after_id
    while True:
        filters = [_flt("_id", "GT", last)] if last else []
        page = client.query(api_name, filters=filters, orders=ASC_ID, offset=0, limit=limit)
        rows = page.get("dataList") or []
        yield from rows
        total = page.get("total")
        if len(rows) < limit or (isinstance(total, int) and total <= len(rows)):
            return
        last = str(rows[-1]["_id"])


def key_of(row: Mapping[str, Any]) -> tuple[int, str]:
    """A record's position in the change feed."""
    return int(row[LMT]), str(row["_id"])


def iter_changed(
    client: _Queries, api_name: str, cursor: Cursor | None, *, limit: int = 100
) -> Iterator[dict[str, Any]]:
    """Records after ``cursor`` in ``(last_modified_time, _id)`` order (see the module docstring)."""
    if cursor is None:
        t, last, strict = None, None, False
    else:
        t, last = int(cursor[0]), cursor[1]
        strict = False
    while True:
        if t is None:
            filters: list[dict[str, Any]] = []
        else:
            filters = [_flt(LMT, "GT" if strict else "GTE", t)]
        rows = (
            client.query(api_name, filters=filters, orders=ASC_TIME, offset=0, limit=limit).get("dataList")
            or []
        )
        fresh = rows if (t is None or last is None or strict) else [r for r in rows if key_of(r) > (t, last)]
        yield from fresh
        if len(rows) < limit:
            return
        end_t, end_id = key_of(rows[-1])
        if key_of(rows[0])[0] == end_t and (t is None or end_t == t or strict):
            # A full page inside one millisecond: keyset on _id within it (after what was already
            # read of it: the page, or the cursor when it lies past the page), then strictly after it.
            after = max(end_id, last) if (last is not None and not strict and t == end_t) else end_id
            while True:
                same = (
                    client.query(
                        api_name,
                        filters=[_flt(LMT, "EQ", end_t), _flt("_id", "GT", after)],
                        orders=ASC_ID,
                        offset=0,
                        limit=limit,
                    ).get("dataList")
                    or []
                )
                yield from same
                if len(same) < limit:
                    break
                after = str(same[-1]["_id"])
            t, last, strict = end_t, None, True
            continue
        t, last, strict = end_t, end_id, False
