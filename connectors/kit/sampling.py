"""Catch a mapping's misspelt optional source fields from a sample of the first records of a run.

A wrong source on a *required* field fails every record loudly; on an optional field it just leaves
the column NULL on every row. Both the in-process runner and ``target-crm`` (pipe mode) look at the
first :data:`SAMPLE_RECORDS` records of a run, never more, so the per-record hot path is untouched.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

#: Records of each run inspected for mapping source fields that never appear.
SAMPLE_RECORDS = 1000


def optional_sources(mapping: Any) -> dict[str, str]:
    """``source path -> target column`` for the optional (not ``required``) fields of a compiled mapping."""
    out: dict[str, str] = {}
    for field_spec in mapping.spec.fields:
        if field_spec.required:
            continue
        for path in field_spec.source_paths():
            out.setdefault(path, field_spec.target)
    return out


def _has_path(record: Any, path: str) -> bool:
    """Whether ``path`` reaches a value, read the way the mapping engine reads it: the literal key
    first, then through nested objects, an integer part indexing into a list (``owner.0``)."""
    if isinstance(record, dict) and path in record:
        return True
    for part in path.split("."):
        if isinstance(record, dict) and part in record:
            record = record[part]
        elif (
            isinstance(record, list | tuple)
            and part.lstrip("-").isdigit()
            and -len(record) <= int(part) < len(record)
        ):
            record = record[int(part)]
        else:
            return False
    return True


def absent_source_fields(optional: dict[str, str], sample: Iterable[dict[str, Any]]) -> tuple[str, ...]:
    """One warning per optional source path present in none of the ``sample`` records (with a hint)."""
    sample = list(sample)
    if not sample or not optional:
        return ()
    missing = [path for path in optional if not any(_has_path(r, path) for r in sample)]
    if not missing:
        return ()
    seen_keys = sorted({str(k) for r in sample if isinstance(r, dict) for k in r})
    notes = []
    for path in missing:
        close = difflib.get_close_matches(path.split(".")[0], seen_keys, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else "check the field name in the mapping"
        notes.append(
            f"source field {path!r} (mapped to {optional[path]!r}) is absent from all {len(sample):,} "
            f"sampled records, so {optional[path]!r} stays empty; {hint}"
        )
    return tuple(notes)
