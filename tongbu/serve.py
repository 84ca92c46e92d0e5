"""``tongbu serve``: the real-time path for every connector that pushes events (WeCom now; shops, ERPs later).

An external system POSTs an event → the :class:`EventSource` of that connector verifies and decodes it
(a bad signature is answered 403 and nothing is stored) → the event is written to a durable **inbox**
table and the sender is answered at once (WeCom retries after 5 s) → a worker pool applies it to the
CRM hub through the connector's mapping, quarantine and the hash-guarded upsert.

Guarantees, and how:

* **durable before ack**: the inbox insert commits before ``success`` is returned; pending rows are
  re-dispatched when the server restarts;
* **at most once per event**: the inbox has a unique key per source and *dedup key* (for WeCom the
  hash of the decrypted message), so a replay or a retry is acknowledged but applied only once; a
  timestamp window (checked by the source) turns away replays older than the dedup retention;
* **in order per record, bursts coalesced**: events are grouped by *record key* (e.g. one WeCom
  contact); one record is never applied by two workers at once, and events arriving for it within the
  coalescing window, or while it is being applied, are applied together with one fetch;
* **fast**: inbox inserts and hub writes go through one database thread that commits whatever has
  queued up in a single transaction (group commit), so the SQLite writer lock is never contended;
* **visible**: every applied event is reported to Dagster (runless asset materialisations /
  observations, batched off the hot path) and to ``GET /_tongbu/events/metrics``.

Connectors provide an event source in ``connectors/<name>/events.py`` (found by the registry); ``tongbu serve`` builds one per connection
of the project file whose connector has one, at ``/hooks/<connection>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    inspect,
    select,
    update,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from connectors import registry
from connectors.kit.events import EventRejected, EventSource, InboundEvent
from tongbu.config import DEFAULT_TENANT
from tongbu.db import Base
from tongbu.metrics import metrics_route

log = logging.getLogger("tongbu.serve")

# -- the inbox ---------------------------------------------------------------------------------------
# Owned by migration 0004_event_inbox (on the shared metadata, so Alembic sees it); it holds only
# transient delivery state, never business data.
event_inbox = Table(
    "event_inbox",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("source", String(64), nullable=False),  # the connection name, e.g. "wecom"
    Column("dedup_key", String(64), nullable=False),
    Column("record_key", String(160), nullable=False),
    Column("kind", String(96), nullable=False),
    Column("payload", JSON),
    Column("received_at", Float, nullable=False),  # epoch seconds, sub-second precision
    Column("status", String(16), nullable=False),  # pending | applied | quarantined | ignored | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("applied_at", Float),
    Column("error", Text),
    UniqueConstraint("tenant_id", "source", "dedup_key", name="uq_event_inbox_dedup"),
    Index("ix_event_inbox_status", "status", "received_at"),
    Index("ix_event_inbox_record", "source", "record_key", "applied_at"),
)
_DONE_STATUSES = ("applied", "quarantined", "ignored")


def ensure_inbox(engine: Engine) -> None:
    """Create the inbox table if it is missing."""
    event_inbox.create(engine, checkfirst=True)  # normally already there: get_engine() migrates


def applied_since(
    conn: Connection, *, tenant: str, source: str, record_keys: Sequence[str], since: float
) -> set[str]:
    """Which ``record_keys`` the event path applied at or after ``since`` (epoch seconds).

    A full rescan asks this so it neither overwrites nor deletes what a callback changed while it was
    scanning. Returns an empty set when the inbox does not exist (no event path in this deployment).
    """
    if not record_keys or not inspect(conn).has_table("event_inbox"):
        return set()
    found: set[str] = set()
    for start in range(0, len(record_keys), 500):
        chunk = list(record_keys[start : start + 500])
        found.update(
            conn.execute(
                select(event_inbox.c.record_key).where(
                    event_inbox.c.tenant_id == tenant,
                    event_inbox.c.source == source,
                    event_inbox.c.record_key.in_(chunk),
                    event_inbox.c.applied_at >= since,
                )
            ).scalars()
        )
    return found


# -- what a connector provides: connectors/kit/events.py; discovery: connectors/registry.py ---------------
def load_event_source(connector: str) -> type[EventSource]:
    """The event source class of ``connector`` (KeyError listing the connectors that have one)."""
    return registry.load_event_source(connector)


# -- observers (Dagster) -----------------------------------------------------------------------------
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


# -- metrics -------------------------------------------------------------------------------------------
class EventMetrics:
    """Counters and a latency sample (received → hub committed) for ``/_tongbu/events/metrics``."""

    def __init__(self, sample: int = 200_000) -> None:
        self.counts: Counter[str] = Counter()
        self.latencies: deque[float] = deque(maxlen=sample)
        self._lock = threading.Lock()

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def latency(self, seconds: float, n: int = 1) -> None:
        with self._lock:
            self.latencies.extend([seconds] * n)

    def snapshot(self) -> dict[str, Any]:
        """Counts and p50/p90/p99/max latency in milliseconds."""
        with self._lock:
            lat = sorted(self.latencies)
            counts = dict(self.counts)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else None

        return {
            "counts": counts,
            "latency_ms": {
                "n": len(lat),
                "p50": pct(0.50),
                "p90": pct(0.90),
                "p99": pct(0.99),
                "max": pct(1.0),
            },
        }


# -- the database thread -------------------------------------------------------------------------------
class _DbJob:
    __slots__ = ("kind", "data", "future")

    def __init__(self, kind: str, data: Any) -> None:
        self.kind = kind
        self.data = data
        self.future: Future[Any] = Future()


class _Database:
    """One thread owns every write to the inbox and the hub: it commits queued jobs together."""

    def __init__(
        self,
        engine: Engine,
        tenant: str,
        *,
        max_batch: int = 256,
        on_commit: Callable[[list[AppliedChange]], None] | None = None,
    ) -> None:
        self.engine = engine
        self.tenant = tenant
        self.max_batch = max_batch
        self.on_commit = on_commit
        self._jobs: queue.SimpleQueue[_DbJob | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="tongbu-serve-db", daemon=True)
        self._thread.start()
        self.commits = 0

    def submit(self, kind: str, data: Any) -> Future[Any]:
        job = _DbJob(kind, data)
        self._jobs.put(job)
        return job.future

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(30)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch = [job]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_DbJob]) -> None:
        try:
            with self.engine.begin() as conn:
                results = [self._execute(conn, job) for job in batch]
                stamp = time.time()
                for job, res in zip(batch, results, strict=True):
                    if job.kind == "apply":
                        conn.execute(
                            update(event_inbox)
                            .where(event_inbox.c.id.in_(res["ids"]))
                            .values(
                                status=res["status"],
                                applied_at=stamp,
                                attempts=event_inbox.c.attempts + 1,
                                error=None,
                            )
                        )
            self.commits += 1
        except Exception as exc:
            if len(batch) > 1:
                # One bad job must not sink its neighbours: retry each on its own.
                for job in batch:
                    self._commit([job])
                return
            batch[0].future.set_exception(exc)
            return
        done = time.time()
        applied: list[AppliedChange] = []
        for job, res in zip(batch, results, strict=True):
            if job.kind == "apply":
                res["change"].applied_at = done
                applied.append(res["change"])
            job.future.set_result(res)
        if applied and self.on_commit is not None:
            self.on_commit(applied)

    def _execute(self, conn: Connection, job: _DbJob) -> Any:
        if job.kind == "insert":
            return self._insert(conn, job.data)
        if job.kind == "apply":
            prepared, change, ids = job.data
            counts: dict[str, int] = {}
            if prepared.write is not None:
                with conn.begin_nested():  # a failing write rolls back alone, not the whole group
                    counts = dict(prepared.write(conn))
            change.counts = counts
            status = "quarantined" if counts.get("quarantined") else prepared.status
            change.status = status
            return {"ids": ids, "status": status, "change": change}
        if job.kind == "fail":
            ids, error = job.data
            conn.execute(
                update(event_inbox)
                .where(event_inbox.c.id.in_(ids))
                .values(status="failed", attempts=event_inbox.c.attempts + 1, error=error[:2000])
            )
            return None
        if job.kind == "purge":
            before = job.data
            return conn.execute(
                delete(event_inbox).where(
                    event_inbox.c.received_at < before, event_inbox.c.status.in_((*_DONE_STATUSES, "failed"))
                )
            ).rowcount
        raise ValueError(job.kind)

    def _insert(self, conn: Connection, events: list[InboundEvent]) -> list[InboundEvent]:
        fresh: list[InboundEvent] = []
        for ev in events:
            exists = conn.execute(
                select(event_inbox.c.id).where(
                    event_inbox.c.tenant_id == self.tenant,
                    event_inbox.c.source == ev.source,
                    event_inbox.c.dedup_key == ev.dedup_key,
                )
            ).first()
            if exists is not None:
                continue  # a replay or a retry of something we already hold
            ev.id = int(
                conn.execute(
                    event_inbox.insert().values(
                        tenant_id=self.tenant,
                        source=ev.source,
                        dedup_key=ev.dedup_key,
                        record_key=ev.record_key,
                        kind=ev.kind,
                        payload=ev.payload,
                        received_at=ev.received_at,
                        status="pending",
                        attempts=0,
                    )
                ).inserted_primary_key[0]
            )
            fresh.append(ev)
        return fresh


# -- the processor -------------------------------------------------------------------------------------
class EventProcessor:
    """Inbox, dispatcher (per-record order, coalescing, retries) and worker pool for all sources."""

    def __init__(
        self,
        engine: Engine,
        sources: Mapping[str, EventSource],
        *,
        tenant: str = DEFAULT_TENANT,
        workers: int = 8,
        coalesce_s: float = 0.020,
        max_attempts: int = 6,
        retry_base_s: float = 1.0,
        retention_s: float = 86_400.0,
        observers: Sequence[EventObserver] = (),
    ) -> None:
        self.engine = engine
        self.sources = dict(sources)
        self.tenant = tenant
        self.coalesce_s = coalesce_s
        self.max_attempts = max_attempts
        self.retry_base_s = retry_base_s
        self.retention_s = retention_s
        self.observers = list(observers)
        self.metrics = EventMetrics()
        self._n_workers = max(1, workers)
        self._cond = threading.Condition()
        self._pending: dict[tuple[str, str], list[InboundEvent]] = {}
        self._scheduled: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, int, tuple[str, str]]] = []
        self._inflight: set[tuple[str, str]] = set()
        self._seq = 0
        self._running = False
        self._threads: list[threading.Thread] = []
        self._db: _Database | None = None
        self._last_purge = 0.0

    # -- lifecycle --
    def start(self) -> None:
        """Create the inbox, start the threads and re-dispatch events a previous run left pending."""
        if self._running:
            return
        ensure_inbox(self.engine)
        self._db = _Database(self.engine, self.tenant, on_commit=self._committed)
        self._running = True
        for i in range(self._n_workers):
            t = threading.Thread(target=self._work, name=f"tongbu-serve-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        self._recover()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is in flight (up to ``timeout``), then stop; pending events stay in the inbox."""
        if not self._running:
            return
        self.drain(timeout)
        with self._cond:
            self._running = False
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        if self._db is not None:
            self._db.close()
        for obs in self.observers:
            obs.close()
        for src in self.sources.values():
            src.close()

    def _recover(self) -> None:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(event_inbox)
                    .where(
                        event_inbox.c.tenant_id == self.tenant,
                        event_inbox.c.status == "pending",
                        event_inbox.c.source.in_(list(self.sources)),
                    )
                    .order_by(event_inbox.c.id)
                )
                .mappings()
                .all()
            )
        events = [
            InboundEvent(
                source=r["source"],
                dedup_key=r["dedup_key"],
                record_key=r["record_key"],
                kind=r["kind"],
                payload=r["payload"] or {},
                received_at=r["received_at"],
                id=r["id"],
                attempts=r["attempts"],
            )
            for r in rows
        ]
        if events:
            log.info("re-dispatching %d event(s) left pending by a previous run", len(events))
            self.metrics.count("recovered", len(events))
            self._dispatch(events)

    # -- intake --
    def submit(self, events: list[InboundEvent]) -> Future[list[InboundEvent]]:
        """Store events durably; the future resolves to the new ones (already dispatched)."""
        assert self._db is not None, "EventProcessor.start() first"
        outer: Future[list[InboundEvent]] = Future()
        inner = self._db.submit("insert", events)

        def done(f: Future[Any]) -> None:
            exc = f.exception()
            if exc is not None:
                outer.set_exception(exc)
                return
            fresh: list[InboundEvent] = f.result()
            self.metrics.count("received", len(events))
            self.metrics.count("duplicates", len(events) - len(fresh))
            self._dispatch(fresh)
            outer.set_result(fresh)

        inner.add_done_callback(done)
        return outer

    async def accept(self, events: list[InboundEvent]) -> list[InboundEvent]:
        """``submit`` for the ASGI handler."""
        return await asyncio.wrap_future(self.submit(events))

    def _dispatch(self, events: Iterable[InboundEvent]) -> None:
        now = time.monotonic()
        with self._cond:
            for ev in events:
                key = (ev.source, ev.record_key)
                self._pending.setdefault(key, []).append(ev)
                if key not in self._inflight and key not in self._scheduled:
                    self._schedule(key, now + self.coalesce_s)
            self._cond.notify_all()

    def _schedule(self, key: tuple[str, str], due: float) -> None:
        self._seq += 1
        self._scheduled[key] = due
        heapq.heappush(self._heap, (due, self._seq, key))

    # -- workers --
    def _next(self) -> tuple[tuple[str, str], list[InboundEvent]] | None:
        with self._cond:
            while self._running:
                now = time.monotonic()
                while self._heap:
                    due, _, key = self._heap[0]
                    if self._scheduled.get(key) != due:
                        heapq.heappop(self._heap)  # superseded entry
                        continue
                    if key in self._inflight:
                        # Never two workers on one record: the worker that holds it reschedules it.
                        heapq.heappop(self._heap)
                        del self._scheduled[key]
                        continue
                    if due > now:
                        break
                    heapq.heappop(self._heap)
                    del self._scheduled[key]
                    events = self._pending.pop(key, [])
                    if not events:
                        continue
                    self._inflight.add(key)
                    return key, events
                wait = (self._heap[0][0] - now) if self._heap else 1.0
                self._cond.wait(max(0.001, min(wait, 1.0)))
            return None

    def _work(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            key, events = item
            retry_at: float | None = None
            try:
                self._apply(key, events)
            except Exception as exc:
                retry_at = self._failed(key, events, exc)
            finally:
                with self._cond:
                    self._inflight.discard(key)
                    if retry_at is not None:
                        self._pending[key] = events + self._pending.get(key, [])
                        self._schedule(key, retry_at)
                    elif key in self._pending and key not in self._scheduled:
                        self._schedule(key, time.monotonic())  # arrived while we applied: go now
                    self._cond.notify_all()
            self._maybe_purge()

    def _apply(self, key: tuple[str, str], events: list[InboundEvent]) -> None:
        source = self.sources[key[0]]
        prepared = source.prepare(key[1], events)
        change = AppliedChange(
            source=key[0],
            record_key=key[1],
            kinds=[e.kind for e in events],
            events=len(events),
            received_at=min(e.received_at for e in events),
            applied_at=0.0,
            status=prepared.status,
            counts={},
            assets=prepared.assets,
            observed=prepared.observed,
            summary=prepared.summary,
        )
        assert self._db is not None
        self._db.submit("apply", (prepared, change, [e.id for e in events if e.id is not None])).result()
        if len(events) > 1:
            self.metrics.count("coalesced", len(events) - 1)

    def _failed(self, key: tuple[str, str], events: list[InboundEvent], exc: Exception) -> float | None:
        attempts = max(e.attempts for e in events) + 1
        for e in events:
            e.attempts = attempts
        self.metrics.count("apply_errors")
        if attempts >= self.max_attempts:
            # Give up: the record stays as it was until the next full rescan repairs it.
            log.error("giving up on %s after %d attempts: %s", key, attempts, exc)
            assert self._db is not None
            with contextlib.suppress(Exception):
                self._db.submit(
                    "fail", ([e.id for e in events if e.id is not None], f"{type(exc).__name__}: {exc}")
                ).result()
            self.metrics.count("failed", len(events))
            return None
        log.warning("applying %s failed (attempt %d), retrying: %s", key, attempts, exc)
        return time.monotonic() + self.retry_base_s * (2 ** (attempts - 1))

    def _committed(self, changes: list[AppliedChange]) -> None:
        for ch in changes:
            self.metrics.count("applied", ch.events)
            self.metrics.count(f"status_{ch.status}", ch.events)
            self.metrics.latency(ch.latency_s)
        for obs in self.observers:
            try:
                obs.submit(changes)
            except Exception:  # an observer must never break the event path
                log.exception("observer failed")

    def _maybe_purge(self) -> None:
        now = time.time()
        if now - self._last_purge < 600 or self._db is None:
            return
        self._last_purge = now
        self._db.submit("purge", now - self.retention_s)

    # -- introspection --
    @property
    def backlog(self) -> int:
        """Events received but not yet applied (pending + in flight)."""
        with self._cond:
            return sum(len(v) for v in self._pending.values()) + len(self._inflight)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is pending or in flight (tests, benchmarks, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True


# -- configuration -------------------------------------------------------------------------------------
@dataclass
class SourceSpec:
    """One webhook to serve: a connection name, its connector and its (resolved) config."""

    name: str
    connector: str
    config: dict[str, Any] = field(repr=False)


@dataclass
class ServeConfig:
    """Everything ``build_app`` needs; build it from a project file or a JSON/dict."""

    sources: list[SourceSpec]
    database_url: str | None = None
    tenant: str = DEFAULT_TENANT
    workers: int = 8
    coalesce_ms: float = 20.0
    max_attempts: int = 6
    max_body_bytes: int = 64 * 1024
    dagster: str = "auto"  # auto (when DAGSTER_HOME is set) | on | off
    dagster_interval_s: float = 2.0
    retention_hours: float = 24.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServeConfig:
        """``{"sources": [{"name", "connector", "config"}], ...}`` (e.g. a JSON file)."""
        d = dict(data)
        sources = [
            SourceSpec(s["name"], s.get("connector", s["name"]), dict(s.get("config") or {}))
            for s in d.pop("sources", [])
        ]
        known = set(cls.__dataclass_fields__) - {"sources"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown serve option(s): {', '.join(sorted(unknown))}")
        return cls(sources=sources, **d)

    @classmethod
    def from_project(
        cls, project: str | Path | None = None, *, connections: Sequence[str] | None = None, **options: Any
    ) -> ServeConfig:
        """One source per connection whose connector pushes events (vault/env references resolved)."""
        from pipelines.project import load_project
        from pipelines.secrets import resolve_secrets

        proj = load_project(project)
        sources = []
        for name, conn in proj.connections.items():
            if conn.connector not in registry.event_sources() or (connections and name not in connections):
                continue
            cfg = resolve_secrets(proj.resolved_config(name), tenant=proj.tenant)
            sources.append(SourceSpec(name, conn.connector, cfg))
        if not sources:
            raise ValueError(
                "no connection in the project pushes events "
                f"(connectors with an event source: {', '.join(sorted(registry.event_sources()))})"
            )
        return cls(sources=sources, tenant=proj.tenant, **options)


def _make_observers(cfg: ServeConfig) -> list[EventObserver]:
    import os

    if cfg.dagster == "off" or (cfg.dagster == "auto" and not os.environ.get("DAGSTER_HOME")):
        return []
    try:
        return [DagsterObserver(interval=cfg.dagster_interval_s)]
    except Exception as exc:
        if cfg.dagster == "on":
            raise
        log.warning("Dagster reporting disabled: %s", exc)
        return []


def build_processor(
    cfg: ServeConfig, *, engine: Engine | None = None, observers: Sequence[EventObserver] | None = None
) -> EventProcessor:
    """The processor with one :class:`EventSource` per configured source (not started)."""
    from tongbu.db import get_engine

    engine = engine or get_engine(cfg.database_url)
    sources: dict[str, EventSource] = {}
    for spec in cfg.sources:
        cls = load_event_source(spec.connector)
        sources[spec.name] = cls(spec.name, spec.config, engine=engine, tenant=cfg.tenant)
    return EventProcessor(
        engine,
        sources,
        tenant=cfg.tenant,
        workers=cfg.workers,
        coalesce_s=cfg.coalesce_ms / 1000.0,
        max_attempts=cfg.max_attempts,
        retention_s=cfg.retention_hours * 3600,
        observers=_make_observers(cfg) if observers is None else observers,
    )


# -- bounded parsing of untrusted bodies -------------------------------------------------------------
class BodyRejected(ValueError):
    """An untrusted body is too large, too deep or not what it claims to be (the message is public)."""


def parse_json_body(
    body: bytes | str, *, max_bytes: int = 64 * 1024, max_depth: int = 32, max_items: int = 10_000
) -> Any:
    """Parse an untrusted JSON webhook body in linear time, bounded in size, nesting and item count.

    The bounds are checked by one pass over the bytes *before* ``json.loads`` runs, so a deep or huge
    document never reaches the parser (whose recursion a 100,000-deep ``[[[…`` would otherwise blow);
    numbers are parsed with Python's digit limit, NaN/Infinity are refused. Raises :class:`BodyRejected`.
    """
    import json

    raw = body.encode("utf-8") if isinstance(body, str) else body
    if len(raw) > max_bytes:
        raise BodyRejected(f"JSON body is larger than {max_bytes} bytes")
    depth = items = 0
    in_string = escaped = False
    for byte in raw:  # one linear pass: nesting outside strings, and commas as an item count
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > max_depth:
                raise BodyRejected(f"JSON body is nested deeper than {max_depth} levels")
        elif byte in (0x5D, 0x7D):
            depth -= 1
        elif byte == 0x2C:
            items += 1
            if items > max_items:
                raise BodyRejected(f"JSON body has more than {max_items} items")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyRejected("JSON body is not UTF-8") from None

    def no_constants(name: str) -> Any:
        raise BodyRejected(f"JSON body contains {name}, which is not JSON")

    try:
        return json.loads(text, parse_constant=no_constants)
    except BodyRejected:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, and int() over the digit limit
        raise BodyRejected(f"JSON body is not valid JSON ({str(exc)[:80]})") from None


# -- the ASGI app --------------------------------------------------------------------------------------
async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The request body, or None once it exceeds ``limit`` (an oversized body is never buffered whole).

    Raises :class:`~starlette.requests.ClientDisconnect` when the sender hangs up mid-body.
    """
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared[:20]) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(
    config: ServeConfig | Mapping[str, Any],
    *,
    engine: Engine | None = None,
    observers: Sequence[EventObserver] | None = None,
) -> Starlette:
    """The webhook receiver: ``/hooks/<source>`` per source, ``/healthz``, ``/_tongbu/events/metrics``.

    The processor starts with the app's lifespan and is at ``app.state.processor``.
    """
    cfg = config if isinstance(config, ServeConfig) else ServeConfig.from_dict(config)
    processor = build_processor(cfg, engine=engine, observers=observers)
    max_body = cfg.max_body_bytes

    def hook(source: EventSource) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            received = time.time()
            query = dict(request.query_params)

            def rejected(status: int, reason: str) -> Response:
                # Every refusal: one warning line (no traceback), a metric, and the public reason.
                processor.metrics.count("rejected")
                log.warning("rejected a %s to %s (%d): %s", request.method, source.path, status, reason)
                return PlainTextResponse(reason, status_code=status)

            if request.method == "GET":
                try:
                    return PlainTextResponse(await run_in_threadpool(source.verify_url, query))
                except EventRejected as exc:
                    return rejected(exc.status_code, exc.reason)
                except Exception as exc:  # a bug in a source: one line, never a traceback to the sender
                    log.error("URL verification on %s failed: %s: %s", source.path, type(exc).__name__, exc)
                    return PlainTextResponse("internal error", status_code=500)
            if request.method != "POST":
                # Starlette routes HEAD to GET endpoints; neither HEAD nor anything else is a delivery.
                resp = rejected(405, f"{request.method} is not a delivery (deliveries are POST)")
                resp.headers["Allow"] = "GET, POST"
                return resp
            try:
                body = await _read_limited(request, max_body)
            except ClientDisconnect:
                processor.metrics.count("disconnected")
                log.warning("a sender hung up mid-body on %s; nothing stored", source.path)
                return PlainTextResponse("client disconnected", status_code=400)  # nobody is listening
            if body is None:
                return rejected(413, "payload too large")
            try:
                # Verification is cheap, but decrypting and XML parsing are not free: keep the loop free.
                events = await run_in_threadpool(source.parse, query, request.headers, body, received)
            except EventRejected as exc:
                return rejected(exc.status_code, exc.reason)
            except Exception as exc:
                log.error("could not parse a delivery to %s: %s: %s", source.path, type(exc).__name__, exc)
                return PlainTextResponse("internal error", status_code=500)
            for ev in events:
                ev.received_at = received
            try:
                await processor.accept(events)
            except Exception as exc:
                log.error("could not store events for %s: %s: %s", source.name, type(exc).__name__, exc)
                return PlainTextResponse("temporarily unavailable", status_code=503)  # the sender retries
            return source.ack()

        return endpoint

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "sources": sorted(processor.sources), "backlog": processor.backlog})

    async def metrics(request: Request) -> Response:
        return JSONResponse({**processor.metrics.snapshot(), "backlog": processor.backlog})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):  # noqa: ANN202 - Starlette's lifespan protocol
        processor.start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, processor.stop)

    routes = [Route(src.path, hook(src), methods=["GET", "POST"]) for src in processor.sources.values()]
    routes += [Route("/healthz", health), Route("/_tongbu/events/metrics", metrics)]
    routes.append(metrics_route(processor))  # Prometheus: /metrics (tongbu/metrics.py)
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.processor = processor
    return app


class BackgroundServer:
    """Serve an app with uvicorn on a background thread (tests, benchmarks, the demo)."""

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        from connectors.kit.server import free_port

        self.app = app
        self.host = host
        self.port = port or free_port(host)

        class _Server(uvicorn.Server):
            def install_signal_handlers(self) -> None:  # the host process owns signals
                pass

        self._server = _Server(
            uvicorn.Config(
                app,
                host=host,
                port=self.port,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_keep_alive=30,
            )
        )
        self._thread = threading.Thread(target=self._server.run, name="tongbu-serve-http", daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> str:
        """Start and wait until it accepts connections; returns the base URL."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"server did not start on {self.url}")
            time.sleep(0.01)
        return self.url

    def stop(self) -> None:
        """Stop serving (the app's lifespan stops the event processor)."""
        self._server.should_exit = True
        self._thread.join(30)

    def __enter__(self) -> BackgroundServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    host: str = "127.0.0.1",
    port: int = 8400,
    *,
    config: ServeConfig | Mapping[str, Any] | None = None,
    project: str | Path | None = None,
    connections: Sequence[str] | None = None,
    log_level: str = "warning",
    **options: Any,
) -> None:
    """Run the webhook receiver in the foreground (uvicorn) until interrupted."""
    import uvicorn

    if config is None:
        cfg = ServeConfig.from_project(project, connections=connections, **options)
    else:
        cfg = config if isinstance(config, ServeConfig) else ServeConfig.from_dict(config)
    app = build_app(cfg)
    # One process, one event loop: the heavy lifting runs on the processor's own threads.
    uvicorn.run(
        app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on", timeout_keep_alive=30
    )


def main() -> None:
    """``python -m tongbu.serve``: the same as ``tongbu serve``."""
    from tongbu.serve_cli import serve_command

    typer.run(serve_command)


if __name__ == "__main__":
    main()
