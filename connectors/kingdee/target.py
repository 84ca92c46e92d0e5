"""``target-kingdee``: CRM accounts and sales orders into Kingdee K/3 Cloud, idempotently.

A plain Singer target (it reads SCHEMA/RECORD/STATE on stdin): streams ``accounts`` and
``sales_orders`` carry hub records (hub field names, as tap-crm emits them), each with its hub
``id``. For every record the target writes through :class:`~connectors.kingdee.spoke.KingdeeSpoke`:

* **a new record**: the intent (its key derived from stream and hub id) is stored *before* the
  write; the record is looked up by that key (``F_TB_ExternalId``) and its identity keys first, then
  created with ``BatchSave`` (one call per batch of new records, submitted and audited in it by
  policy). After a crash or a lost answer the next run finds it instead of creating it again;
* **a known record**: only the fields that differ from what was last written are sent (one Save
  with exactly those ``NeedUpDateFields``); an unchanged record makes no call at all;
* **results, durably**: every record's outcome is a row of ``write_results`` (run, stream, hub id,
  Kingdee id, hash, success, error class and message) in the target's SQLite file
  (``state_db``), beside ``written`` (what Kingdee holds per record: the base of the next diff).
  Failed records are retried on the next run (transient errors) or wait for a corrected record
  (refusals, with Kingdee's ``FieldName: Message``); nothing is lost and the run goes on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.sinks import BatchSink

from connectors.kingdee.client import KingdeeClient
from connectors.kingdee.spoke import BINDINGS, KingdeeSpoke, Lifecycle
from connectors.kit.logs import get_logger
from connectors.kit.settings import http_properties
from connectors.kit.singer_input import BadMessage, SingerInputReader, attach
from connectors.kit.spoke import SpokeError
from tongbu.canon import canon, canonical_hash

log = get_logger("tongbu.kingdee.target")

#: hub fields target-kingdee writes, per stream (the reverse mapping's sources, and order lines)
WRITABLE = {
    "accounts": (
        "number",
        "name",
        "short_name",
        "credit_code",
        "phone",
        "address",
        "industry",
        "grade",
        "currency",
    ),
    "sales_orders": ("account_ref", "order_date", "currency", "lines"),
}

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
    """The target's durable state: what Kingdee holds per record, and every record's outcome."""

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
        """Record (durably, at once) what Kingdee holds for a record, or the intent to create it."""
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
    """Writes hub records to Kingdee through the spoke, with the ledger's intents and bases."""

    def __init__(self, spoke: KingdeeSpoke, ledger: WriteLedger) -> None:
        self.spoke = spoke
        self.ledger = ledger
        self.stats = {"created": 0, "updated": 0, "unchanged": 0, "linked": 0, "failed": 0}

    def write(self, stream: str, records: Sequence[Mapping[str, Any]]) -> None:
        """Write a batch: new records in one BatchSave, changed ones field by field."""
        creates: list[tuple[str, dict[str, Any], str]] = []
        for record in records:
            hub_id, values = self._values(stream, record)
            known = self.ledger.get(stream, hub_id)
            if known is None or known[2] == "creating":
                intent = known[1] if known else _intent(stream, hub_id)
                self.ledger.put(stream, hub_id, None, intent, "creating", values)  # intent first
                try:
                    found = self.spoke.find(stream, {**_identity(stream, values), "intent_key": intent})
                except SpokeError as exc:
                    self._failed(stream, hub_id, None, values, "create", exc)
                    continue
                if found is None:
                    creates.append((hub_id, values, intent))
                    continue
                # Created by an earlier run whose answer was lost (or already in Kingdee): link it and
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
            outcomes = self.spoke.create_many(stream, [(v, intent) for _h, v, intent in creates])
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

    @staticmethod
    def _values(stream: str, record: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        hub_id = record.get("id")
        if hub_id in (None, ""):
            raise SpokeError(f"{stream}: a record without its hub 'id' cannot be written idempotently")
        values = {k: canon(record[k]) for k in WRITABLE[stream] if k in record}
        return str(hub_id), values


class KingdeeSink(BatchSink):
    """Writes a stream's records in batches (one BatchSave for the new ones of a batch)."""

    max_size = 200

    def __init__(self, target: Target, *args: Any, **kwargs: Any) -> None:
        self.writer: RecordWriter = target.writer  # type: ignore[attr-defined]  # shared by all sinks
        super().__init__(target, *args, **kwargs)

    def process_record(self, record: dict, context: dict) -> None:
        """Collect the record into the batch."""
        context.setdefault("records", []).append(record)

    def process_batch(self, context: dict) -> None:
        """Write the batch; a record that cannot be written is recorded as failed, the run goes on."""
        writer = self.writer
        good = []
        for record in context.get("records", []):
            try:
                RecordWriter._values(self.stream_name, record)
            except SpokeError as exc:
                writer.stats["failed"] += 1
                self.logger.warning("%s", exc)
                continue
            good.append(record)
        writer.write(self.stream_name, good)


class TargetKingdee(Target):
    """Singer target writing CRM accounts and sales orders to Kingdee K/3 Cloud (see the module doc)."""

    name = "target-kingdee"
    default_sink_class = KingdeeSink
    message_reader_class = SingerInputReader  # bad input: one line each, counted, no traceback
    config_jsonschema = th.PropertiesList(
        th.Property(
            "base_url", th.StringType, required=True, description="K/3 Cloud site (or the simulator URL)"
        ),
        th.Property("acct_id", th.StringType, required=True, description="Account (数据中心) id"),
        th.Property("username", th.StringType, required=True),
        th.Property("password", th.StringType, secret=True, description="Password for ValidateUser login"),
        th.Property("app_id", th.StringType, description="App id for LoginByAppSecret"),
        th.Property("app_secret", th.StringType, secret=True, description="App secret for LoginByAppSecret"),
        th.Property("lcid", th.IntegerType, default=2052),
        th.Property(
            "state_db",
            th.StringType,
            description="SQLite file of the write ledger (default: $TONGBU_HOME/target-kingdee.sqlite)",
        ),
        th.Property("audit", th.BooleanType, default=True, description="submit and audit what is saved"),
        th.Property(
            "modify_audited",
            th.StringType,
            default="unaudit",
            allowed_values=["unaudit", "refuse"],
            description="a change of an audited document: un-audit it first, or refuse",
        ),
        *http_properties(
            request_timeout=60, retried="MsgCode 13/14, 429; writes are not re-sent after a 5xx"
        ),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = dict(self.config)
        self.client = KingdeeClient.from_config(cfg, connector="target-kingdee")
        policy = Lifecycle(
            audit=bool(cfg.get("audit", True)), modify_audited=cfg.get("modify_audited") or "unaudit"
        )
        self.spoke = KingdeeSpoke(self.client, lifecycle=dict.fromkeys(BINDINGS, policy))
        home = Path(os.environ.get("TONGBU_HOME") or Path.home() / ".tongbu")
        self.ledger = WriteLedger(cfg.get("state_db") or home / "target-kingdee.sqlite")
        self.writer = RecordWriter(self.spoke, self.ledger)
        attach(self, self._bad_input)

    def _bad_input(self, bad: BadMessage) -> None:
        if bad.kind != "STATE":
            self.writer.stats["failed"] += 1

    def get_sink_class(self, stream_name: str) -> type[BatchSink]:
        """``accounts`` and ``sales_orders`` are writable."""
        if stream_name not in WRITABLE:
            raise ValueError(f"target-kingdee writes the streams {sorted(WRITABLE)}, not {stream_name!r}")
        return KingdeeSink


def _intent(stream: str, hub_id: str) -> str:
    return "tk-" + hashlib.blake2b(f"target-kingdee|{stream}|{hub_id}".encode(), digest_size=12).hexdigest()


def _identity(stream: str, values: Mapping[str, Any]) -> dict[str, Any]:
    keys = BINDINGS[stream].identity
    return {k: values[k] for k in keys if values.get(k) not in (None, "")}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


if __name__ == "__main__":
    TargetKingdee.cli()
