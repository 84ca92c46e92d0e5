"""The Fxiaoke streams: one per object, the schema from ``describe`` (custom ``__c`` fields included),
read by :mod:`connectors.fxiaoke.reader` (a keyset full pull, then the change feed).

The bookmark has two shapes:

* during the first full pull: ``{"replication_key": "last_modified_time", "replication_key_value":
  None, "full": {"after_id": _id, "until": ms, "until_id": _id}}`` — resumable after any record;
  ``until`` is the object's newest ``(last_modified_time, _id)`` when the pull began;
* afterwards: the compound cursor ``{"replication_key": "last_modified_time",
  "replication_key_value": ms, "tiebreak_key": "_id", "tiebreak_value": _id}``.

The last record of a completed pull carries the second shape, pointing at the pull's high-water
mark, so the change feed starts exactly where the pull's snapshot ended.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from connectors.fxiaoke.client import FxiaokeClient
from connectors.fxiaoke.reader import LMT, iter_all, iter_changed
from connectors.kit.sdk_compat import CustomBookmarkStream

__all__ = ["OBJECT_STREAMS", "FxiaokeObjectStream", "schema_from_describe"]

#: stream name -> object apiName (the preset objects tongbu reads)
OBJECT_STREAMS: dict[str, str] = {
    "accounts": "AccountObj",
    "contacts": "ContactObj",
    "leads": "LeadsObj",
    "opportunities": "NewOpportunityObj",
    "sales_orders": "SalesOrderObj",
    "sales_order_products": "SalesOrderProductObj",
    "payments": "PaymentObj",
}
_NULL_STR = {"type": ["string", "null"]}
_TYPES: dict[str, dict[str, Any]] = {
    "date": {"type": ["integer", "null"], "description": "ms since the epoch"},
    "date_time": {"type": ["integer", "null"], "description": "ms since the epoch"},
    "employee": {"type": ["array", "null"], "items": {"type": "string"}},
    "department": {"type": ["array", "null"], "items": {"type": "string"}},
    "true_or_false": {"type": ["boolean", "null"]},
    # Numbers, amounts and percentages arrive as strings ("100.01"), as the OpenAPI sends them; the
    # mapping parses them, so a malformed one is quarantined with its reason, never a schema failure.
    "number": {"type": ["string", "null"], "format": "decimal"},
    "currency": {"type": ["string", "null"], "format": "decimal"},
    "percentile": {"type": ["string", "null"], "format": "decimal"},
}


def schema_from_describe(describe: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON schema from an object's ``describe``: one property per field, by its type."""
    props: dict[str, Any] = {}
    for name, f in sorted((describe.get("fields") or {}).items()):
        kind = str(f.get("type") or "text")
        prop = dict(_TYPES.get(kind, _NULL_STR))
        label = f.get("label")
        if label:
            prop["description"] = f"{label} ({kind})"
        props[str(name)] = prop
    props["_id"] = {"type": "string"}
    props[LMT] = {"type": "integer", "description": "ms since the epoch"}
    props["object_describe_api_name"] = _NULL_STR
    return {"type": "object", "properties": props, "required": ["_id", LMT]}


class FxiaokeObjectStream(CustomBookmarkStream):
    """One Fxiaoke object, incremental on ``(last_modified_time, _id)``."""

    replication_key = LMT
    primary_keys: ClassVar[tuple[str, ...]] = ("_id",)  # type: ignore[misc]
    is_sorted = True
    api_name: str = ""

    def __init__(self, tap: Any, name: str, api_name: str, schema: dict[str, Any]) -> None:
        self.api_name = api_name
        super().__init__(tap, schema=schema, name=name)
        self._start_override: Any = _UNSET
        self._phase = "feed"
        self._full: dict[str, Any] | None = None
        self._full_done = False
        self._last_full_id: str | None = None

    @property
    def client(self) -> FxiaokeClient:
        """The tap's shared client."""
        return self._tap.client  # type: ignore[attr-defined, no-any-return]

    @property
    def page_size(self) -> int:
        """Records per query (config ``page_size``, at most Fxiaoke's 100)."""
        return max(1, min(100, int(self.config.get("page_size") or 100)))

    # -- cursor ------------------------------------------------------------------------------------
    def cursor_for_record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The bookmark that resumes right after ``record`` (see the module docstring)."""
        if self._phase == "full" and self._full is not None:
            if self._full_done and record.get("_id") == self._last_full_id:
                return self._feed_cursor(self._full["until"], self._full["until_id"])
            return {
                "replication_key": LMT,
                "replication_key_value": None,
                "full": {**self._full, "after_id": record["_id"]},
            }
        return self._feed_cursor(record[LMT], record["_id"])

    @staticmethod
    def _feed_cursor(t: Any, rid: Any) -> dict[str, Any]:
        return {
            "replication_key": LMT,
            "replication_key_value": t,
            "tiebreak_key": "_id",
            "tiebreak_value": rid,
        }

    def start_cursor_from(self, cursor: Mapping[str, Any] | None) -> None:
        """Start the next read after ``cursor`` instead of the Singer state (None: from the start)."""
        self._start_override = None if cursor is None else dict(cursor)

    def starting_cursor(self, context: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """Where this read starts: an override, else the stream's Singer bookmark."""
        state = (
            self._start_override
            if self._start_override is not _UNSET
            else self.get_context_state(dict(context) if context else None)
        )
        if not state or (state.get("replication_key_value") is None and not state.get("full")):
            return None
        return dict(state)

    def update_bookmark(self, state: dict[str, Any], record: Mapping[str, Any]) -> None:
        """Replace the bookmark with the record's (reads are ascending in each phase)."""
        for key in ("full", "tiebreak_key", "tiebreak_value"):
            state.pop(key, None)
        state.update(self.cursor_for_record(record))

    # -- reading -----------------------------------------------------------------------------------
    def get_records(self, context: Mapping[str, Any] | None) -> Iterator[dict[str, Any]]:
        """The full pull (first run, or its resumption), then the change feed."""
        cursor = self.starting_cursor(context)
        size = self.page_size
        if cursor is None or cursor.get("full"):
            full = dict(cursor["full"]) if cursor else self._begin_full()
            self._full, self._full_done, self._phase = full, False, "full"
            for record in iter_all(self.client, self.api_name, after_id=full.get("after_id"), limit=size):
                self._last_full_id = str(record["_id"])
                yield record
            self._full_done = True
            if self._last_full_id is None:
                self._last_full_id = full.get("after_id")
            start: tuple[int, str | None] = (int(full["until"]), full.get("until_id"))
        else:
            start = (int(cursor["replication_key_value"]), cursor.get("tiebreak_value"))
            lookback = float(self.config.get("lookback_seconds") or 0)
            if lookback > 0:
                start = (start[0] - int(lookback * 1000), None)
        for record in iter_changed(self.client, self.api_name, start, limit=size):
            self._phase = "feed"
            yield record

    def _begin_full(self) -> dict[str, Any]:
        page = self.client.query(
            self.api_name,
            orders=[{"fieldName": LMT, "isAsc": False}, {"fieldName": "_id", "isAsc": False}],
            limit=1,
            fields=["_id", LMT],
        )
        rows = page.get("dataList") or []
        if not rows:
            return {"after_id": None, "until": 0, "until_id": None}
        return {"after_id": None, "until": int(rows[0][LMT]), "until_id": str(rows[0]["_id"])}


_UNSET: Any = object()
