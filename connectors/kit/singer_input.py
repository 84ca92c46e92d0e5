"""Singer input for tongbu's targets: a bad message is one clear line and a quarantine entry, never a traceback.

singer-sdk's reader (:class:`singer_sdk.singerlib.encoding.SimpleSingerReader`) hands every parsed line
to the target's callbacks as it comes: a RECORD whose ``record`` is a string dies deep in the sink
(``AttributeError: 'str' object has no attribute 'pop'``), a line that is not JSON or not UTF-8 dies in
the decoder, and either way the whole run stops with a 12–21-frame traceback. :class:`SingerInputReader`
plugs in at the SDK's public extension point (``Target.message_reader_class``) and checks each line
*before* it reaches the SDK:

* lines are read from the binary stream with a size bound (no line is held in memory beyond
  :attr:`SingerInputReader.max_line_bytes`), decoded as strict UTF-8, parsed as JSON;
* the message must be an object with a known ``type``; RECORD, SCHEMA, ACTIVATE_VERSION and BATCH
  need a string ``stream``; a RECORD's ``record`` must be an object and its stream must have had a
  SCHEMA; a SCHEMA's ``schema`` an object with ``properties``; a STATE's ``value`` an object.

A message that fails becomes a :class:`BadMessage` naming the input line, the stream (when known) and
the problem. It is written to stderr as one line and handed to the target's ``on_bad`` hook (target-crm
quarantines it); the run goes on with the next line. A bad STATE is ignored, so the state never
advances on its account.
"""

from __future__ import annotations

import json
import sys
import typing as t
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from singer_sdk.singerlib.encoding import SimpleSingerReader

#: Longest accepted input line (bytes). Hub records are a few KiB; a line beyond this is cut, not read.
MAX_LINE_BYTES = 16 * 1024 * 1024
#: How much of an unparsable line is kept in its quarantine entry.
KEPT_CHARS = 64 * 1024
MESSAGE_TYPES = ("RECORD", "SCHEMA", "STATE", "ACTIVATE_VERSION", "BATCH")
_NEEDS_STREAM = ("RECORD", "SCHEMA", "ACTIVATE_VERSION", "BATCH")


@dataclass(frozen=True)
class BadMessage:
    """One input line that is not a usable Singer message."""

    line: int
    problem: str
    #: the message type, when the line parsed far enough to have one
    kind: str | None = None
    stream: str | None = None
    #: the parsed message (when it parsed), else the start of the raw line
    message: t.Any = None
    raw: str | None = None
    truncated: bool = False

    def describe(self, target: str) -> str:
        """The one line shown to the user."""
        where = f"line {self.line}" + (f", stream {self.stream!r}" if self.stream else "")
        return f"{target}: bad Singer message at input {where}: {self.problem}"

    def payload(self) -> dict[str, t.Any]:
        """What a quarantine entry keeps: the message, or as much of the raw line as is safe."""
        out: dict[str, t.Any] = {"input_line": self.line}
        if self.raw is not None:
            out["raw"] = self.raw
            if self.truncated:
                out["truncated"] = True
        else:
            out["message"] = self.message
        return out


def _type_name(value: t.Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__
    )


def check_message(message: t.Any, schemas: t.Container[str]) -> tuple[str | None, str | None]:
    """``(problem, stream)`` for one parsed line; ``problem`` is None when the SDK may process it.

    ``schemas`` holds the streams that have had a usable SCHEMA so far.
    """
    if not isinstance(message, dict):
        return (
            f"a JSON {_type_name(message)} is not a Singer message (expected an object with a 'type')",
            None,
        )
    kind = message.get("type")
    if kind is None:
        return "the message has no 'type'", None
    if kind not in MESSAGE_TYPES:
        shown = repr(kind) if isinstance(kind, str) else f"of JSON type {_type_name(kind)}"
        return f"unknown message type {shown[:80]} (expected one of {', '.join(MESSAGE_TYPES)})", None
    stream = message.get("stream")
    if kind in _NEEDS_STREAM:
        if stream is None:
            return f"{kind} without a 'stream'", None
        if not isinstance(stream, str) or not stream:
            return f"{kind} 'stream' must be a non-empty string, not a JSON {_type_name(stream)}", None
    else:
        stream = stream if isinstance(stream, str) else None
    if kind == "RECORD":
        if "record" not in message:
            return "RECORD without a 'record'", stream
        if not isinstance(message["record"], dict):
            return f"RECORD 'record' is a JSON {_type_name(message['record'])}, not an object", stream
        if stream not in schemas:
            return "RECORD before any usable SCHEMA for its stream", stream
    elif kind == "SCHEMA":
        schema = message.get("schema")
        if not isinstance(schema, dict):
            return f"SCHEMA 'schema' must be an object, not a JSON {_type_name(schema)}", stream
        if not isinstance(schema.get("properties"), dict):
            return "SCHEMA 'schema' has no 'properties' object", stream
        keys = message.get("key_properties")
        if keys is not None and not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
            return "SCHEMA 'key_properties' must be a list of strings", stream
    elif kind == "STATE":
        if "value" not in message:
            return "STATE without a 'value'; the state was not advanced", None
        if not isinstance(message["value"], dict):
            return (
                f"STATE 'value' is a JSON {_type_name(message['value'])}, not an object; "
                "the state was not advanced"
            ), None
    elif kind == "ACTIVATE_VERSION":
        version = message.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            return "ACTIVATE_VERSION needs an integer 'version'", stream
        if stream not in schemas:
            return "ACTIVATE_VERSION before any usable SCHEMA for its stream", stream
    elif kind == "BATCH":
        if not isinstance(message.get("encoding"), dict) or not isinstance(message.get("manifest"), list):
            return "BATCH needs an 'encoding' object and a 'manifest' list", stream
        if stream not in schemas:
            return "BATCH before any usable SCHEMA for its stream", stream
    return None, stream


