"""The one error taxonomy every connector raises.

Callers (the runner, ``tongbu serve``, Dagster assets) decide what to do from the class alone:

* :class:`Throttled` — the source asked us to slow down (HTTP 429, a rate-limit code in the body);
* :class:`Transient` — worth another attempt (5xx, timeouts, dropped connections, "system busy");
* :class:`AuthError` — credentials wrong, expired or lacking permission: fix the config or the vault;
* :class:`BadRequest` — the source refused what we sent (a wrong field, a bad filter): a bug or config;
* :class:`NotFound` — the object or endpoint does not exist.

The kit's retry policy retries ``Throttled`` and ``Transient`` (a connector may widen or narrow that with
its ``is_retryable`` hook) and, once the budget is spent, raises the last error again with
``giving up after N attempts`` in front of it. Messages are written to be acted on and never carry a
secret: URLs are shown without their query string, and no header or body of a request is included.
"""

from __future__ import annotations

from typing import Any, Self, TypeVar

__all__ = [
    "AuthError",
    "BadRequest",
    "ConnectorError",
    "ErrorFamily",
    "NotFound",
    "Throttled",
    "Transient",
    "recast",
]


class ConnectorError(Exception):
    """Base of every error a connector raises.

    ``status_code`` is the HTTP status when there was one, ``retry_after`` the delay in seconds the
    source asked for (``Retry-After``), ``attempts`` how many tries were made before giving up (0 when
    the error was raised at once), ``kind`` a short label for counters (``timeout``, ``connection``,
    ``server_error``, ``throttled`` ...).
    """

    #: short label for counters and metrics; subclasses and raisers refine it
    kind: str = "error"

    def __init__(
        self,
        message: str,
        *args: Any,
        status_code: int | None = None,
        retry_after: float | None = None,
        kind: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, *args)
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after
        self.attempts = 0
        if kind is not None:
            self.kind = kind

    def __str__(self) -> str:
        return self.message

    def giving_up(self, attempts: int, why: str = "", label: str = "") -> Self:
        """A copy of this error for the caller after the retry budget is spent.

        Same class and attributes (a caller catching ``Throttled`` still does), the message prefixed
        with the call's label, how many attempts were made and, when the time budget ended it, why.
        """
        new = self.__class__.__new__(self.__class__)
        new.__dict__.update(self.__dict__)
        reason = f" ({why})" if why else ""
        where = f"{label}: " if label else ""
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        message = f"{where}giving up after {tries}{reason}; last error: {self.message}"
        Exception.__init__(new, message)
        new.message = message
        new.attempts = attempts
        return new


class Throttled(ConnectorError):
    """The source is rate limiting us; retried after ``retry_after`` or a backoff."""

    kind = "throttled"


class Transient(ConnectorError):
    """A failure that another attempt may not meet (5xx, timeout, connection reset, busy)."""

    kind = "transient"


class AuthError(ConnectorError):
    """Login or token refused, or the credentials lack a permission; retrying will not help."""

    kind = "auth"


class BadRequest(ConnectorError):
    """The source rejected the request itself (a field, a filter, a parameter); not retried."""

    kind = "bad_request"


class NotFound(ConnectorError):
    """The endpoint or object does not exist; not retried."""

    kind = "not_found"


E = TypeVar("E", bound=ConnectorError)


def recast(exc: ConnectorError, cls: type[E], **attrs: Any) -> E:
    """``exc`` as an instance of ``cls`` (a connector's own subclass), same message and attributes."""
    new = cls.__new__(cls)
    new.__dict__.update(exc.__dict__)
    new.__dict__.update(attrs)
    Exception.__init__(new, new.message)
    return new


class ErrorFamily:
    """A connector's subclasses of the five kit errors, so ``except KingdeeError`` catches all of them.

    ``family.translate(exc)`` turns a kit error raised by the shared HTTP code into the connector's
    class for the same category (an error already in the family is returned as it is).
    """

    def __init__(self, base: type[ConnectorError], members: dict[type[ConnectorError], type[ConnectorError]]):
        self.base = base
        self.members = members

    def translate(self, exc: ConnectorError, **attrs: Any) -> ConnectorError:
        """The family's class for ``exc``'s category, or ``exc`` itself if it is one already."""
        if isinstance(exc, self.base):
            return exc
        for kit_cls, own in self.members.items():
            if isinstance(exc, kit_cls):
                return recast(exc, own, **attrs)
        return recast(exc, self.base, **attrs)
