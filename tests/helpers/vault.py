"""Helpers for tests that need a vault: throw-away keys, canary values and leak scanners.

Shared by ``tests/test_vault*.py`` and usable by connector tests that plant canary secrets. A
PostgreSQL database for a test comes from the ``pg_url`` fixture in ``tests/conftest.py``.
"""

from __future__ import annotations

import base64
import os
import sqlite3
import uuid
from collections.abc import Iterable
from pathlib import Path

from tongbu.vault.keys import RawKeySource, encode_key


def new_key_source(description: str = "test master key") -> RawKeySource:
    """A fresh random in-memory master key."""
    return RawKeySource(os.urandom(32), description=description)


def key_text(source: RawKeySource) -> str:
    """The text form of a key, as ``TONGBU_MASTER_KEY`` or a key file holds it."""
    return encode_key(source.key)


def canary(label: str = "canary") -> str:
    """A unique, greppable secret value."""
    return f"{label}-{uuid.uuid4().hex}"


def leak_needles(value: str) -> list[bytes]:
    """Byte patterns that betray ``value``: raw UTF-8, UTF-16, hex, base64 (the middle, any alignment)."""
    raw = value.encode()
    needles = [raw, value.encode("utf-16-le"), raw.hex().encode(), raw.hex().upper().encode()]
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw)
        needles.append(encoded[offset + 2 : len(encoded) - 4])
    return [n for n in needles if len(n) >= 8]


def scan_files(paths: Iterable[Path], values: Iterable[str]) -> list[str]:
    """``"<file>: <value label>"`` for every file that contains any of ``values`` in any encoding."""
    found: list[str] = []
    values = list(values)
    for path in paths:
        path = Path(path)
        if not path.is_file():
            continue
        data = path.read_bytes()
        for i, value in enumerate(values):
            if any(n in data for n in leak_needles(value)):
                found.append(f"{path}: value #{i}")
    return found


def sqlite_dump(db_path: Path) -> str:
    """``sqlite3 .dump`` equivalent (``iterdump``), with blobs as hex as the CLI prints them."""
    conn = sqlite3.connect(db_path)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()