@dataclass
class _Line:
    number: int
    text: str | None = None
    problem: str | None = None
    raw: str | None = None
    truncated: bool = False


@dataclass
class SingerInputReader(SimpleSingerReader):
    """A singer-sdk message reader that turns bad input into :class:`BadMessage` instead of a crash.

    Set as ``message_reader_class`` on a Target; the target then sets :attr:`target_name` and
    :attr:`on_bad` (e.g. to quarantine). Without ``on_bad`` a bad message is only reported.
    """

    target_name: str = "target"
    on_bad: Callable[[BadMessage], None] | None = None
    max_line_bytes: int = MAX_LINE_BYTES
    #: every bad message of this run, in input order
    bad: list[BadMessage] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def process_lines(
        self, file_input: t.IO[str] | None, callbacks: dict[str, Callable[[dict[str, t.Any]], None]]
    ) -> t.Counter[str]:
        """Validate and dispatch every line; return the count of processed messages per type."""
        stats: Counter[str] = Counter()
        schemas: set[str] = set()
        for line in self._lines(file_input or sys.stdin):
            if line.problem is not None:
                self._report(BadMessage(line.number, line.problem, raw=line.raw, truncated=line.truncated))
                continue
            assert line.text is not None
            if not line.text.strip():
                continue  # blank lines carry nothing (a trailing newline, a hand-edited file)
            try:
                message = json.loads(line.text)
            except (ValueError, RecursionError) as exc:
                detail = f": {exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
                self._report(BadMessage(line.number, f"not valid JSON{detail}", raw=line.text[:KEPT_CHARS]))
                continue
            problem, stream = check_message(message, schemas)
            declared = message.get("type") if isinstance(message, dict) else None
            kind: str | None = declared if isinstance(declared, str) and declared in MESSAGE_TYPES else None
            if problem is not None:
                self._report(BadMessage(line.number, problem, kind, stream, message))
                continue
            self._current_message = line.text
            callback = callbacks.get(kind) if kind else None
            if kind is None or callback is None:
                self._report(
                    BadMessage(line.number, f"{kind} messages are not supported here", kind, stream, message)
                )
                continue
            if kind == "SCHEMA":
                assert stream is not None
                try:
                    callback(message)
                except (ValueError, TypeError, KeyError, LookupError) as exc:
                    # The target refuses the stream (e.g. target-wecom writes one stream only) or the
                    # SDK cannot read the schema: the stream's RECORDs are then each reported too.
                    schemas.discard(stream)
                    self._report(
                        BadMessage(line.number, f"SCHEMA not usable: {str(exc)[:200]}", kind, stream, message)
                    )
                    continue
                schemas.add(stream)
            else:
                callback(message)
            stats[kind] += 1
        return stats

    def _lines(self, stream: t.IO[t.Any]) -> Iterator[_Line]:
        """Lines with their 1-based numbers, each bounded in size and decoded as strict UTF-8."""
        binary = getattr(stream, "buffer", None)
        source: t.IO[t.Any] = binary if binary is not None else stream
        limit = self.max_line_bytes
        number = 0
        while True:
            chunk = source.readline(limit + 1)
            if not chunk:
                return
            number += 1
            newline = b"\n" if isinstance(chunk, bytes) else "\n"
            if len(chunk) > limit and not chunk.endswith(newline):
                head, size = chunk[:KEPT_CHARS], len(chunk)
                while chunk and not chunk.endswith(newline):  # skip the rest without keeping it
                    chunk = source.readline(1 << 20)
                    size += len(chunk)
                yield _Line(
                    number,
                    problem=f"the line is {size:,} bytes, over the {limit:,}-byte limit (not read)",
                    raw=_text(head),
                    truncated=True,
                )
                continue
            if isinstance(chunk, bytes):
                try:
                    text = chunk.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield _Line(
                        number,
                        problem=f"not valid UTF-8 (byte {exc.start + 1} of the line)",
                        raw=_text(chunk[:KEPT_CHARS]),
                        truncated=len(chunk) > KEPT_CHARS,
                    )
                    continue
            else:
                text = chunk
            yield _Line(number, text=text)

    def _report(self, bad: BadMessage) -> None:
        self.bad.append(bad)
        sys.stderr.write(bad.describe(self.target_name) + "\n")
        sys.stderr.flush()
        if self.on_bad is not None:
            self.on_bad(bad)


def _text(chunk: bytes | str) -> str:
    return chunk.decode("utf-8", errors="backslashreplace") if isinstance(chunk, bytes) else chunk


def attach(target: t.Any, on_bad: Callable[[BadMessage], None] | None = None) -> SingerInputReader | None:
    """Name ``target``'s reader after it and route its bad messages to ``on_bad``.

    Call in the Target's ``__init__`` after ``super().__init__()``; returns the reader (None when the
    target was given another reader).
    """
    reader = getattr(target, "message_reader", None)
    if not isinstance(reader, SingerInputReader):
        return None
    reader.target_name = target.name
    reader.on_bad = on_bad
    return reader


__all__ = ["MAX_LINE_BYTES", "BadMessage", "SingerInputReader", "attach", "check_message"]
