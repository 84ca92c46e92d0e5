"""Value-based redaction: mask every known secret value wherever text leaves the process.

The vault registers each value it decrypts (:func:`register_secret`); from then on :func:`redact`
replaces that value — and its common encodings (base64 at any alignment, URL-quoted, JSON/repr
escaped) — with ``***`` in any string. :func:`install_redaction` wires this into Python logging (every
record, at creation and again at every handler) and into ``sys.excepthook``, so a secret that slips
into a log message, an exception text or a traceback is masked before it is written anywhere.

Masking by *value* rather than by field name is what catches the leaks seen in the wild (a DSN in a
debug line, an OAuth error body echoing the token); :func:`scrub_mapping` adds the key-name layer for
structured payloads (quarantined records, HTTP headers).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import threading
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any
from urllib.parse import quote, quote_plus

from pydantic import SecretStr

MASK = "***"
#: Values shorter than this are not masked: masking every "a" or "1" would shred logs (Airflow's
#: known pathology) while protecting nothing a brute force would not find anyway.
MIN_SECRET_LENGTH = 4
#: Encoded variants shorter than this are skipped; short base64 fragments collide with ordinary text.
MIN_VARIANT_LENGTH = 8

#: Key names whose values are masked in structured data regardless of what the value is
#: (Sentry's server-side defaults plus the OAuth/WeCom names this project meets).
SENSITIVE_KEY_PATTERN = re.compile(
    r"pass(word|wd)?|secret|api[_-]?key|apikey|auth|credential|private[_-]?key|token|bearer|"
    r"signature|cookie|session|corpsecret|encoding_?aes_?key|dsn",
    re.IGNORECASE,
)


def _base64_fragments(raw: bytes) -> set[str]:
    """Base64 text that always appears when ``raw`` is embedded in a longer base64-encoded string.

    Where ``raw`` starts inside the encoded stream (offset mod 3) shifts its characters, so we compute
    all three alignments and keep only the characters whose six bits come entirely from ``raw``
    (this is what catches ``Authorization: Basic base64(user:password)``).
    """
    out: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        start = -(-(offset * 8) // 6)  # ceil: first char not touched by the padding bytes
        end = ((offset + len(raw)) * 8) // 6  # floor: last char not touched by what follows
        fragment = encoded[start:end]
        for variant in (fragment, fragment.replace("+", "-").replace("/", "_")):
            if len(variant) >= MIN_VARIANT_LENGTH:
                out.add(variant)
    return out


def secret_variants(value: str) -> set[str]:
    """The value plus the encodings it commonly travels in."""
    variants = {value}
    raw = value.encode()
    variants |= _base64_fragments(raw)
    for encoded in (
        quote(value, safe=""),
        quote_plus(value, safe=""),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
        raw.hex(),
    ):
        if len(encoded) >= MIN_VARIANT_LENGTH or encoded == value:
            variants.add(encoded)
    return {v for v in variants if len(v) >= MIN_SECRET_LENGTH}


class SecretRegistry:
    """Thread-safe set of live secret values and the compiled pattern that masks them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._variants: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str | SecretStr) -> bool:
        """Register a value; return False when it is too short to mask safely."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(text, str) or len(text) < MIN_SECRET_LENGTH:
            return False
        with self._lock:
            if text in self._values:
                return True
            self._values.add(text)
            self._variants |= secret_variants(text)
            self._pattern = None
        return True

    def discard(self, value: str | SecretStr) -> None:
        """Forget a value (e.g. a token that expired long ago); variants shared with others stay."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        with self._lock:
            if text not in self._values:
                return
            self._values.discard(text)
            self._variants = (
                set().union(*(secret_variants(v) for v in self._values)) if self._values else set()
            )
            self._pattern = None

    def clear(self) -> None:
        """Forget everything (tests)."""
        with self._lock:
            self._values.clear()
            self._variants.clear()
            self._pattern = None

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, value: object) -> bool:
        return value in self._values

    def _compiled(self) -> re.Pattern[str] | None:
        pattern = self._pattern
        if pattern is not None or not self._variants:
            return pattern
        with self._lock:
            if self._pattern is None and self._variants:
                # Longest first, so a secret that contains another is masked whole, not in pieces.
                ordered = sorted(self._variants, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in ordered))
            return self._pattern

    def redact(self, text: str) -> str:
        """Replace every registered value (and variant) in ``text`` with :data:`MASK`."""
        pattern = self._compiled()
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def contains_secret(self, text: str) -> bool:
        """True when ``text`` holds any registered value or variant."""
        pattern = self._compiled()
        return bool(pattern and text and pattern.search(text))


#: The process-wide registry the vault feeds and every sink consults.
registry = SecretRegistry()


def register_secret(value: str | SecretStr) -> bool:
    """Mark ``value`` as secret for this process: it will be masked in logs, errors and :func:`redact`."""
    return registry.add(value)


def forget_secret(value: str | SecretStr) -> None:
    """Stop masking ``value``."""
    registry.discard(value)


def redact(text: object) -> str:
    """Return ``str(text)`` with every known secret value masked."""
    return registry.redact(text if isinstance(text, str) else str(text))


def contains_secret(text: str) -> bool:
    """True when ``text`` contains a registered secret value (or one of its encodings)."""
    return registry.contains_secret(text)


