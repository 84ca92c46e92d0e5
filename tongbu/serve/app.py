"""The ASGI app of ``tongbu serve`` (``/hooks/<connection>``, ``/healthz``, metrics) and the foreground server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Engine,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from connectors.kit.events import EventRejected, EventSource
from tongbu.serve.config import ServeConfig, build_processor
from tongbu.serve.observers import EventObserver

log = logging.getLogger("tongbu.serve")  # one logger for the whole command


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
    from tongbu.api.app import api_routes  # the CRM's REST API (/api/...), tongbu/api/app.py

    routes += api_routes(processor.engine, cfg.tenant)
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.processor = processor
    return app


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
