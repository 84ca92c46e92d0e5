"""Applying pushed events that carry the whole record (Shopify webhooks, Youzan pushes) to the hub.

WeCom's callbacks carry only ids, so its source fetches the current state. A shop's webhook carries the
record itself, so there is nothing to fetch, but two things must hold that a fetch gave for free:

* **order**: deliveries are at least once and in no guaranteed order. An event older than what the hub
  holds (its ``source_modified_at``) is ignored, so a late ``orders/updated`` never overwrites a
  newer one; of a burst for one record only the newest is mapped.
* **one mapping**: the record goes through the same mapping file as the batch pipeline, so a record
  written by a webhook and re-read by the next sync hashes the same and costs nothing. A record the
  mapping rejects is quarantined with the reason (the pipeline's quarantine), never lost.

:class:`RecordEventWriter` does both for one connection; a connector's :class:`~connectors.kit.events.
EventSource` calls :meth:`RecordEventWriter.upsert` / :meth:`RecordEventWriter.delete` from ``prepare``.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import Connection, Engine

from connectors.kit.events import EventRejected, EventSource, PreparedChange
from mappings.engine import CompiledMapping, MappingError, compile_mapping
from mappings.spec import load_mapping
from tongbu.config import DEFAULT_TENANT
from tongbu.hub.store import HubStore, hub_table
from tongbu.state.store import Quarantine


def _utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:  # SQLite hands back naive UTC
        value = value.replace(tzinfo=dt.UTC)
    utc: dt.datetime = value.astimezone(dt.UTC)
    return utc


class RecordEventWriter:
    """Maps whole-record events with a connector's mapping file and writes them, newest wins.

    ``mappings`` names, per stream, the mapping in ``mapping_file`` and the hub object it targets.
    ``source_system`` is the connection name, the value the batch runner stores.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        source_system: str,
        mapping_file: str | Path,
        mappings: Mapping[str, str],
        tenant: str = DEFAULT_TENANT,
        pipeline_prefix: str | None = None,
    ) -> None:
        self.engine, self.tenant, self.source_system = engine, tenant, source_system
        self.hub = HubStore(engine, tenant)
        self.quarantine = Quarantine(engine, tenant)
        self.pipeline_prefix = pipeline_prefix or source_system
        self.compiled: dict[str, CompiledMapping] = {
            stream: compile_mapping(load_mapping(mapping_file, name)) for stream, name in mappings.items()
        }

    def target(self, stream: str) -> str:
        """The hub object ``stream`` is written to."""
        return str(self.compiled[stream].target_object)

    def upsert(self, stream: str, record: Mapping[str, Any], *, source_id: str) -> PreparedChange:
        """The change that writes ``record`` unless the hub already holds a newer version of it."""
        obj = self.target(stream)
        asset = f"crm/{obj}"
        try:
            row = self.compiled[stream].apply(record)
        except MappingError as exc:
            return self.quarantine_change(stream, source_id, str(exc), record)
        incoming = _utc(row.get("source_modified_at"))
        table = hub_table(obj)

        def write(conn: Connection) -> dict[str, int]:
            held = conn.execute(
                table.select()
                .with_only_columns(table.c.source_modified_at)
                .where(
                    table.c.tenant_id == self.tenant,
                    table.c.source_system == self.source_system,
                    table.c.source_id == str(row["source_id"]),
                )
            ).first()
            current = _utc(held[0]) if held is not None else None
            if incoming is not None and current is not None and incoming < current:
                return {"stale": 1}  # an older delivery arriving late: the hub has newer data
            result = self.hub.upsert(conn, obj, [row], source_system=self.source_system)
            return {"written": result.written, "unchanged": result.unchanged}

        return PreparedChange(
            write=write, assets=(asset,), summary={"stream": stream, "source_id": source_id}
        )

    def quarantine_change(
        self, stream: str, source_id: str, reason: str, payload: Mapping[str, Any]
    ) -> PreparedChange:
        """The change that quarantines one record with ``reason`` (the stream's pipeline quarantine)."""
        entry = {
            "pipeline": f"{self.pipeline_prefix}_{stream}",
            "connection": self.source_system,
            "stream": stream,
            "source_id": source_id,
            "stage": "mapping",
            "reason": reason,
            "payload": dict(payload),
            "run_id": None,
        }

        def write(conn: Connection) -> dict[str, int]:
            self.quarantine.add_many(conn, [entry])
            return {"quarantined": 1}

        return PreparedChange(write=write, summary={"quarantined": reason[:200]}, status="quarantined")

    def delete(self, stream: str, source_id: str) -> PreparedChange:
        """The change that soft-deletes one record."""
        obj = self.target(stream)

        def write(conn: Connection) -> dict[str, int]:
            done = self.hub.mark_deleted(conn, obj, [source_id], source_system=self.source_system)
            return {"deleted": done}

        return PreparedChange(write=write, assets=(f"crm/{obj}",), summary={"deleted": source_id})


def json_object(body: bytes | str, what: str = "body") -> dict[str, Any]:
    """``body`` decoded as a JSON object, else :class:`EventRejected` 400 naming ``what``."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise EventRejected(400, f"{what} is not JSON") from None
    if not isinstance(doc, dict):
        raise EventRejected(400, f"{what} is not a JSON object")
    return doc


class RecordEventSource(EventSource):
    """An event source whose events carry whole records, on a connection shared with a tap.

    The constructor refuses settings the tap does not know (one connection config serves the batch
    tap and the webhooks) and builds :attr:`writer`, the :class:`RecordEventWriter` of
    :attr:`mappings`; a subclass reads and checks its own settings in :meth:`configure`.
    """

    #: ``module:Class`` of the tap whose settings the connection holds; imported on first use so the
    #: registry can list event sources without importing singer-sdk taps
    tap_class: ClassVar[str]
    #: the service's name in messages (``"Shopify"``)
    label: ClassVar[str]
    mapping_file: ClassVar[Path]
    #: stream -> mapping name in :attr:`mapping_file`
    mappings: ClassVar[Mapping[str, str]]

    def __init__(
        self, name: str, config: Mapping[str, Any], *, engine: Engine, tenant: str = DEFAULT_TENANT
    ) -> None:
        super().__init__(name, config, engine=engine, tenant=tenant)
        module, _, cls = self.tap_class.partition(":")
        tap = getattr(importlib.import_module(module), cls)
        unknown = sorted(set(config) - set(tap.config_jsonschema["properties"]))
        if unknown:
            raise ValueError(f"connection {name!r}: unknown {self.label} setting(s) {', '.join(unknown)}")
        self.configure(config)
        self.writer = RecordEventWriter(
            engine, source_system=name, mapping_file=self.mapping_file, mappings=self.mappings, tenant=tenant
        )

    def configure(self, config: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Read the source's own settings (secrets, shop); raise ValueError naming what is missing."""
