"""One way to run an ASGI app on uvicorn in a background thread (simulators, tests, benchmarks, demos).

The host process owns signals (uvicorn's handlers are not installed), ``start`` returns only once the
server accepts connections, and ``stop`` is prompt. ``tongbu serve``'s own copy of this class can be
replaced by an import of :class:`BackgroundServer` (same constructor and methods).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Literal

import uvicorn

__all__ = ["BackgroundServer", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the OS for a free TCP port on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class _QuietServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the host process owns signals
        pass


class BackgroundServer:
    """Serve ``app`` with uvicorn on a daemon thread; a context manager that starts and stops it.

    ``port=0`` picks a free port. ``lifespan`` is passed to uvicorn (``"on"`` when the app has
    start-up/shut-down work, ``"off"`` for plain apps such as the simulators).
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        lifespan: Literal["on", "off", "auto"] = "on",
        log_level: str = "warning",
        name: str = "tongbu-http",
    ) -> None:
        self.app = app
        self.host = host
        self.port = port or free_port(host)
        self._server = _QuietServer(
            uvicorn.Config(
                app,
                host=host,
                port=self.port,
                log_level=log_level,
                access_log=False,
                lifespan=lifespan,
                timeout_keep_alive=30,
            )
        )
        self._thread = threading.Thread(target=self._server.run, name=name, daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the server thread is alive."""
        return self._thread.is_alive()

    def start(self, timeout: float = 15.0) -> str:
        """Start and wait until it accepts connections; returns the base URL."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self._server.should_exit = True
                raise RuntimeError(f"server did not start on {self.url}")
            time.sleep(0.01)
        return self.url

    def wait(self) -> None:
        """Block until the server stops or Ctrl-C."""
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            pass

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the server to exit and wait for its thread."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
