"""Who hears about applied events besides the hub: the observer protocol and the Dagster reporter."""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("tongbu.serve")  # one logger for the whole command


@dataclass
class AppliedChange:
    """One committed record change, as observers see it."""

    source: str
    record_key: str
    kinds: list[str]
    events: int
    received_at: float
    applied_at: float
    status: str
    counts: dict[str, int]
    assets: tuple[str, ...]
    observed: tuple[str, ...]
    summary: dict[str, Any]

    @property
    def latency_s(self) -> float:
        """First event received → hub committed."""
        return self.applied_at - self.received_at


class EventObserver(ABC):
    """Receives committed changes (called on the database thread: must return immediately)."""

    @abstractmethod
    def submit(self, changes: list[AppliedChange]) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and stop."""


class DagsterObserver(EventObserver):
    """Reports applied events to Dagster as runless asset events, batched every ``interval`` seconds.

    Per flush and asset: an ``AssetMaterialization`` on each hub asset that was written (e.g.
    ``crm/contacts``) and an ``AssetObservation`` on each source asset events were about (e.g.
    ``wecom/external_contacts``), with every event's record key, change type and latency in the
    metadata. Batching keeps Dagster's event-log writes off the event path's latency.
    """

    def __init__(self, instance: Any = None, *, interval: float = 2.0, max_keys: int = 500) -> None:
        if instance is None:
            from dagster import DagsterInstance

            instance = DagsterInstance.get()
        self.instance = instance
        self.interval = interval
        self.max_keys = max_keys
        self.reported = 0
        self._queue: queue.SimpleQueue[list[AppliedChange] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="tongbu-dagster-observer", daemon=True)
        self._thread.start()

    def submit(self, changes: list[AppliedChange]) -> None:
        self._queue.put(changes)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(30)

    def _run(self) -> None:
        buffer: list[AppliedChange] = []
        deadline = time.monotonic() + self.interval
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                item = []
            if item is None:
                self._flush(buffer)
                return
            buffer.extend(item)
            if time.monotonic() >= deadline:
                self._flush(buffer)
                buffer = []
                deadline = time.monotonic() + self.interval

    def _flush(self, changes: list[AppliedChange]) -> None:
        if not changes:
            return
        import dagster as dg

        by_asset: dict[tuple[str, str], list[AppliedChange]] = {}
        for ch in changes:
            for asset in ch.assets:
                by_asset.setdefault(("materialization", asset), []).append(ch)
            for asset in ch.observed:
                by_asset.setdefault(("observation", asset), []).append(ch)
        for (kind, asset), group in by_asset.items():
            md = self._metadata(group, asset)
            key = dg.AssetKey(asset.split("/"))
            written = md["written"] + md["deleted"]
            try:
                if kind == "materialization" and written:
                    event: Any = dg.AssetMaterialization(
                        asset_key=key, description="tongbu serve: real-time events", metadata=md
                    )
                else:
                    event = dg.AssetObservation(
                        asset_key=key, description="tongbu serve: real-time events", metadata=md
                    )
                self.instance.report_runless_asset_event(event)
                self.reported += 1
            except Exception:  # Dagster being down must never stop the event path
                log.exception("could not report %d event(s) on %s to Dagster", len(group), asset)

    @staticmethod
    def _count(change: AppliedChange, name: str, asset: str) -> int:
        # A source may count per asset ("written:crm/accounts"); the plain name is its main asset.
        per_asset = change.counts.get(f"{name}:{asset}")
        if per_asset is not None:
            return per_asset
        main = change.assets[0] if change.assets else None
        return change.counts.get(name, 0) if asset == main or asset in change.observed else 0

    def _metadata(self, group: list[AppliedChange], asset: str) -> dict[str, Any]:
        lat = sorted(c.latency_s * 1000 for c in group)
        kinds: Counter[str] = Counter()
        for c in group:
            kinds.update(c.kinds)

        def total(name: str) -> int:
            return sum(self._count(c, name, asset) for c in group)

        return {
            "events": sum(c.events for c in group),
            "records": len(group),
            "written": total("written"),
            "unchanged": total("unchanged"),
            "deleted": total("deleted"),
            "quarantined": total("quarantined"),
            "change_types": dict(kinds),
            "latency_p50_ms": round(lat[len(lat) // 2], 1),
            "latency_max_ms": round(lat[-1], 1),
            "first_received": dt.datetime.fromtimestamp(
                min(c.received_at for c in group), dt.UTC
            ).isoformat(),
            "events_detail": [
                {
                    "record": c.record_key,
                    "changes": c.kinds,
                    "status": c.status,
                    "latency_ms": round(c.latency_s * 1000, 1),
                }
                for c in group[: self.max_keys]
            ],
        }
