"""What every local simulator of an external system shares.

A simulator is a real HTTP server (Starlette on uvicorn, in a background thread) that speaks the
external system's wire protocol, so a connector talks to it exactly as it would to production.
Each system's simulator subclasses :class:`Simulator`, builds its ASGI app in ``build_app`` and
reads its fault switches from a :class:`FaultConfig`.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import uvicorn


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the OS for a free TCP port on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class FaultConfig:
    """Fault-injection switches, parsed from ``--faults a,b=0.1,c=3``.

    Each switch is a name with an optional numeric value (a rate, a count or seconds, as the
    simulator documents). ``enabled(name)`` and ``value(name, default)`` read them.
    """

    switches: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str | list[str] | None) -> FaultConfig:
        """Parse ``"throttle=0.05,session_expiry=200"`` (or a list of such items)."""
        if not spec:
            return cls()
        items = spec if isinstance(spec, list) else [spec]
        switches: dict[str, float] = {}
        for item in items:
            for part in str(item).split(","):
                part = part.strip()
                if not part:
                    continue
                name, _, raw = part.partition("=")
                try:
                    switches[name.strip()] = float(raw) if raw else 1.0
                except ValueError as exc:
                    raise ValueError(f"fault {name!r}: value {raw!r} is not a number") from exc
        return cls(switches)

    def enabled(self, name: str) -> bool:
        return self.switches.get(name, 0.0) > 0

    def value(self, name: str, default: float = 0.0) -> float:
        return self.switches.get(name, default)


class _QuietServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the host process owns signals
        pass


class Simulator:
    """Base class: owns the server thread; subclasses provide the app, data and credentials."""

    #: name used by ``tongbu simulate <system>``
    system: ClassVar[str] = ""

    def __init__(self, *, records: int = 100, faults: FaultConfig | str | None = None, seed: int = 7) -> None:
        self.records = records
        self.faults = faults if isinstance(faults, FaultConfig) else FaultConfig.parse(faults)
        self.seed = seed
        self.host = "127.0.0.1"
        self.port = 0
        self._server: _QuietServer | None = None
        self._thread: threading.Thread | None = None

    # -- to override -------------------------------------------------------------------------
    def build_app(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def credentials(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """Demo credentials this simulator accepts (printed by ``tongbu simulate``)."""
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving in a background thread; returns the base URL once it accepts connections."""
        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(
            self.build_app(),
            host=self.host,
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
        )
        self._server = _QuietServer(config)
        self._thread = threading.Thread(target=self._server.run, name=f"sim-{self.system}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{self.system} simulator did not start on {self.base_url}")
            time.sleep(0.02)
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
        try:
            while self._thread and self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            pass

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._server = None
        self._thread = None

    def __enter__(self) -> Simulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
