"""A real local SMTP server (aiosmtpd) that keeps what it receives, for alert tests.

``smtp_server`` fixture: ``server.port``, ``server.messages`` (parsed ``email.message.Message``),
``server.wait(n)``; optional login (``server.require_login(user, password)``).
"""

from __future__ import annotations

import email
import socket
import threading
from collections.abc import Iterator
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Handler:
    def __init__(self, box: SmtpServer) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd API
        msg = email.message_from_bytes(envelope.original_content or envelope.content)
        with self.box.cond:
            self.box.messages.append(msg)
            self.box.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.box.cond.notify_all()
        return "250 OK"


class SmtpServer:
    """The running server and its mailbox."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.cond = threading.Condition()
        self.port = free_port()
        self._credentials: tuple[str, str] | None = None
        self.controller: Controller | None = None

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and self._credentials is not None
            and (data.login.decode(), data.password.decode()) == self._credentials
        )
        return AuthResult(success=ok, handled=False)

    def start(self, *, login: tuple[str, str] | None = None) -> SmtpServer:
        self._credentials = login
        kwargs: dict[str, Any] = {}
        if login:
            # AUTH over plain text is refused by default; this is a loopback test server.
            kwargs = {"authenticator": self._authenticate, "auth_require_tls": False, "auth_required": True}
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def wait(self, n: int, timeout: float = 10.0) -> bool:
        """Block until ``n`` messages arrived (True) or ``timeout`` passed."""
        with self.cond:
            return self.cond.wait_for(lambda: len(self.messages) >= n, timeout)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    try:
        yield server
    finally:
        server.stop()
