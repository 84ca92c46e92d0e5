"""What a target that writes hub records into a system through its spoke shares.

A plain Singer target (it reads SCHEMA/RECORD/STATE on stdin) whose streams carry hub records (hub
field names, as tap-crm emits them), each with its hub ``id``, writes every record through the
system's spoke (:mod:`connectors.kit.spoke`):

* **a new record**: the intent (its key derived from stream and hub id) is stored *before* the
  write; the record is looked up by that key and its identity keys first, then created (one call per
  batch when the spoke has ``create_many``). After a crash or a lost answer the next run finds it
  instead of creating it again;
* **a known record**: only the fields that differ from what was last written are sent; an unchanged
  record makes no call at all;
* **results, durably**: every record's outcome is a row of ``write_results`` (run, stream, hub id,
  external id, hash, success, error class and message) in the target's SQLite file, beside
  ``written`` (what the system holds per record: the base of the next diff). Failed records are
  retried on the next run (transient errors) or wait for a corrected record (refusals); nothing is
  lost and the run goes on.

``target-kingdee`` and ``target-fxiaoke`` are built on it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from singer_sdk import Target
from singer_sdk.sinks import BatchSink

from connectors.kit.logs import get_logger
from connectors.kit.spoke import SpokeError
from tongbu.canon import canon, canonical_hash

__all__ = ["RecordWriter", "SpokeSink", "WriteLedger"]

log = get_logger("tongbu.kit.spoke_target")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS written (
    stream TEXT NOT NULL, hub_id TEXT NOT NULL, external_id TEXT, intent_key TEXT NOT NULL,
    state TEXT NOT NULL, "values" TEXT NOT NULL, hash TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (stream, hub_id));
CREATE TABLE IF NOT EXISTS write_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, stream TEXT NOT NULL,
    hub_id TEXT NOT NULL, external_id TEXT, hash TEXT NOT NULL, op TEXT NOT NULL,
    success INTEGER NOT NULL, error_class TEXT, error_message TEXT, at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ix_write_results_record ON write_results (stream, hub_id);
"""


