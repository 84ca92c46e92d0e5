"""``target-crm``: a Singer target that upserts into the CRM hub, idempotently, by source identity.

Each incoming stream is written through a mapping (``mapping_file`` / ``mapping_name``; by default
the mapping whose ``source.stream`` is the stream's name) or, when the stream is named after a hub
object (``accounts`` …, e.g. from ``tap-crm``), as-is. Records that fail schema validation or mapping
are quarantined with the reason; the batch's rows and quarantine entries commit in one transaction
before the target emits the STATE that covers them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.sinks import BatchSink
from sqlalchemy import update

from connectors.kit.sampling import SAMPLE_RECORDS, absent_source_fields, optional_sources
from connectors.kit.sdk_compat import INVALID_RECORD_KEY, QuarantiningSinkMixin
from connectors.kit.singer_input import BadMessage, SingerInputReader, attach
from tongbu.config import DEFAULT_TENANT
from tongbu.hub.models import HUB_OBJECTS
from tongbu.hub.store import HubStore
from tongbu.state.models import PipelineLockRow

_INVALID = INVALID_RECORD_KEY
_LOCKS = PipelineLockRow.__table__  # the leases are core (tongbu.state), below the connectors
LIBRARY = Path(__file__).resolve().parents[2] / "mappings" / "library"


class CRMSink(QuarantiningSinkMixin, BatchSink):
    """Batches records of one stream and upserts them into the hub."""

    def __init__(self, target: Target, *args: Any, **kwargs: Any) -> None:
        self.crm_target = target  # the engine, store and mappings are shared by all sinks of the target
        super().__init__(target, *args, **kwargs)

    @property
    def max_size(self) -> int:
        """Records per batch (and per transaction)."""
        return int(self.config.get("batch_size") or 5000)

    def process_batch(self, context: dict) -> None:
        """Map, upsert and quarantine one batch in one transaction."""
        target: TargetCRM = self.crm_target  # type: ignore[assignment]
        from mappings.engine import MappingError

        mapping = target.mapping_for(self.stream_name)
        if mapping is not None:
            target.sample(self.stream_name, mapping, context["records"])
        rows: list[dict[str, Any]] = []
        quarantined: list[dict[str, Any]] = []
        pipeline = self.config.get("pipeline") or f"target-crm:{self.stream_name}"
        source_system = self.config.get("source_system") or "singer"
        for record in context["records"]:
            reason = record.pop(_INVALID, None)
            if reason is None:
                try:
                    rows.append(mapping.apply(record) if mapping else _identity(record))
                    continue
                except MappingError as exc:
                    reason = str(exc)
            quarantined.append(
                {
                    "pipeline": pipeline,
                    "connection": source_system,
                    "stream": self.stream_name,
                    "source_id": str(mapping.source_id_of(record)) if mapping else record.get("source_id"),
                    "stage": "schema" if reason.startswith("schema:") else "mapping",
                    "reason": reason,
                    "payload": record,
                }
            )
        obj = mapping.target_object if mapping else self.stream_name
        with target.engine.begin() as conn:
            target.check_owner(conn)
            res = target.hub.upsert(conn, obj, rows, source_system=source_system)
            target.quarantine.add_many(conn, quarantined)
        target.metrics(
            rows_read=len(context["records"]),
            rows_written=res.written,
            rows_unchanged=res.unchanged,
            rows_quarantined=len(quarantined),
            lines_written=res.lines_written,
        )


def _identity(record: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in record.items()
        if k not in ("id", "tenant_id", "row_hash", "created_at", "updated_at", "source_system")
    }


class TargetCRM(Target):
    """Singer target for the tongbu CRM hub."""

    name = "target-crm"
    default_sink_class = CRMSink
    message_reader_class = SingerInputReader  # bad input: one line each + quarantine, no traceback
    config_jsonschema = th.PropertiesList(
        th.Property(
            "database_url",
            th.StringType,
            secret=True,
            description="SQLAlchemy URL of the hub (default: TONGBU_DATABASE_URL or the local SQLite)",
        ),
        th.Property("source_system", th.StringType, description="Name stored as source_system on every row"),
        th.Property(
            "mapping_file",
            th.StringType,
            description="Mapping YAML (default: the library mapping for source_system's stream)",
        ),
        th.Property("mapping_name", th.StringType, description="Mapping to use when the file holds several"),
        th.Property("tenant", th.StringType, default=DEFAULT_TENANT),
        th.Property("pipeline", th.StringType, description="Pipeline name recorded with quarantined records"),
        th.Property("batch_size", th.IntegerType, default=5000),
        th.Property(
            "lock_holder",
            th.StringType,
            description="Pipeline lock holder of the run that started this target (pipe mode): a batch "
            "commits only while that holder still holds the pipeline's lock",
        ),
        th.Property(
            "parent_pid",
            th.IntegerType,
            description="PID of the runner that started this target: no commit once it is gone",
        ),
        th.Property(
            "emit_metrics",
            th.BooleanType,
            default=False,
            description="Write per-batch counts as JSON lines to stderr (used by tongbu's pipe mode)",
        ),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from tongbu.db import get_engine
        from tongbu.state.store import Quarantine

        self.engine = get_engine(self.config.get("database_url") or None)
        tenant = self.config.get("tenant") or DEFAULT_TENANT
        self.hub = HubStore(self.engine, tenant)
        self.quarantine = Quarantine(self.engine, tenant)
        self._mappings: dict[str, Any] = {}
        self._sampled: dict[str, list[dict[str, Any]]] = {}
        self._sample_done: set[str] = set()
        attach(self, self.quarantine_input)

    def quarantine_input(self, bad: BadMessage) -> None:
        """Keep a bad input message in the quarantine (stage ``input``); a bad STATE carries no data."""
        if bad.kind == "STATE":
            return
        stream = bad.stream or "<input>"
        entry = {
            "pipeline": self.config.get("pipeline") or f"target-crm:{stream}",
            "connection": self.config.get("source_system") or "singer",
            "stream": stream[:64],
            "source_id": None,
            "stage": "input",
            "reason": bad.describe(self.name),
            "payload": bad.payload(),
        }
        with self.engine.begin() as conn:
            self.quarantine.add_many(conn, [entry])
        self.metrics(rows_read=1, rows_written=0, rows_unchanged=0, rows_quarantined=1, lines_written=0)

    def mapping_for(self, stream: str) -> Any:
        """The compiled mapping for ``stream``; None = write as-is to the hub object of that name.

        With ``mapping_file`` the mapping comes from that file (by ``mapping_name`` or by stream);
        otherwise the shipped library is searched for a mapping from ``source_system``'s stream.
        """
        if stream in self._mappings:
            return self._mappings[stream]
        from mappings.engine import compile_mapping
        from mappings.spec import load_mappings

        path = self.config.get("mapping_file")
        name = self.config.get("mapping_name")
        system = self.config.get("source_system")
        files = [Path(path)] if path else sorted(LIBRARY.glob("*.yaml"))
        found = None
        for file in files:
            for spec in load_mappings(file):
                by_name = bool(name) and spec.name == name
                by_stream = (
                    not name and spec.source.stream == stream and (path or spec.source.system == system)
                )
                if by_name or by_stream:
                    found = spec
                if found is not None:
                    break
            if found is not None:
                break
        if found is None and (path or name or stream not in HUB_OBJECTS):
            where = path or f"the mapping library ({LIBRARY})"
            raise ValueError(
                f"{where}: no mapping for stream {stream!r}"
                + (f" named {name!r}" if name else f" of source system {system!r}")
            )
        self._mappings[stream] = compile_mapping(found) if found is not None else None
        return self._mappings[stream]

    def check_owner(self, conn: Any) -> None:
        """Refuse to commit when the run that started this target is gone (pipe mode).

        Called inside each batch's transaction, before anything is written. An orphaned target (its
        runner was killed) or one whose run lost the pipeline lock raises, so the transaction never
        commits. The lock check is a no-op UPDATE of the lock row: it takes the row's write lock, so a
        concurrent take-over waits for this transaction or makes it fail, never interleaves.
        """
        parent = self.config.get("parent_pid")
        if parent and os.getppid() != int(parent):
            raise RuntimeError(
                f"the tongbu run that started target-crm (pid {parent}) is gone; not committing"
            )
        holder = self.config.get("lock_holder")
        if not holder:
            return
        tenant = self.config.get("tenant") or DEFAULT_TENANT
        pipeline = self.config.get("pipeline") or ""
        held = conn.execute(
            update(_LOCKS)
            .where(_LOCKS.c.tenant_id == tenant, _LOCKS.c.pipeline == pipeline, _LOCKS.c.holder == holder)
            .values(holder=holder)
        ).rowcount
        if not held:
            raise RuntimeError(
                f"pipeline {pipeline!r} is no longer locked by the run that started target-crm; not committing"
            )

    def sample(self, stream: str, mapping: Any, records: list[dict[str, Any]]) -> None:
        """Warn once per stream when an optional source field is absent from the first records.

        Only the first :data:`SAMPLE_RECORDS` records of the run are looked at (the first batch or
        batches); the warnings go to tongbu's pipe runner on stderr, or to the log.
        """
        seen = self._sampled.setdefault(stream, [])
        if len(seen) >= SAMPLE_RECORDS or stream in self._sample_done:
            return
        seen.extend(records[: SAMPLE_RECORDS - len(seen)])
        if len(seen) < SAMPLE_RECORDS and len(records) >= self._batch_size():
            return  # more records are coming: decide on a full sample
        self._sample_done.add(stream)
        for note in absent_source_fields(optional_sources(mapping), seen):
            if self.config.get("emit_metrics"):
                sys.stderr.write("TONGBU_WARNING " + json.dumps(note, ensure_ascii=False) + "\n")
                sys.stderr.flush()
            else:
                self.logger.warning("%s: %s", stream, note)
        self._sampled[stream] = []

    def _batch_size(self) -> int:
        return int(self.config.get("batch_size") or 5000)

    def metrics(self, **counts: int) -> None:
        """Report batch counts to tongbu's pipe runner (stderr, one JSON line)."""
        if self.config.get("emit_metrics"):
            sys.stderr.write("TONGBU_METRICS " + json.dumps(counts) + "\n")
            sys.stderr.flush()


if __name__ == "__main__":
    TargetCRM.cli()
