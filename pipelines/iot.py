"""The long-running IoT consumer (``tongbu iot run``): MQTT → hub, with alerts for new service cases.

One process per IoT connection: a :class:`~connectors.kit.mqtt.BatchingConsumer` on a durable QoS 1
session (fixed client id) hands batches to :meth:`IotService.handle`, which decodes them, writes them
with :class:`~connectors.iot.ingest.IotWriter` in ONE transaction and returns; only then does the
consumer acknowledge the batch's messages. A kill at any point loses nothing (the broker redelivers
what was not acknowledged) and applies nothing twice (the writer's message ledger).

Cases opened by a batch are alerted after its commit on a separate thread (the network call to WeCom
must not hold up ingestion) through the shared notifier (:mod:`pipelines.notify`), to the account
owner, keyed by the case id so a redelivered fault never alerts twice.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from connectors.iot.ingest import CaseChange, IotWriter
from connectors.iot.linking import mark_silent
from connectors.iot.payloads import Decoder, Reading, Rejected
from connectors.iot.settings import IotSettings
from connectors.kit.mqtt import BatchingConsumer, Delivery
from tongbu.config import DEFAULT_TENANT

log = logging.getLogger(__name__)

Alerter = Callable[[CaseChange], None]


@dataclass
class ServiceStats:
    """Running totals of one consumer process."""

    messages: int = 0
    applied: int = 0
    duplicates: int = 0
    quarantined: int = 0
    resets: int = 0
    batches: int = 0
    cases_opened: int = 0
    cases_closed: int = 0
    alerts_sent: int = 0
    alerts_failed: int = 0
    commit_s: float = 0.0
    #: per opened case: seconds from the fault's publish (device time) to its commit (the newest
    #: 100,000: a long-running consumer must not grow without bound)
    case_latencies: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))


def notifier_alerter(project: Any, engine: Engine, channel: str) -> Alerter:
    """An alerter that sends through the project's notifier channel ``channel`` (WeCom app message)."""
    from connectors.kit.notify import Notification
    from pipelines.notify import Notifier

    notifier = Notifier(project, engine)

    def send(change: CaseChange) -> None:
        if change.action != "opened":
            return
        n = Notification(
            subject=f"设备故障: {change.title}",
            body=f"设备 {change.device} 报告故障 {change.fault} (ErrorCode {change.error_code})，"
            f"已开服务工单 {change.case_id}。客户: {change.account_ref or '未关联'}",
            key=f"iot-case:{change.case_id}",
            recipients=(change.owner,) if change.owner else (),
            severity="warning",
        )
        notifier.send(channel, n)

    return send


class IotService:
    """Decode, write and alert; the consumer's batch handler."""

    def __init__(
        self,
        engine: Engine,
        settings: IotSettings,
        *,
        connection: str = "iot",
        tenant: str = DEFAULT_TENANT,
        alerter: Alerter | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.connection = connection
        self.tenant = tenant
        self.decoder = Decoder(max_future_s=settings.max_future_seconds)
        self.writer = IotWriter(tenant=tenant, source_system=connection)
        self.stats = ServiceStats()
        self.alerter = alerter
        self._alerts: queue.SimpleQueue[CaseChange | None] = queue.SimpleQueue()
        self._alert_thread: threading.Thread | None = None
        self.consumer: BatchingConsumer | None = None
        self.on_cases: list[Callable[[list[CaseChange]], None]] = []
        self._last_prune = 0.0

    def decode(self, batch: list[Delivery]) -> tuple[list[Reading], list[Rejected]]:
        """Every reading and rejection in a batch of MQTT messages."""
        readings: list[Reading] = []
        rejected: list[Rejected] = []
        for d in batch:
            for item in self.decoder.decode(d.topic, d.payload):
                if isinstance(item, Reading):
                    readings.append(item)
                else:
                    rejected.append(item)
        return readings, rejected

    def handle(self, batch: list[Delivery]) -> None:
        """Commit one batch (the consumer acks it after this returns)."""
        readings, rejected = self.decode(batch)
        t0 = time.perf_counter()
        with self.engine.begin() as conn:
            res = self.writer.write(conn, readings, rejected)
        done = time.time()
        s = self.stats
        s.commit_s += time.perf_counter() - t0
        s.messages += len(batch)
        s.applied += res.applied
        s.duplicates += res.duplicates
        s.quarantined += res.quarantined
        s.resets += res.resets
        s.batches += 1
        for c in res.cases:
            if c.action == "opened":
                s.cases_opened += 1
                s.case_latencies.append(max(0.0, done - c.event_ts_ms / 1000))
            elif c.action == "closed":
                s.cases_closed += 1
            if self.alerter is not None:
                self._alerts.put(c)
        if res.cases:
            for hook in self.on_cases:
                hook(res.cases)
        if done - self._last_prune > 600:
            self._last_prune = done
            with self.engine.begin() as conn:
                self.writer.prune_ledger(conn, self.settings.ledger_days)

    # -- alerts --------------------------------------------------------------------------------------
    def _alert_loop(self) -> None:
        while True:
            change = self._alerts.get()
            if change is None:
                return
            try:
                if self.alerter is not None:
                    self.alerter(change)
                    self.stats.alerts_sent += change.action == "opened"
            except Exception as exc:  # noqa: BLE001 - the notifier's ledger retries later deliveries
                self.stats.alerts_failed += 1
                log.warning("alert for case %s not delivered: %s", change.case_id, exc)

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect and consume in the background."""
        if self.alerter is not None:
            self._alert_thread = threading.Thread(target=self._alert_loop, name="iot-alerts", daemon=True)
            self._alert_thread.start()
        s = self.settings
        self.consumer = BatchingConsumer(
            s.address,
            s.client_id,
            s.topics,
            self.handle,
            max_batch=s.batch_size,
            max_wait_s=s.batch_wait_ms / 1000,
        )
        self.consumer.start()

    def stop(self) -> None:
        """Finish the batch in hand, disconnect, and send the alerts still queued."""
        if self.consumer is not None:
            self.consumer.stop()
        if self._alert_thread is not None:
            self._alerts.put(None)
            self._alert_thread.join(15)

    def mark_silent(self) -> int:
        """Devices not heard from for ``silent_after_seconds`` become offline; returns how many changed."""
        return mark_silent(self.engine, self.tenant, self.connection, self.settings.silent_after_seconds)
