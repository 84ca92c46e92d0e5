"""Webhook delivery as Shopify does it: signed, at least once, retried, in no guaranteed order.

Each change the shop makes (``modify``, ``/_sim/order``, a ``PUT``) is queued per subscription and POSTed
by one worker thread with ``X-Shopify-Topic``, ``X-Shopify-Shop-Domain``, ``X-Shopify-API-Version``,
``X-Shopify-Webhook-Id``, ``X-Shopify-Triggered-At`` and ``X-Shopify-Hmac-Sha256`` (base64 HMAC-SHA256 of
the raw body with the app's secret). Anything but a 2xx within the timeout is retried, up to
``attempts`` times with a doubling delay (the real platform: 8 times over 4 hours). The
``webhook_duplicate`` switch sends a delivery twice; ``webhook_fail`` drops an attempt before it is sent.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx


def sign(secret: str, body: bytes) -> str:
    """``X-Shopify-Hmac-Sha256`` of ``body``: base64 of HMAC-SHA256 with the app's secret."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@dataclass
class _Delivery:
    address: str
    secret: str
    topic: str
    body: bytes
    webhook_id: str
    triggered_at: str
    attempt: int = 0
    due: float = 0.0
    created: float = field(default_factory=time.monotonic)


class WebhookDispatcher:
    """Queues and sends the simulator's webhooks (one worker thread, started on the first subscription)."""

    def __init__(self, sim: Any, *, retry_s: float = 0.05, attempts: int = 8, timeout: float = 5.0) -> None:
        self.sim = sim
        self.retry_s, self.attempts, self.timeout = retry_s, attempts, timeout
        self.subscriptions: list[tuple[str, str, frozenset[str] | None]] = []
        self._queue: queue.Queue[_Delivery | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.delivered: list[tuple[str, float]] = []  # (webhook id, seconds from emit to a 2xx)
        self.failed: list[str] = []

    def subscribe(self, address: str, secret: str, topics: Sequence[str] | None = None) -> None:
        """Send webhooks of ``topics`` (None: all) to ``address``, signed with ``secret``."""
        if not address.startswith(("http://", "https://")):
            raise ValueError("address must be an http(s) URL")
        self.subscriptions.append((address, secret, frozenset(topics) if topics else None))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sim-shopify-webhooks", daemon=True)
            self._thread.start()

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

    def emit(self, topic: str, payload: dict[str, Any] | None) -> list[str]:
        """Queue ``payload`` as a ``topic`` webhook to every matching subscription; returns the ids."""
        if payload is None:
            return []
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        ids = []
        for address, secret, topics in self.subscriptions:
            if topics is not None and topic not in topics:
                continue
            delivery = _Delivery(address, secret, topic, body, str(uuid.uuid4()), now)
            ids.append(delivery.webhook_id)
            self._queue.put(delivery)
            if self.sim.chance("webhook_duplicate"):
                self._queue.put(_Delivery(address, secret, topic, body, delivery.webhook_id, now))
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
        """Stop the worker (pending deliveries are dropped)."""
        self._stop.set()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(10)

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
                    self.failed.append(item.webhook_id)
                    self._queue.task_done()
                    continue
                self.sim.count("webhooks_retried")
                item.due = time.monotonic() + self.retry_s * 2 ** (item.attempt - 1)
                self._queue.put(item)
                self._queue.task_done()

    def _send(self, http: httpx.Client, item: _Delivery) -> bool:
        if self.sim.chance("webhook_fail"):
            return False
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": item.topic,
            "X-Shopify-Shop-Domain": self.sim.SHOP,
            "X-Shopify-API-Version": self.sim.API_VERSION,
            "X-Shopify-Webhook-Id": item.webhook_id,
            "X-Shopify-Triggered-At": item.triggered_at,
            "X-Shopify-Hmac-Sha256": sign(item.secret, item.body),
        }
        try:
            response = http.post(item.address, content=item.body, headers=headers)
        except httpx.HTTPError:
            return False
        if 200 <= response.status_code < 300:
            self.sim.count("webhooks_sent")
            self.delivered.append((item.webhook_id, time.monotonic() - item.created))
            return True
        return False
