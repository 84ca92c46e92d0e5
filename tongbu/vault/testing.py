"""Helpers for tests that need a vault: throw-away databases, keys, and leak scanners.

Shared by ``tests/test_vault*.py`` and usable by connector tests that plant canary secrets.
"""

from __future__ import annotations

import base64
import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, text

from tongbu.vault.keys import RawKeySource, encode_key

POSTGRES_ENV = "TONGBU_TEST_POSTGRES_URL"


def new_key_source(description: str = "test master key") -> RawKeySource:
    """A fresh random in-memory master key."""
    return RawKeySource(os.urandom(32), description=description)


def key_text(source: RawKeySource) -> str:
    """The text form of a key, as ``TONGBU_MASTER_KEY`` or a key file holds it."""
    return encode_key(source.key)


def canary(label: str = "canary") -> str:
    """A unique, greppable secret value."""
    return f"{label}-{uuid.uuid4().hex}"


def services_required() -> bool:
    """CI (``CI`` or ``TONGBU_REQUIRE_SERVICES``): a missing PostgreSQL must fail tests, not skip them."""
    return bool(os.environ.get("CI") or os.environ.get("TONGBU_REQUIRE_SERVICES"))


def postgres_url() -> str | None:
    """The test PostgreSQL URL, or None; under CI a missing URL is a failure, not a skip."""
    url = os.environ.get(POSTGRES_ENV)
    if url:
        return url
    if services_required():
        raise RuntimeError(
            f"{POSTGRES_ENV} must be set in CI: the vault's PostgreSQL tests may not be skipped"
        )
    return None


def require_postgres_url() -> str:
    """For pytest: the URL, or ``pytest.fail`` under CI / ``pytest.skip`` on a laptop."""
    import pytest

    url = os.environ.get(POSTGRES_ENV)
    if url:
        return url
    if services_required():
        pytest.fail(f"{POSTGRES_ENV} must be set in CI: the vault's PostgreSQL tests may not be skipped")
    pytest.skip(f"set {POSTGRES_ENV} to run the PostgreSQL variant")
    raise AssertionError("unreachable")


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A URL whose connections live in a fresh schema (dropped afterwards), so parallel tests never collide."""
    schema = f"vault_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base_url else "?"
    url = f"{base_url}{sep}options={quote(f'-csearch_path={schema}')}"
    try:
        yield url
    finally:
        from tongbu.db import dispose_engines

        dispose_engines()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


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