class WriteLedger:
    """A target's durable state: what the system holds per record, and every record's outcome."""

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)
        self.run_id = uuid.uuid4().hex[:12]

    def get(self, stream: str, hub_id: str) -> tuple[str | None, str, str, dict[str, Any]] | None:
        """(external id, intent key, state, values last written) of a record, or None."""
        row = self.db.execute(
            'SELECT external_id, intent_key, state, "values" FROM written WHERE stream = ? AND hub_id = ?',
            (stream, hub_id),
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2], json.loads(row[3]))

    def put(
        self,
        stream: str,
        hub_id: str,
        external_id: str | None,
        intent: str,
        state: str,
        values: Mapping[str, Any],
    ) -> None:
        """Record (durably, at once) what the system holds for a record, or the intent to create it."""
        self.db.execute(
            'INSERT INTO written (stream, hub_id, external_id, intent_key, state, "values", hash, updated_at) '
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (stream, hub_id) DO UPDATE SET "
            'external_id = excluded.external_id, state = excluded.state, "values" = excluded."values", '
            "hash = excluded.hash, updated_at = excluded.updated_at",
            (
                stream,
                hub_id,
                external_id,
                intent,
                state,
                json.dumps(dict(values), ensure_ascii=False, sort_keys=True),
                canonical_hash(values),
                _now(),
            ),
        )

    def result(
        self,
        stream: str,
        hub_id: str,
        external_id: str | None,
        values: Mapping[str, Any],
        op: str,
        error: Exception | None = None,
    ) -> None:
        """One record's outcome (success, or the error's class and message)."""
        self.db.execute(
            "INSERT INTO write_results (run_id, stream, hub_id, external_id, hash, op, success, error_class, error_message, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.run_id,
                stream,
                hub_id,
                external_id,
                canonical_hash(values),
                op,
                int(error is None),
                None
                if error is None
                else ("transient" if getattr(error, "transient", False) else "rejected"),
                None if error is None else str(error)[:2000],
                _now(),
            ),
        )

    def results(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Result rows (of one run, or all), oldest first."""
        q = "SELECT run_id, stream, hub_id, external_id, hash, op, success, error_class, error_message FROM write_results"
        rows = self.db.execute(
            q + (" WHERE run_id = ?" if run_id else "") + " ORDER BY id", (run_id,) if run_id else ()
        )
        keys = (
            "run_id",
            "stream",
            "hub_id",
            "external_id",
            "hash",
            "op",
            "success",
            "error_class",
            "error_message",
        )
        return [dict(zip(keys, r, strict=True)) for r in rows]


class RecordWriter:
    """Writes hub records to a system through its spoke, with the ledger's intents and bases.

    ``writable``: the hub fields written, per stream; ``identity``: the hub identity fields a create
    is looked up by, per stream; ``name`` makes the intent keys (``<prefix>-<hash>``) this target's.
    A spoke with ``create_many`` gets one call per batch of new records; others one create each.
    """

    def __init__(
        self,
        spoke: Any,
        ledger: WriteLedger,
        *,
        writable: Mapping[str, Sequence[str]],
        identity: Mapping[str, Sequence[str]],
        name: str,
        prefix: str,
    ) -> None:
        self.spoke = spoke
        self.ledger = ledger
        self.writable = {k: tuple(v) for k, v in writable.items()}
        self.identity = {k: tuple(v) for k, v in identity.items()}
        self.name = name
        self.prefix = prefix
        self.stats = {"created": 0, "updated": 0, "unchanged": 0, "linked": 0, "failed": 0}

    def write(self, stream: str, records: Sequence[Mapping[str, Any]]) -> None:
        """Write a batch: new records in one BatchSave, changed ones field by field."""
        creates: list[tuple[str, dict[str, Any], str]] = []
        for record in records:
            hub_id, values = self._values(stream, record)
            known = self.ledger.get(stream, hub_id)
            if known is None or known[2] == "creating":
                intent = known[1] if known else self.intent(stream, hub_id)
                self.ledger.put(stream, hub_id, None, intent, "creating", values)  # intent first
                try:
                    keys = {
                        k: values[k] for k in self.identity.get(stream, ()) if values.get(k) not in (None, "")
                    }
                    found = self.spoke.find(stream, {**keys, "intent_key": intent})
                except SpokeError as exc:
                    self._failed(stream, hub_id, None, values, "create", exc)
                    continue
                if found is None:
                    creates.append((hub_id, values, intent))
                    continue
                # Created by an earlier run whose answer was lost (or already in the system): link it and
                # send only what differs from what Kingdee holds now.
                current = self.spoke.fetch(stream, [found]).get(found)
                base = {k: canon(v) for k, v in (current.values if current else {}).items()}
                self.ledger.put(stream, hub_id, found, intent, "linked", base)
                self.stats["linked"] += 1
                known = (found, intent, "linked", base)
            self._update(stream, hub_id, known, values)
        self._create(stream, creates)

    def _update(
        self,
        stream: str,
        hub_id: str,
        known: tuple[str | None, str, str, dict[str, Any]],
        values: dict[str, Any],
    ) -> None:
        external_id, intent, _state, base = known
        assert external_id is not None
        diff = {k: v for k, v in values.items() if base.get(k) != v}
        if not diff:
            self.stats["unchanged"] += 1
            self.ledger.result(stream, hub_id, external_id, values, "unchanged")
            return
        try:
            self.spoke.update(stream, external_id, diff)
        except SpokeError as exc:
            self._failed(stream, hub_id, external_id, values, "update", exc)
            return
        self.ledger.put(stream, hub_id, external_id, intent, "linked", {**base, **diff})
        self.ledger.result(stream, hub_id, external_id, values, "update")
        self.stats["updated"] += 1

    def _create(self, stream: str, creates: list[tuple[str, dict[str, Any], str]]) -> None:
        if not creates:
            return
        try:
            outcomes = self._create_all(stream, creates)
        except SpokeError as exc:
            # Outcome unknown (lost answer, 5xx, lock): the intents stay; the next run looks up.
            for hub_id, values, _intent in creates:
                self._failed(stream, hub_id, None, values, "create", exc)
            return
        for (hub_id, values, intent), outcome in zip(creates, outcomes, strict=True):
            if isinstance(outcome, SpokeError):
                self._failed(stream, hub_id, None, values, "create", outcome)
                continue
            self.ledger.put(stream, hub_id, outcome, intent, "linked", values)
            self.ledger.result(stream, hub_id, outcome, values, "create")
            self.stats["created"] += 1

    def _create_all(self, stream: str, creates: list[tuple[str, dict[str, Any], str]]) -> list[Any]:
        many = getattr(self.spoke, "create_many", None)
        if many is not None:
            return list(many(stream, [(v, intent) for _h, v, intent in creates]))
        out: list[Any] = []
        for i, (_h, values, intent) in enumerate(creates):
            try:
                out.append(self.spoke.create(stream, values, intent))
            except SpokeError as exc:
                if getattr(exc, "transient", False):
                    # Outcome unknown for this one: it and the rest wait for the next run's look-up.
                    out += [exc] * (len(creates) - i)
                    return out
                out.append(exc)
        return out

    def intent(self, stream: str, hub_id: str) -> str:
        """The idempotency key of a record's create (stable across runs)."""
        digest = hashlib.blake2b(f"{self.name}|{stream}|{hub_id}".encode(), digest_size=12).hexdigest()
        return f"{self.prefix}-{digest}"

    def _failed(
        self,
        stream: str,
        hub_id: str,
        external_id: str | None,
        values: Mapping[str, Any],
        op: str,
        exc: Exception,
    ) -> None:
        self.stats["failed"] += 1
        self.ledger.result(stream, hub_id, external_id, values, op, exc)
        log.warning("%s %s: %s failed: %s", stream, hub_id, op, exc)

    def _values(self, stream: str, record: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        hub_id = record.get("id")
        if hub_id in (None, ""):
            raise SpokeError(f"{stream}: a record without its hub 'id' cannot be written idempotently")
        values = {k: canon(record[k]) for k in self.writable[stream] if k in record}
        return str(hub_id), values


class SpokeSink(BatchSink):
    """Writes a stream's records in batches through the target's :class:`RecordWriter` (``writer``)."""

    max_size = 200

    def __init__(self, target: Target, *args: Any, **kwargs: Any) -> None:
        self.writer: RecordWriter = target.writer  # type: ignore[attr-defined]  # shared by all sinks
        super().__init__(target, *args, **kwargs)

    def process_record(self, record: dict[str, Any], context: dict[str, Any]) -> None:
        """Collect the record into the batch."""
        context.setdefault("records", []).append(record)

    def process_batch(self, context: dict[str, Any]) -> None:
        """Write the batch; a record that cannot be written is recorded as failed, the run goes on."""
        writer = self.writer
        good = []
        for record in context.get("records", []):
            try:
                writer._values(self.stream_name, record)
            except SpokeError as exc:
                writer.stats["failed"] += 1
                self.logger.warning("%s", exc)
                continue
            good.append(record)
        writer.write(self.stream_name, good)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()
