"""An in-memory system for engine tests: a change feed, ids, derived fields, call counters and faults.

It behaves like an ERP where it matters to the engine: every write bumps the record's modification
sequence (so our own writes come back in the change feed, as echoes), a derived field can be computed
by the "server", and faults can lose a response after the write was applied.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.kit.spoke import SpokeRecord, TransientSpokeError

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@dataclass
class Stored:
    values: dict[str, Any]
    seq: int
    deleted: bool = False
    intent_key: str | None = None
    author: str = "erp-user"


@dataclass
class MemorySpoke:
    system: str
    derived: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    records: dict[str, Stored] = field(default_factory=dict)
    calls: Counter = field(default_factory=Counter)
    writes: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    #: Fault switches: raise after applying the next N creates / updates ("lost response").
    lose_create_responses: int = 0
    lose_update_responses: int = 0
    fail_updates: int = 0
    _seq: Iterable[int] = field(default_factory=lambda: itertools.count(1))
    _ids: Iterable[int] = field(default_factory=lambda: itertools.count(100001))

    # -- what "users" of the system do -----------------------------------------------------------------
    def user_create(self, values: Mapping[str, Any], author: str = "erp-user") -> str:
        ext = str(next(self._ids))  # type: ignore[call-overload]
        self.records[ext] = Stored(self._derive(dict(values)), next(self._seq), author=author)  # type: ignore[call-overload]
        return ext

    def user_edit(self, ext: str, author: str = "erp-user", **values: Any) -> None:
        rec = self.records[ext]
        rec.values = self._derive({**rec.values, **values})
        rec.seq = next(self._seq)  # type: ignore[call-overload]
        rec.author = author

    def user_delete(self, ext: str) -> None:
        self.records[ext].deleted = True
        self.records[ext].seq = next(self._seq)  # type: ignore[call-overload]

    def out_of_band(self, ext: str, **values: Any) -> None:
        """A change made straight in the database: no modification time moves, no feed sees it."""
        self.records[ext].values.update(values)

    # -- the Spoke protocol --------------------------------------------------------------------------------
    def changes(self, object_name: str, cursor: Any) -> tuple[list[SpokeRecord], Any]:
        self.calls["changes"] += 1
        since = (cursor or {}).get("seq", 0)
        changed = sorted(((r.seq, ext) for ext, r in self.records.items() if r.seq > since))
        records = [self._record(ext) for _, ext in changed]
        return records, {"seq": max([since, *(s for s, _ in changed)])}

    def fetch(self, object_name: str, external_ids: Sequence[str]) -> dict[str, SpokeRecord]:
        self.calls["fetch"] += 1
        return {e: self._record(e) for e in external_ids if e in self.records}

    def find(self, object_name: str, keys: Mapping[str, Any]) -> str | None:
        self.calls["find"] += 1
        for ext, rec in self.records.items():
            if rec.deleted:
                continue
            if keys.get("intent_key") and rec.intent_key == keys["intent_key"]:
                return ext
            for k, v in keys.items():
                if k != "intent_key" and v not in (None, "") and rec.values.get(k) == v:
                    return ext
        return None

    def create(self, object_name: str, values: Mapping[str, Any], intent_key: str) -> str:
        self.calls["create"] += 1
        ext = str(next(self._ids))  # type: ignore[call-overload]
        self.records[ext] = Stored(
            self._derive(dict(values)), next(self._seq), intent_key=intent_key, author="tongbu"
        )  # type: ignore[call-overload]
        self.writes.append(("create", ext, dict(values)))
        if self.lose_create_responses:
            self.lose_create_responses -= 1
            raise TransientSpokeError("connection reset after the create was applied")
        return ext

    def update(self, object_name: str, external_id: str, values: Mapping[str, Any]) -> None:
        self.calls["update"] += 1
        if self.fail_updates:
            self.fail_updates -= 1
            raise TransientSpokeError("503 before applying")
        rec = self.records[external_id]
        rec.values = self._derive({**rec.values, **values})
        rec.seq = next(self._seq)  # type: ignore[call-overload]
        rec.author = "tongbu"
        self.writes.append(("update", external_id, dict(values)))
        if self.lose_update_responses:
            self.lose_update_responses -= 1
            raise TransientSpokeError("connection reset after the update was applied")

    def delete(self, object_name: str, external_id: str, action: str) -> None:
        self.calls[action] += 1
        self.records[external_id].deleted = True
        self.records[external_id].seq = next(self._seq)  # type: ignore[call-overload]
        self.writes.append((action, external_id, {}))

    def scan(self, object_name: str) -> Iterable[SpokeRecord]:
        self.calls["scan"] += 1
        return [self._record(ext) for ext in sorted(self.records)]

    # -- helpers ---------------------------------------------------------------------------------------
    def live(self) -> dict[str, dict[str, Any]]:
        return {ext: r.values for ext, r in self.records.items() if not r.deleted}

    def _derive(self, values: dict[str, Any]) -> dict[str, Any]:
        return {**values, **self.derived(values)} if self.derived else values

    def _record(self, ext: str) -> SpokeRecord:
        rec = self.records[ext]
        return SpokeRecord(ext, dict(rec.values), T0 + dt.timedelta(seconds=rec.seq), rec.author, rec.deleted)
