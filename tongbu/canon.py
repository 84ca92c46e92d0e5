"""One canonical, JSON-safe form of field values, the same whichever database or API they came from.

Numbers become their normalised decimal text (``1``, ``1.0`` and ``Decimal("1.00")`` are all ``"1"``),
datetimes UTC ISO text, dates ISO text, bytes text; ``None``, booleans and strings stay as they are.
The two-way engine compares, stores (base snapshots) and hashes values in this form, so a value read
back from SQLite, PostgreSQL or an ERP's JSON compares equal to the value that was written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any


def canon(value: Any) -> Any:
    """The canonical form of one value (see the module docstring)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float | Decimal):
        try:
            number = Decimal(str(value))
        except InvalidOperation:  # nan / inf: keep them distinguishable, never equal to a number
            return str(value)
        if not number.is_finite():
            return str(number)
        text = format(number.normalize(), "f")
        return "0" if text in ("-0", "0") else text
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds") + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return {str(k): canon(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [canon(v) for v in value]
    return str(value)


def canon_record(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every value of a record in canonical form."""
    return {k: canon(v) for k, v in values.items()}


def canonical_hash(values: Mapping[str, Any]) -> str:
    """A hash of a record's canonical values, independent of key order and database."""
    # repr of canonical values (str, None, bool, and lists/dicts of them) is stable and much cheaper
    # than JSON; this runs once per record in every reconciliation pass.
    text = repr(sorted((str(k), canon(v)) for k, v in values.items()))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def canonical_hasher(fields: Sequence[str]) -> Callable[[Sequence[Any]], str]:
    """:func:`canonical_hash` of rows given as values in ``fields`` order, without building dicts.

    ``canonical_hasher(f)(values) == canonical_hash(dict(zip(f, values)))`` for unique field names;
    it is what a reconciliation pass runs once per hub row, so the sort is done once and text and
    None values (most of them) skip :func:`canon`.
    """
    order = sorted(range(len(fields)), key=lambda i: str(fields[i]))
    names = [str(fields[i]) for i in order]

    def digest(values: Sequence[Any]) -> str:
        pairs = []
        for name, i in zip(names, order, strict=True):
            v = values[i]
            pairs.append((name, v if v is None or type(v) is str else canon(v)))
        return hashlib.blake2b(repr(pairs).encode(), digest_size=16).hexdigest()

    return digest