def redact_value(obj: Any) -> Any:
    """Recursively redact strings inside dicts, lists and tuples (other objects pass through)."""
    if isinstance(obj, str):
        return registry.redact(obj)
    if isinstance(obj, SecretStr):
        return MASK
    if isinstance(obj, Mapping):
        return {k: redact_value(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(redact_value(v) for v in obj)
    return obj


def scrub_mapping(obj: Any, *, key_pattern: re.Pattern[str] = SENSITIVE_KEY_PATTERN) -> Any:
    """Key-name layer: mask values whose key looks sensitive, then value-redact what remains.

    For structured payloads that may hold secrets the vault never saw (a token in an HTTP error body, a
    password in a quarantined record).
    """
    if isinstance(obj, Mapping):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            if isinstance(k, str) and key_pattern.search(k) and isinstance(v, str | bytes | int | SecretStr):
                out[k] = MASK
            else:
                out[k] = scrub_mapping(v, key_pattern=key_pattern)
        return out
    if isinstance(obj, list | tuple):
        return type(obj)(scrub_mapping(v, key_pattern=key_pattern) for v in obj)
    return redact_value(obj)


def format_exception_redacted(
    exc: BaseException | None = None,
    tb: TracebackType | None = None,
    exc_type: type[BaseException] | None = None,
) -> str:
    """A traceback as text, without local variables, with secrets masked."""
    if exc is None:
        exc_type, exc, tb = sys.exc_info()
    if exc is None:
        return ""
    text = "".join(traceback.format_exception(exc_type or type(exc), exc, tb or exc.__traceback__))
    return registry.redact(text)


class RedactedError(Exception):
    """Stands in for an exception whose text contained a secret.

    Keeps the original type name (so operators can still search for it) and the masked message; the
    original is deliberately not chained — its args, and the locals of its frames, hold the value.
    """

    def __init__(self, original_type: str, message: str) -> None:
        self.original_type = original_type
        super().__init__(f"{original_type}: {message}")


def scrub_exception(exc: BaseException) -> BaseException:
    """Return ``exc`` itself if its text is clean, else a :class:`RedactedError` with the masked text.

    Use at process boundaries (a Dagster op failing, a Singer tap exiting) before the exception is
    serialised into an event or a run record.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if contains_secret("".join(traceback.format_exception_only(type(current), current))):
            return RedactedError(type(exc).__name__, registry.redact(str(exc)))
        current = current.__cause__ or current.__context__
    return exc


@contextmanager
def redacting_errors() -> Iterator[None]:
    """Re-raise any exception whose text (or chained cause) holds a secret as a :class:`RedactedError`."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - we re-raise, only the text changes
        clean = scrub_exception(exc)
        if clean is exc:
            raise
        raise clean from None


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the message, args, exception text and extra fields.

    It never drops a record; it rewrites it. Formatting happens here (``msg % args``) so the masked
    message is what every later handler sees, and the exception traceback is rendered once, masked,
    into ``exc_text`` (with ``exc_info`` removed when it held a secret, so no formatter can re-render
    the raw exception).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_STD_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask secrets in a log record in place; a record without secrets is left exactly as it was."""
    if not len(registry):
        return record
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a malformed record must still not leak its args
        message = f"{record.msg!s} {record.args!r}"
    masked = registry.redact(message)
    if masked != message:
        record.msg = masked
        record.args = None
    if record.exc_info and record.exc_info[1] is not None:
        raw = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        text = registry.redact(raw)
        if text != raw:
            record.exc_info = None  # the raw exception holds the secret; keep only the masked text
            record.exc_text = text
    elif record.exc_text:
        record.exc_text = registry.redact(record.exc_text)
    if record.stack_info:
        record.stack_info = registry.redact(record.stack_info)
    for key, value in list(vars(record).items()):
        if key not in _STD_RECORD_ATTRS and isinstance(value, str):
            setattr(record, key, registry.redact(value))
    return record


_install_lock = threading.Lock()
_installed = False
_filter = RedactingFilter()


def _patch_make_record() -> None:
    """Mask every record a logger creates, after ``extra`` fields are attached.

    Patching ``Logger.makeRecord`` (rather than the record factory, which runs before extras are set)
    covers all loggers and all handlers, including handlers added later by Dagster or singer-sdk.
    """
    original = logging.Logger.makeRecord
    if getattr(original, "_tongbu_redacting", False):
        return

    def make_record(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(original(self, *args, **kwargs))

    make_record._tongbu_redacting = True  # type: ignore[attr-defined]
    logging.Logger.makeRecord = make_record  # type: ignore[method-assign]


def _excepthook(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:  # pragma: no cover - exercised by a subprocess test
    sys.stderr.write(format_exception_redacted(exc, tb, exc_type))


def install_redaction(
    loggers: Iterable[logging.Logger | str] = (),
    *,
    excepthook: bool = True,
) -> RedactingFilter:
    """Mask known secrets in all logging output of this process; safe to call more than once.

    * wraps ``Logger.makeRecord``, so every record from every logger is masked at creation, extras
      included (this also covers handlers added later, e.g. by Dagster or singer-sdk);
    * attaches :class:`RedactingFilter` to the root logger, its handlers, ``logging.lastResort`` and
      the handlers of any extra ``loggers`` — for records that did not come through the factory
      (unpickled from another process, built by hand);
    * replaces ``sys.excepthook`` so an uncaught exception's traceback is masked on stderr.
    """
    global _installed
    with _install_lock:
        _patch_make_record()
        targets: list[logging.Logger] = [logging.getLogger()]
        targets += [logging.getLogger(x) if isinstance(x, str) else x for x in loggers]
        for logger in targets:
            if _filter not in logger.filters:
                logger.addFilter(_filter)
            for handler in logger.handlers:
                if _filter not in handler.filters:
                    handler.addFilter(_filter)
        if logging.lastResort is not None and _filter not in logging.lastResort.filters:
            logging.lastResort.addFilter(_filter)
        if excepthook and sys.excepthook is not _excepthook:
            sys.excepthook = _excepthook
        _installed = True
    return _filter
