"""Prometheus metrics: the event path of ``tongbu serve`` and the runs of the pipeline runner.

* ``tongbu serve`` mounts :func:`metrics_route` at ``/metrics``: events received, applied, rejected
  (and failed, duplicate, coalesced…), the queue depth (events accepted, not yet committed to the
  hub) and a histogram of apply latency (received → committed). The figures come from the
  processor's own counters, so ``/metrics`` and ``/_tongbu/events/metrics`` never disagree.
* the runner calls :func:`record_run` after every pipeline run: rows read / written / unchanged /
  quarantined, runs by status and a duration histogram, per pipeline, in the process-wide
  :data:`REGISTRY`. A long-lived process (``tongbu serve``) shows them at ``/metrics``; a short one
  (``tongbu run`` from cron, a Dagster run worker) writes them to the node-exporter text file named by
  ``TONGBU_METRICS_TEXTFILE`` when set, so nothing is lost between scrapes.

Metric names follow Prometheus conventions (``_total`` counters, ``_seconds`` units).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, write_to_textfile
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: the process-wide registry the runner records into (and ``/metrics`` shows)
REGISTRY = CollectorRegistry(auto_describe=True)
TEXTFILE_ENV = "TONGBU_METRICS_TEXTFILE"

#: apply latency buckets (seconds): webhook → hub commit is milliseconds normally, minutes when stuck
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: run duration buckets (seconds): a sync takes seconds to an hour
RUN_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

_ROWS = Counter(
    "tongbu_pipeline_rows",
    "Rows handled by pipeline runs, by kind (read, written, unchanged, quarantined)",
    ["pipeline", "kind"],
    registry=REGISTRY,
)
_RUNS = Counter(
    "tongbu_pipeline_runs", "Pipeline runs by final status", ["pipeline", "status"], registry=REGISTRY
)
_DURATION = Histogram(
    "tongbu_pipeline_run_duration_seconds",
    "Duration of pipeline runs (tongbu's own, start to commit)",
    ["pipeline"],
    buckets=RUN_BUCKETS,
    registry=REGISTRY,
)
_LAST_SUCCESS = Gauge(
    "tongbu_pipeline_last_success_timestamp_seconds",
    "Unix time of the last successful run of a pipeline (alert on time() - this)",
    ["pipeline"],
    registry=REGISTRY,
)
_textfile_lock = threading.Lock()


def record_run(result: Any) -> None:
    """Record one finished pipeline run (a ``pipelines.runner.RunResult``); never raises."""
    import time

    try:
        name = result.pipeline
        for kind in ("read", "written", "unchanged", "quarantined"):
            _ROWS.labels(name, kind).inc(int(getattr(result, f"rows_{kind}", 0) or 0))
        _RUNS.labels(name, result.status).inc()
        _DURATION.labels(name).observe(float(result.duration_s or 0.0))
        if result.status == "success":
            _LAST_SUCCESS.labels(name).set(time.time())
        path = os.environ.get(TEXTFILE_ENV)
        if path:
            with _textfile_lock:  # write_to_textfile renames a temp file into place: atomic for scrapers
                write_to_textfile(path, REGISTRY)
    except Exception:  # noqa: BLE001 - metrics must never fail a run
        import logging

        logging.getLogger(__name__).warning("could not record metrics for run of %s", result.pipeline)


class EventMetricsTee:
    """Wraps the event processor's counters and mirrors each update into Prometheus metrics.

    The processor calls ``count(name, n)`` and ``latency(seconds, n)``; names ``received``,
    ``applied`` and ``rejected`` get metrics of their own, every other name (``failed``,
    ``duplicates``, ``coalesced``, ``status_<s>``…) is a label of ``tongbu_events_other_total``.
    """

    def __init__(self, inner: Any, registry: CollectorRegistry) -> None:
        self.inner = inner
        self.registry = registry
        self._named = {
            name: Counter(f"tongbu_events_{name}", help_, registry=registry)
            for name, help_ in (
                ("received", "Events received by tongbu serve (after signature and parsing checks)"),
                ("applied", "Events applied to the hub (committed)"),
                ("rejected", "Deliveries refused (bad signature, too large, malformed, wrong method)"),
            )
        }
        self._other = Counter("tongbu_events_other", "Other event outcomes", ["kind"], registry=registry)
        self._latency = Histogram(
            "tongbu_event_apply_latency_seconds",
            "Time from receiving an event to committing it to the hub",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def count(self, name: str, n: int = 1) -> None:
        """Count ``n`` events of outcome ``name`` (both in the processor and in Prometheus)."""
        self.inner.count(name, n)
        counter = self._named.get(name)
        if counter is not None:
            counter.inc(n)
        else:
            self._other.labels(name).inc(n)

    def latency(self, seconds: float, n: int = 1) -> None:
        """Record the apply latency of ``n`` events."""
        self.inner.latency(seconds, n)
        for _ in range(n):
            self._latency.observe(seconds)

    def __getattr__(self, name: str) -> Any:  # snapshot(), counts, latencies: the processor's own
        return getattr(self.inner, name)


def instrument_processor(processor: Any) -> CollectorRegistry:
    """Mirror ``processor``'s event counters into a fresh registry (with its queue depth); returns it."""
    if isinstance(processor.metrics, EventMetricsTee):  # instrumented already: one set of metrics
        return processor.metrics.registry
    registry = CollectorRegistry(auto_describe=True)
    processor.metrics = EventMetricsTee(processor.metrics, registry)
    depth = Gauge(
        "tongbu_events_queue_depth", "Events accepted but not yet committed to the hub", registry=registry
    )
    depth.set_function(lambda: float(processor.backlog))
    return registry


def render(*registries: CollectorRegistry) -> bytes:
    """The text exposition of ``registries`` (the runner's process-wide one when none are given)."""
    return b"".join(generate_latest(r) for r in (registries or (REGISTRY,)))


def metrics_route(processor: Any, path: str = "/metrics") -> Any:
    """A Starlette route serving the event metrics of ``processor`` and the runner's, for Prometheus."""
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    events = instrument_processor(processor)

    async def endpoint(request: Request) -> Response:
        return Response(render(events, REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return Route(path, endpoint, methods=["GET"])


__all__ = [
    "REGISTRY",
    "TEXTFILE_ENV",
    "EventMetricsTee",
    "instrument_processor",
    "metrics_route",
    "record_run",
    "render",
]
