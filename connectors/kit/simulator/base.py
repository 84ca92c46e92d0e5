"""What every local simulator of an external system shares.

A simulator is a real HTTP server (Starlette on uvicorn, in a background thread, see
:mod:`connectors.kit.server`) that speaks the external system's wire protocol, so a connector talks
to it exactly as it would to production. A subclass provides:

* ``api_routes()``: the system's own API;
* ``credentials()``: the demo credentials it accepts;
* ``truth(stream, offset=, limit=)`` / ``truth_streams()`` / ``counts()``: its ground truth;
* ``FAULTS`` (names from :data:`~connectors.kit.simulator.faults.COMMON_FAULTS`) and
  ``OWN_FAULTS`` (its own :class:`FaultSpec`\\ s).

The base class gives every simulator the same lifecycle (``start``/``stop``/``wait``, context
manager), the same control API under ``/_sim/`` (see :data:`CONTROL_ROUTES`), request counters,
the seeded fault RNG and the transport faults ``slow``, ``timeout``/``hang`` and ``http_5xx``
(:meth:`transport_faults`), so these behave identically everywhere.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from connectors.kit.server import BackgroundServer
from connectors.kit.simulator.faults import COMMON_FAULTS, FaultConfig, FaultError, FaultSpec

__all__ = ["CONTROL_ROUTES", "GAUGES", "Simulator"]

#: The control API every simulator serves (method, path, what it does).
CONTROL_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/_sim/health", "liveness: {ok, system}"),
    ("GET", "/_sim/faults", "the active fault switches: {faults: {name: value}}"),
    ("POST", "/_sim/faults", "replace them: body {faults: 'a=0.1,b'}; unknown names are a 400"),
    ("GET", "/_sim/fault-specs", "every switch this simulator honours, with kind and meaning"),
    ("GET", "/_sim/stats", "request and injected-fault counters"),
    ("POST", "/_sim/stats/reset", "zero the counters"),
    ("GET", "/_sim/counts", "records per stream"),
    ("GET", "/_sim/truth", "ground truth: ?stream=S&offset=0&limit=1000 -> {stream, records}"),
)

#: Counters every simulator keeps (subclasses add their own in ``STATS``).
BASE_STATS = ("requests", "slow", "timeouts", "http_5xx")
#: Gauges in every simulator's stats: API calls being answered right now, and the most at once since
#: the last reset (what proves a per-system concurrency limit held; ``/_sim/...`` calls not counted).
GAUGES = ("in_flight", "max_in_flight")


class _InFlightGauge:
    """ASGI middleware counting the API requests a simulator is answering at once."""

    def __init__(self, app: Any, sim: Simulator) -> None:
        self.app, self.sim = app, sim

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sim/"):
            await self.app(scope, receive, send)
            return
        self.sim._enter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.sim._leave()


class Simulator:
    """Base class: owns the server thread, the fault switches, counters and the ``/_sim`` API."""

    #: name used by ``tongbu simulate <system>``
    system: ClassVar[str] = ""
    #: names of :data:`COMMON_FAULTS` this simulator honours
    FAULTS: ClassVar[tuple[str, ...]] = ("slow", "timeout", "hang", "http_5xx")
    #: switches of its own
    OWN_FAULTS: ClassVar[tuple[FaultSpec, ...]] = ()
    #: counters beyond :data:`BASE_STATS`
    STATS: ClassVar[tuple[str, ...]] = ()
    #: exceptions a control call may raise for bad input (answered with HTTP 400)
    CONTROL_ERRORS: ClassVar[tuple[type[Exception], ...]] = (ValueError, KeyError, LookupError, TypeError)

    def __init__(self, *, records: int = 100, faults: FaultConfig | str | None = None, seed: int = 7) -> None:
        self.records = records
        self.seed = seed
        self.faults = FaultConfig.parse(faults, self.fault_specs())
        self.host = "127.0.0.1"
        self.port = 0
        self._server: BackgroundServer | None = None
        self._stopping = False
        self._stats_lock = threading.Lock()
        self._stats: dict[str, int] = dict.fromkeys((*BASE_STATS, *self.STATS), 0)
        self._fault_rng = random.Random(seed * 7919 + 1)
        self._in_flight = 0
        self._max_in_flight = 0

    # -- faults -----------------------------------------------------------------------------------
    @classmethod
    def fault_specs(cls) -> dict[str, FaultSpec]:
        """Every switch this simulator honours, by name."""
        specs = {name: COMMON_FAULTS[name] for name in cls.FAULTS}
        specs.update({s.name: s for s in cls.OWN_FAULTS})
        return specs

    def set_faults(self, faults: FaultConfig | str | None) -> None:
        """Replace the fault switches at run time (e.g. turn throttling on mid-test)."""
        self.faults = FaultConfig.parse(faults, self.fault_specs())

    def chance(self, name: str) -> bool:
        """Draw the ``RATE`` switch ``name`` from the seeded fault RNG (False when it is off)."""
        rate = self.faults.value(name, 0.0)
        if rate <= 0:
            return False
        with self._stats_lock:
            return self._fault_rng.random() < rate

    def fault_choice(self, options: tuple[Any, ...]) -> Any:
        """A choice from the seeded fault RNG (which 5xx status, …)."""
        with self._stats_lock:
            return self._fault_rng.choice(options)

    async def sleep(self, seconds: float) -> None:
        """Sleep in slices, so :meth:`stop` is not held up by a request hung on purpose."""
        deadline = time.monotonic() + seconds
        while not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.05))

    async def transport_faults(self) -> Response | None:
        """Count the request and apply ``slow``, ``timeout``/``hang`` and ``http_5xx``.

        Call it first in every API handler; a returned response is the injected failure.
        """
        self.count("requests")
        slow = self.faults.value("slow", 0.0)
        if slow > 0:
            self.count("slow")
            await self.sleep(slow)
        if self.chance("timeout"):
            self.count("timeouts")
            await self.sleep(self.faults.value("hang", 120.0))
            return PlainTextResponse("504 Gateway Timeout", status_code=504)
        if self.chance("http_5xx"):
            self.count("http_5xx")
            return self.http_5xx_response(self.fault_choice((500, 502, 503)))
        return None

    def http_5xx_response(self, status: int) -> Response:
        """The body an injected 5xx carries (override for the system's own gateway page)."""
        return PlainTextResponse(f"{status} Server Error", status_code=status)

    # -- counters -----------------------------------------------------------------------------------
    def count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to counter ``key``."""
        with self._stats_lock:
            self._stats[key] = self._stats.get(key, 0) + n

    def stats(self) -> dict[str, int]:
        """Request counters, including how many faults were injected, and the :data:`GAUGES`."""
        with self._stats_lock:
            return {**self._stats, "in_flight": self._in_flight, "max_in_flight": self._max_in_flight}

    def reset_stats(self) -> None:
        """Zero the request counters (``max_in_flight`` restarts from the calls in flight now)."""
        with self._stats_lock:
            self._stats = dict.fromkeys(self._stats, 0)
            self._max_in_flight = self._in_flight

    def _enter(self) -> None:
        with self._stats_lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._stats_lock:
            self._in_flight -= 1

    # -- to override ----------------------------------------------------------------------------------
    def api_routes(self) -> list[BaseRoute]:  # pragma: no cover - abstract
        """The routes of the simulated system's API."""
        raise NotImplementedError

    def control_routes(self) -> list[BaseRoute]:
        """Extra ``/_sim/...`` routes of this simulator (served after the common ones)."""
        return []

    def credentials(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """Demo credentials this simulator accepts (printed by ``tongbu simulate``)."""
        raise NotImplementedError

    def truth_streams(self) -> tuple[str, ...]:
        """Names ``truth()`` accepts; the first is the default of ``/_sim/truth``."""
        return ()

    def truth(self, stream: str, *, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """The simulator's own ground truth of ``stream``, in a stable order."""
        raise KeyError(f"{self.system} simulator has no truth for {stream!r}")

    def counts(self) -> dict[str, int]:
        """Records per stream."""
        return {}

    def seed_data(self) -> None:
        """Create the data before serving (no-op unless overridden)."""

    # -- HTTP -------------------------------------------------------------------------------------------
    def build_app(self) -> Starlette:
        """The ASGI app: the common ``/_sim`` control API, the subclass's control and API routes."""
        common: list[BaseRoute] = [
            Route("/_sim/health", self._sim_health, methods=["GET"]),
            Route("/_sim/faults", self._sim_faults, methods=["GET", "POST"]),
            Route("/_sim/fault-specs", self._sim_fault_specs, methods=["GET"]),
            Route("/_sim/stats", self._sim_stats, methods=["GET"]),
            Route("/_sim/stats/reset", self._sim_stats_reset, methods=["POST"]),
            Route("/_sim/counts", self._sim_counts, methods=["GET"]),
            Route("/_sim/truth", self._sim_truth, methods=["GET"]),
        ]
        app = Starlette(routes=[*common, *self.control_routes(), *self.api_routes()])
        app.add_middleware(_InFlightGauge, sim=self)
        return app

    @staticmethod
    def json(content: Any, status: int = 200) -> JSONResponse:
        """A JSON response (non-ASCII kept readable)."""
        return JSONResponse(content, status_code=status)

    def control_error(self, exc: Exception) -> JSONResponse:
        """The 400 a control call answers bad input with: one line naming the problem."""
        message = getattr(exc, "message", None) or (exc.args[0] if exc.args else str(exc))
        return self.json({"error": str(message)}, status=400)

    async def run_control(self, fn: Any, *args: Any, **kwargs: Any) -> Response:
        """Run a (possibly slow) control method off the event loop; bad input becomes a 400."""
        try:
            result = await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))
        except self.CONTROL_ERRORS as exc:
            return self.control_error(exc)
        return self.json(result)

    async def control_call(
        self, request: Request, fn: Callable[..., Any], fields: Mapping[str, Callable[[Any], Any]]
    ) -> Response:
        """Read a control call's JSON body, convert ``fields`` (name -> type) and run ``fn`` with them.

        A body that is not a JSON object holding every field, each convertible, is a 400 naming
        the fields; otherwise ``fn(*values)`` runs as :meth:`run_control` does.
        """
        try:
            body = json.loads(await request.body() or b"{}")
            values = [convert(body[name]) for name, convert in fields.items()]
        except (ValueError, KeyError, TypeError) as exc:
            names = " and ".join(fields)
            return self.control_error(ValueError(f"body must be a JSON object with {names}: {exc}"))
        return await self.run_control(fn, *values)

    async def _sim_health(self, request: Request) -> Response:
        return self.json({"ok": True, "system": self.system})

    async def _sim_faults(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                body = json.loads(await request.body() or b"{}")
                self.set_faults(body.get("faults") if isinstance(body, dict) else body)
            except (FaultError, ValueError, AttributeError) as exc:
                return self.control_error(exc)
        return self.json({"faults": self.faults.switches})

    async def _sim_fault_specs(self, request: Request) -> Response:
        specs = self.fault_specs()
        return self.json(
            {
                n: {"kind": s.kind, "help": s.help, "bare": s.bare, "default": s.default}
                for n, s in specs.items()
            }
        )

    async def _sim_stats(self, request: Request) -> Response:
        return self.json(self.stats())

    async def _sim_stats_reset(self, request: Request) -> Response:
        self.reset_stats()
        return self.json({"ok": True})

    async def _sim_counts(self, request: Request) -> Response:
        return await self.run_control(self.counts)

    async def _sim_truth(self, request: Request) -> Response:
        q = request.query_params
        streams = self.truth_streams()
        stream = q.get("stream") or q.get("form") or (streams[0] if streams else "")
        try:
            offset, limit = int(q.get("offset", 0)), int(q.get("limit", 1000))
        except ValueError:
            return self.json({"error": "offset and limit must be whole numbers"}, status=400)
        try:
            records = await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.truth(stream, offset=offset, limit=limit)
            )
            name = self.truth_stream_name(stream)
        except self.CONTROL_ERRORS as exc:
            return self.control_error(exc)
        return self.json({"stream": name, "records": records})

    def truth_stream_name(self, stream: str) -> str:
        """The canonical name of ``stream`` (for the ``/_sim/truth`` answer)."""
        return stream

    # -- lifecycle --------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self.host}:{self.port}"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Seed the data, start serving in a background thread; returns the base URL once it accepts."""
        self.seed_data()
        self._stopping = False
        server = BackgroundServer(self.build_app(), host, port, lifespan="off", name=f"sim-{self.system}")
        self.host, self.port = host, server.port
        try:
            server.start()
        except RuntimeError:
            raise RuntimeError(f"{self.system} simulator did not start on {self.base_url}") from None
        self._server = server
        return self.base_url

    def serve_forever(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Run in the foreground until interrupted (``tongbu simulate``)."""
        self.start(host, port)
        try:
            self.wait()
        finally:
            self.stop()

    def wait(self) -> None:
        """Block until the server stops or Ctrl-C (the server itself runs in its own thread)."""
        if self._server is not None:
            self._server.wait()

    def stop(self) -> None:
        """Stop serving; requests hung on purpose (``timeout``) are released so shutdown is prompt."""
        self._stopping = True
        if self._server is not None:
            self._server.stop(10)
        self._server = None

    def close(self) -> None:
        """Stop and release whatever the simulator holds (data files…)."""
        self.stop()

    def __enter__(self) -> Simulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def spec_table(specs: Iterable[FaultSpec] | Mapping[str, FaultSpec]) -> str:
    """A Markdown table of fault switches (used to keep the docs in step with the code)."""
    items = specs.values() if isinstance(specs, Mapping) else specs
    rows = ["| switch | value | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{s.name}` | {s.kind} | {s.help} |" for s in items]
    return "\n".join(rows)
