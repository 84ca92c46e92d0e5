"""Logging for connectors, set up once and on first use — never at import time.

httpx logs every request line at INFO (with its query string, where WeCom puts ``access_token``) and
httpcore logs every response header at DEBUG (``set-cookie: kdservice-sessionid=...``), so ``-v``
output would hand anyone who reads it a live session. :func:`setup_logging`, called by every
:class:`~connectors.kit.http.HttpClient`, attaches :class:`RedactHttpSecrets` to the HTTP libraries'
loggers and to the connectors' own (:func:`get_logger`). It masks, in every record:

* values of ``Cookie`` / ``Set-Cookie`` / ``Authorization`` / ``Proxy-Authorization`` / API-key headers,
  both as httpcore prints them (``(b'set-cookie', b'...')``) and as ``name: value`` text;
* session-cookie pairs (``...sessionid=...``) and secret query parameters (``access_token=``,
  ``corpsecret=``, ``password=``, ...);
* every value registered with the vault's redactor (:func:`tongbu.vault.redact.register_secret`):
  passwords and app secrets the clients were given, tokens and cookies they received.

It also keeps httpx's per-request INFO line out of non-debug logs (one line per page drowns a large
sync) unless the application set the ``httpx`` logger's level itself.
"""

from __future__ import annotations

import logging
import re
import threading

from tongbu.vault.redact import MASK, redact, register_secret

__all__ = ["RedactHttpSecrets", "get_logger", "redact_http", "remember_secret", "setup_logging"]

#: loggers of the HTTP stack that can print headers or URLs
HTTP_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "hpack",
    "hpack.hpack",
    "hpack.table",
    "urllib3.connectionpool",
)
_SENSITIVE_HEADERS = r"set-cookie|cookie|authorization|proxy-authorization|x-api-key|x-auth-token|api-key"
# httpcore: [(b'set-cookie', b'kdservice-sessionid=...; path=/'), ...] (also str tuples)
_HEADER_TUPLE = re.compile(
    rf"""(\(\s*b?(['"])(?:{_SENSITIVE_HEADERS})\2\s*,\s*b?)(['"])((?:\\.|(?!\3).)*)\3""",
    re.IGNORECASE,
)
# "Set-Cookie: value" / "authorization=Bearer ..." up to the end of the line
_HEADER_LINE = re.compile(rf"""(?<![\w-])((?:{_SENSITIVE_HEADERS})\s*[:=]\s*)[^\r\n'"]+""", re.IGNORECASE)
_SESSION_PAIR = re.compile(r"""((?:[\w.-]*session(?:[_-]?id)?|[\w.-]*sid)=)[^;,&\s'"]+""", re.IGNORECASE)
_SECRET_QUERY = re.compile(
    r"""((?:[?&]|\b)(?:access_token|refresh_token|id_token|token|corpsecret|secret|client_secret|"""
    r"""app_secret|password|passwd|api_key|apikey|signature|sig)=)[^&\s"'#]+""",
    re.IGNORECASE,
)


def redact_http(text: str) -> str:
    """``text`` with HTTP credentials (headers, cookies, query secrets, known secret values) masked."""
    if not text:
        return text
    text = _HEADER_TUPLE.sub(lambda m: f"{m.group(1)}{m.group(3)}{MASK}{m.group(3)}", text)
    text = _HEADER_LINE.sub(lambda m: m.group(1) + MASK, text)
    text = _SESSION_PAIR.sub(lambda m: m.group(1) + MASK, text)
    text = _SECRET_QUERY.sub(lambda m: m.group(1) + MASK, text)
    return redact(text)


class RedactHttpSecrets(logging.Filter):
    """Rewrites a record's message (arguments merged) with :func:`redact_http`; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's to report, not ours
            return True
        clean = redact_http(message)
        if clean != message or record.args:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_text is None and record.exc_info[1] is not None:
            record.exc_text = redact_http(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact_http(record.exc_text)
        return True


_FILTER = RedactHttpSecrets()
_lock = threading.Lock()
_done = False


def _attach(logger: logging.Logger) -> None:
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


def setup_logging() -> None:
    """Attach the redactor to the HTTP stack's loggers; idempotent, cheap after the first call."""
    global _done
    if _done:
        return
    with _lock:
        if _done:
            return
        for name in HTTP_LOGGERS:
            _attach(logging.getLogger(name))
        # any other child logger httpcore or hpack created (they log on their own module names)
        for name in list(logging.root.manager.loggerDict):
            if name.split(".")[0] in {"httpx", "httpcore", "hpack", "h2"}:
                _attach(logging.getLogger(name))
        httpx_logger = logging.getLogger("httpx")
        if httpx_logger.level == logging.NOTSET and logging.getLogger().getEffectiveLevel() > logging.DEBUG:
            httpx_logger.setLevel(logging.WARNING)
        _done = True


def get_logger(name: str) -> logging.Logger:
    """A connector's logger, with the redactor attached (records it logs are masked even without
    :func:`tongbu.vault.install_redaction`)."""
    logger = logging.getLogger(name)
    _attach(logger)
    return logger


def remember_secret(value: object) -> None:
    """Mask ``value`` (a password, a token, a session id we were given or received) in all logs."""
    if isinstance(value, str) and value:
        register_secret(value)
