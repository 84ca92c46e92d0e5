"""The event processor: coalescing per record, the worker pool, retries, and its metrics."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from sqlalchemy import (
    Engine,
    select,
)

from connectors.kit.events import EventSource, InboundEvent
from tongbu.config import DEFAULT_TENANT
from tongbu.inbox import ensure_inbox, event_inbox
from tongbu.serve.database import Database
from tongbu.serve.observers import AppliedChange, EventObserver

log = logging.getLogger("tongbu.serve")  # one logger for the whole command


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
        self._db: Database | None = None
        self._last_purge = 0.0

    # -- lifecycle --
    def start(self) -> None:
        """Create the inbox, start the threads and re-dispatch events a previous run left pending."""
        if self._running:
            return
        ensure_inbox(self.engine)
        self._db = Database(self.engine, self.tenant, on_commit=self._committed)
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
