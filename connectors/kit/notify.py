"""Alert channels: e-mail and the WeCom group robot here; WeCom app messages in ``connectors/wecom/notify.py``.

A :class:`Notification` says what to tell whom; a :class:`Channel` delivers it or raises
:class:`NotifyError` (one line, never a secret). Delivering each alert *once* across restarts is the
job of :class:`pipelines.notify.Notifier`, which keeps a ledger; channels only send. Every secret a
channel holds (SMTP password, robot key) is registered with the kit's log masking when it is built.
"""

from __future__ import annotations

import smtplib
import ssl
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import Any, ClassVar

from connectors.kit.errors import ConnectorError
from connectors.kit.http import HttpClient
from connectors.kit.logs import remember_secret
from connectors.kit.settings import HttpSettings

SEVERITIES = ("info", "warning", "critical")
#: WeCom caps text and markdown content at 2,048 bytes; longer alerts are cut at a character boundary
WECOM_MAX_BYTES = 2048


class NotifyError(RuntimeError):
    """A channel could not deliver; the message is one plain line with no secret in it."""


@dataclass(frozen=True)
class Notification:
    """One alert. ``key`` identifies it: the same key to the same recipient is delivered once."""

    subject: str
    body: str
    key: str
    recipients: tuple[str, ...] = ()  # channel-specific; () means the channel's default ``to``
    severity: str = "info"
    url: str | None = None

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, not {self.severity!r}")
        if not self.key:
            raise ValueError("a notification needs a key (what makes a repeat a repeat)")

    def text(self) -> str:
        """Subject, body and link as one plain text."""
        parts = [self.subject, "", self.body]
        if self.url:
            parts += ["", self.url]
        return "\n".join(parts).strip()


def clip_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes without splitting a character (… marks a cut)."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", errors="ignore") + "…"


class Channel(ABC):
    """Somewhere alerts go. ``to`` is the default recipients when a notification names none."""

    #: the ``kind`` in ``tongbu.yaml`` (``alerts.channels.<name>.kind``)
    kind: ClassVar[str] = ""

    def __init__(self, name: str, to: Sequence[str] = ()) -> None:
        self.name = name
        self.to = tuple(to)

    def recipients(self, n: Notification) -> tuple[str, ...]:
        """Who ``n`` goes to on this channel."""
        return n.recipients or self.to

    @abstractmethod
    def send(self, n: Notification, recipients: Sequence[str]) -> None:
        """Deliver ``n`` to ``recipients`` (all of them, or raise :class:`NotifyError`)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


class EmailChannel(Channel):
    """SMTP e-mail (``smtplib``): optional STARTTLS or implicit TLS and login."""

    kind = "email"

    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int = 25,
        sender: str,
        to: Sequence[str] = (),
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        ssl_mode: bool = False,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(name, to)
        self.host, self.port, self.sender = host, int(port), sender
        self.username, self._password = username, password
        self.starttls, self.ssl_mode, self.timeout = starttls, ssl_mode, timeout
        remember_secret(password)

    def message(self, n: Notification, recipients: Sequence[str]) -> EmailMessage:
        """The e-mail for ``n`` (subject on one line: a newline in it would inject headers)."""
        msg = EmailMessage()
        msg["Subject"] = _one_line(f"[{n.severity}] {n.subject}")
        msg["From"] = formataddr(("tongbu", self.sender))
        msg["To"] = ", ".join(recipients)
        msg["Message-ID"] = make_msgid(domain="tongbu.local")
        msg["X-Tongbu-Alert-Key"] = _one_line(n.key)[:200]
        msg.set_content(n.text())
        return msg

    def send(self, n: Notification, recipients: Sequence[str]) -> None:
        if not recipients:
            raise NotifyError(f"alert channel {self.name!r}: no recipients (set `to:` in tongbu.yaml)")
        where = f"{self.host}:{self.port}"
        try:
            smtp: smtplib.SMTP
            if self.ssl_mode:
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self._password or "")
                refused = smtp.send_message(self.message(n, recipients), self.sender, list(recipients))
        except smtplib.SMTPAuthenticationError:
            raise NotifyError(
                f"alert channel {self.name!r}: the SMTP server {where} refused the login "
                "(check the password in the vault)"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise NotifyError(
                f"alert channel {self.name!r}: could not send mail through {where} ({type(exc).__name__})"
            ) from None
        if refused:
            raise NotifyError(f"alert channel {self.name!r}: {where} refused {', '.join(sorted(refused))}")


class WeComRobotError(ConnectorError):
    """The group robot answered with an errcode."""


class _RobotClient(HttpClient):
    name = "wecom-robot"

    def check(self, response: Any) -> None:
        try:
            data = response.json()
        except ValueError:
            raise WeComRobotError(
                "wecom-robot: the webhook answered with something that is not JSON"
            ) from None
        code = int(data.get("errcode", 0) or 0) if isinstance(data, dict) else -1
        if code:
            raise WeComRobotError(f"wecom-robot: errcode {code}")


class WeComRobotChannel(Channel):
    """A WeCom group robot (群机器人) webhook: a markdown message to a group chat, ``@`` the recipients."""

    kind = "wecom_robot"
    DEFAULT_URL = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"

    def __init__(
        self,
        name: str,
        *,
        key: str,
        webhook_url: str = DEFAULT_URL,
        to: Sequence[str] = (),
        timeout: float = 10.0,
    ) -> None:
        super().__init__(name, to)
        if not key:
            raise NotifyError(f"alert channel {name!r}: `key` (the robot's webhook key) is required")
        self._key = key
        self.webhook_url = webhook_url
        remember_secret(key)
        # No retry: the robot allows 20 messages a minute and the ledger retries failed deliveries.
        self._http = _RobotClient(settings=HttpSettings(request_timeout=timeout, max_retries=0))

    def send(self, n: Notification, recipients: Sequence[str]) -> None:
        body = {
            "msgtype": "text",
            "text": {"content": clip_utf8(n.text(), WECOM_MAX_BYTES), "mentioned_list": list(recipients)},
        }
        try:
            self._http.send("POST", self.webhook_url, params={"key": self._key}, json=body)
        except ConnectorError as exc:
            raise NotifyError(f"alert channel {self.name!r}: {exc}") from None

    def close(self) -> None:
        self._http.close()


def build_kit_channel(name: str, kind: str, options: Mapping[str, Any]) -> Channel | None:
    """The kit's channel of ``kind`` from its (resolved) options, or None for a kind the kit lacks."""
    if kind == EmailChannel.kind:
        return EmailChannel(name, **dict(options))
    if kind == WeComRobotChannel.kind:
        return WeComRobotChannel(name, **dict(options))
    return None
