"""Bounded parsing of untrusted webhook bodies (for event sources that take JSON)."""

from __future__ import annotations

from typing import Any


class BodyRejected(ValueError):
    """An untrusted body is too large, too deep or not what it claims to be (the message is public)."""


def parse_json_body(
    body: bytes | str, *, max_bytes: int = 64 * 1024, max_depth: int = 32, max_items: int = 10_000
) -> Any:
    """Parse an untrusted JSON webhook body in linear time, bounded in size, nesting and item count.

    The bounds are checked by one pass over the bytes *before* ``json.loads`` runs, so a deep or huge
    document never reaches the parser (whose recursion a 100,000-deep ``[[[…`` would otherwise blow);
    numbers are parsed with Python's digit limit, NaN/Infinity are refused. Raises :class:`BodyRejected`.
    """
    import json

    raw = body.encode("utf-8") if isinstance(body, str) else body
    if len(raw) > max_bytes:
        raise BodyRejected(f"JSON body is larger than {max_bytes} bytes")
    depth = items = 0
    in_string = escaped = False
    for byte in raw:  # one linear pass: nesting outside strings, and commas as an item count
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > max_depth:
                raise BodyRejected(f"JSON body is nested deeper than {max_depth} levels")
        elif byte in (0x5D, 0x7D):
            depth -= 1
        elif byte == 0x2C:
            items += 1
            if items > max_items:
                raise BodyRejected(f"JSON body has more than {max_items} items")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyRejected("JSON body is not UTF-8") from None

    def no_constants(name: str) -> Any:
        raise BodyRejected(f"JSON body contains {name}, which is not JSON")

    try:
        return json.loads(text, parse_constant=no_constants)
    except BodyRejected:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, and int() over the digit limit
        raise BodyRejected(f"JSON body is not valid JSON ({str(exc)[:80]})") from None
