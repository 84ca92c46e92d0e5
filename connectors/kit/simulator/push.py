"""Push delivery for simulators whose system calls back (webhooks, push messages): at least once,
retried, in no guaranteed order.

A simulator queues each change with :meth:`PushDispatcher.emit`; a few sender threads POST it to every
matching subscription, with the headers and body the simulator's ``build`` function gives (where it
signs them its own way). Anything but a 2xx within the timeout (or a body the ``accepted`` check refuses)
is retried up to ``attempts`` times with a doubling delay. Two fault switches, when the simulator declares
them: ``<prefix>_duplicate`` sends a delivery twice (same id), ``<prefix>_fail`` drops an attempt before
it is sent. Counters: ``<prefix>_deliveries`` and ``<prefix>_retries``.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["Delivery", "PushDispatcher"]


@dataclass
class Delivery:
    """One push to one subscriber: what ``build`` turns into headers and a body."""

    address: str
    secret: str
    topic: str
    payload: Any
    delivery_id: str
    triggered_at: str
    attempt: int = 0
    due: float = 0.0
    created: float = field(default_factory=time.monotonic)


class PushDispatcher:
    """Queues and sends a simulator's pushes (``workers`` sender threads, started on the first subscription).

    ``build(delivery) -> (headers, body)`` renders and signs one attempt; ``accepted(response)`` decides
    whether the receiver took it (default: any 2xx).
    """

    def __init__(
        self,
        sim: Any,
        build: Callable[[Delivery], tuple[dict[str, str], bytes]],
        *,
        prefix: str = "webhook",
        accepted: Callable[[httpx.Response], bool] | None = None,
        retry_s: float = 0.05,
        attempts: int = 8,
        timeout: float = 5.0,
        workers: int = 4,
    ) -> None:
        self.sim, self.build, self.prefix = sim, build, prefix
        self.workers = max(1, workers)
        self.accepted = accepted or (lambda r: 200 <= r.status_code < 300)
        self.retry_s, self.attempts, self.timeout = retry_s, attempts, timeout
        self.subscriptions: list[tuple[str, str, frozenset[str] | None]] = []
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.delivered: list[tuple[str, float]] = []  # (delivery id, seconds from emit to acceptance)
        self.failed: list[str] = []
        self.emitted: dict[str, float] = {}  # delivery id -> wall time it was queued (latency benchmarks)

    def subscribe(self, address: str, secret: str, topics: Sequence[str] | None = None) -> None:
        """Send webhooks of ``topics`` (None: all) to ``address``, signed with ``secret``."""
        if not address.startswith(("http://", "https://")):
            raise ValueError("address must be an http(s) URL")
        self.subscriptions.append((address, secret, frozenset(topics) if topics else None))
        while len(self._threads) < self.workers:
            # Several senders, as the platforms use: one slow receiver answer does not hold up the rest
            # (and deliveries are not ordered, as on the real platform).
            thread = threading.Thread(
                target=self._run, name=f"sim-{self.prefix}-{len(self._threads)}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def describe(self) -> dict[str, Any]:
        """Subscriptions (without secrets) and delivery counts."""
        return {
            "subscriptions": [
                {"address": a, "topics": sorted(t) if t else None} for a, _, t in self.subscriptions
            ],
            "delivered": len(self.delivered),
            "failed": len(self.failed),
            "pending": self._queue.unfinished_tasks,
        }

    def emit(self, topic: str, payload: Any) -> list[str]:
        """Queue ``payload`` as a ``topic`` push to every matching subscription; returns the ids."""
        if payload is None:
            return []
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        ids = []
        for address, secret, topics in self.subscriptions:
            if topics is not None and topic not in topics:
                continue
            delivery = Delivery(address, secret, topic, payload, str(uuid.uuid4()), now)
            ids.append(delivery.delivery_id)
            self.emitted[delivery.delivery_id] = time.time()
            self._queue.put(delivery)
            if self.sim.chance(f"{self.prefix}_duplicate"):
                self._queue.put(Delivery(address, secret, topic, payload, delivery.delivery_id, now))
        return ids

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until every queued delivery succeeded or gave up (True), or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def close(self) -> None:
        """Stop the senders (pending deliveries are dropped)."""
        self._stop.set()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(10)

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout) as http:
            while not self._stop.is_set():
                item = self._queue.get()
                if item is None:
                    self._queue.task_done()
                    return
                wait = item.due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
                if self._send(http, item):
                    self._queue.task_done()
                    continue
                item.attempt += 1
                if item.attempt >= self.attempts:
                    self.failed.append(item.delivery_id)
                    self._queue.task_done()
                    continue
                self.sim.count(f"{self.prefix}_retries")
                item.due = time.monotonic() + self.retry_s * 2 ** (item.attempt - 1)
                self._queue.put(item)
                self._queue.task_done()

    def _send(self, http: httpx.Client, item: Delivery) -> bool:
        if self.sim.chance(f"{self.prefix}_fail"):
            return False
        headers, body = self.build(item)
        try:
            response = http.post(item.address, content=body, headers=headers)
        except httpx.HTTPError:
            return False
        if self.accepted(response):
            self.sim.count(f"{self.prefix}_deliveries")
            self.delivered.append((item.delivery_id, time.monotonic() - item.created))
            return True
        return False
