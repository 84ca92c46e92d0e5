"""Database plumbing shared by the hub, the state store, the quarantine and the vault.

One declarative ``Base`` holds every table tongbu owns, so Alembic sees one metadata and a single
``upgrade head`` brings any database (SQLite or PostgreSQL) to the current schema without losing data.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import Engine, MetaData, Table, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from tongbu.config import database_url

# Stable constraint names keep migrations portable between SQLite (batch mode) and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base for every table tongbu owns."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    if TYPE_CHECKING:
        # SQLAlchemy types ``__table__`` as any FromClause (a class may be mapped to a select); every
        # tongbu model declares its columns, so declarative always builds a Table, and the stores use
        # ``Model.__table__`` with insert/update/delete.
        __table__: ClassVar[Table]


class HubDatabaseError(RuntimeError):
    """The hub database file is not a usable tongbu hub (empty, not SQLite, truncated, corrupt).

    The message names the file and what to do; the CLI prints it as one line and exits 2.
    """

    exit_code = 2


_SQLITE_MAGIC = b"SQLite format 3\x00"
_ADVICE = "restore it from a backup, or move it aside to start with a fresh hub"


def _bad_hub(path: str | Path, problem: str) -> HubDatabaseError:
    return HubDatabaseError(f"the hub database at {path} {problem}: {_ADVICE}")


def check_sqlite_file(path: str | Path) -> None:
    """Raise :class:`HubDatabaseError` when an existing SQLite hub file is visibly damaged.

    Reads only the 100-byte header (cheap, for every command): an empty file, a file that is not
    SQLite and a file shorter than its header says are refused instead of being silently rebuilt
    (an empty hub would mean a full re-sync and lost vault secrets). An absent file is fine: it is
    created as a new hub. Damage inside the pages shows up as a query error, see :func:`hub_error`.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _bad_hub(p, f"cannot be read ({exc.strerror})") from None
    if not p.is_file():
        raise _bad_hub(p, "is not a file")
    if size == 0 and time.time() - p.stat().st_mtime < 2:
        # Another process may be creating the hub right now (SQLite writes page 1 just after open).
        for _ in range(10):
            time.sleep(0.05)
            size = p.stat().st_size
            if size:
                break
    if size == 0:
        raise _bad_hub(p, "is empty (0 bytes), not a tongbu hub")
    try:
        with p.open("rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        raise _bad_hub(p, f"cannot be read ({exc.strerror})") from None
    if not header.startswith(_SQLITE_MAGIC) or len(header) < 100:
        raise _bad_hub(p, "is not a valid tongbu hub (not an SQLite database)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The in-header page count is valid when the change counter matches "version-valid-for".
    if page_size < 512 or page_size & (page_size - 1):
        raise _bad_hub(p, "is corrupt (bad page size in its header)")
    if header[24:28] == header[92:96] and pages and size < pages * page_size:
        raise _bad_hub(p, f"is truncated ({size:,} of {pages * page_size:,} bytes)")
    if size % page_size:
        raise _bad_hub(p, "is truncated (not a whole number of pages)")


_CORRUPT_MARKERS = ("file is not a database", "database disk image is malformed", "file is encrypted")


def hub_error(exc: BaseException, url: str | None = None) -> HubDatabaseError | None:
    """The :class:`HubDatabaseError` an exception stands for (a corrupt SQLite hub), else None."""
    if isinstance(exc, HubDatabaseError):
        return exc
    from sqlalchemy.exc import DatabaseError

    seen: BaseException | None = exc
    while seen is not None:
        text = str(getattr(seen, "orig", None) or seen)
        if isinstance(seen, DatabaseError | sqlite3.DatabaseError) and any(
            m in text for m in _CORRUPT_MARKERS
        ):
            where = _sqlite_path(url or database_url()) or (url or "the configured URL")
            return _bad_hub(where, "is corrupt (" + text.splitlines()[0][:80] + ")")
        seen = seen.__cause__ or seen.__context__
    return None


def _sqlite_path(url: str) -> str | None:
    if not url.startswith("sqlite") or "///" not in url:
        return None
    path = url.split("///", 1)[-1]
    return path if path and path != ":memory:" else None


_engines: dict[str, Engine] = {}
_lock = threading.Lock()
_migrated: set[str] = set()


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - exercised through every SQLite test
    cur = dbapi_conn.cursor()
    # WAL lets Dagster's webserver read the hub while a sync writes; NORMAL sync is durable in WAL mode
    # across application crashes (only an OS crash can lose the last commit, never corrupt the file).
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    # A 64 MB page cache keeps the hub's indexes in memory during bulk upserts of millions of rows.
    cur.execute("PRAGMA cache_size=-65536")
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.close()


class UnsupportedDatabase(ValueError):
    """The database URL names a backend tongbu does not run on."""


#: Backends the hub, state store, quarantine and vault are built and tested for.
SUPPORTED_BACKENDS = ("sqlite", "postgresql")


def check_backend(url: str) -> None:
    """Refuse (one line) a URL whose backend tongbu does not support, before any driver is loaded.

    MySQL/MariaDB in particular: the hub's bulk upsert, its row-hash guard and the migrations are
    written and tested for SQLite and PostgreSQL only; a half-working hub would be worse than a
    clear refusal.
    """
    try:
        backend = make_url(url).get_backend_name()
    except Exception:  # noqa: BLE001 - any unparsable URL: the same one line, without echoing secrets
        raise UnsupportedDatabase("the database URL is not a valid SQLAlchemy URL") from None
    if backend not in SUPPORTED_BACKENDS:
        raise UnsupportedDatabase(unsupported_backend_message(backend))


def unsupported_backend_message(backend: str) -> str:
    """The one line a user sees when the database is neither SQLite nor PostgreSQL."""
    return (
        f"tongbu runs on SQLite or PostgreSQL, not {backend}: point TONGBU_DATABASE_URL (or "
        "database_url) at a postgresql+psycopg2:// or sqlite:/// URL"
    )


def make_engine(url: str | None = None) -> Engine:
    """Create (or reuse) the engine for ``url``; SQLite gets WAL and a busy timeout."""
    url = url or database_url()
    check_backend(url)
    with _lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        if url.startswith("sqlite"):
            path = _sqlite_path(url)
            if path:
                check_sqlite_file(path)
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        _engines[url] = engine
        return engine


def dispose_engines() -> None:
    """Close every cached engine (tests and forked workers call this)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _migrated.clear()


def get_engine(url: str | None = None, *, migrate: bool = True) -> Engine:
    """Return the engine for ``url`` after bringing its schema to the latest migration."""
    engine = make_engine(url)
    key = str(engine.url)
    if migrate and key not in _migrated:
        try:
            _migrate_once(engine)
        except Exception as exc:
            bad = hub_error(exc, key)
            if bad is not None:
                raise bad from None
            raise
        _migrated.add(key)
    return engine


log = logging.getLogger(__name__)

# Session-level advisory lock key on PostgreSQL ("tongbumg" as a signed 64-bit integer).
MIGRATION_LOCK_KEY = int.from_bytes(b"tongbumg", "big")
MIGRATION_LOCK_WAIT = "10min"


def _migrate_once(engine: Engine) -> bool:
    """Upgrade to heads unless current; on PostgreSQL one process at a time (the rest wait).

    Every process runs this on its first ``get_engine()``; when ten workers start at once on a fresh
    database, the advisory lock lets exactly one migrate, and the others find the schema current once
    they get the lock and do nothing. Returns whether this process changed the schema.
    """
    if engine.dialect.name != "postgresql":
        return _upgrade_if_behind(engine)
    with engine.connect() as lock_conn:
        try:
            with lock_conn.begin():
                lock_conn.execute(text(f"SET LOCAL lock_timeout = '{MIGRATION_LOCK_WAIT}'"))
                lock_conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        except OperationalError:
            raise RuntimeError(
                f"another process has been migrating database {engine.url.database!r} for "
                f"{MIGRATION_LOCK_WAIT}; check it (pg_stat_activity) before retrying"
            ) from None
        try:
            return _upgrade_if_behind(engine)
        finally:
            lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
            lock_conn.commit()


def _upgrade_if_behind(engine: Engine) -> bool:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from tongbu.migrate import alembic_config, upgrade_to_head

    heads = set(ScriptDirectory.from_config(alembic_config(engine)).get_heads())
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    if current == heads:
        return False
    upgrade_to_head(engine)
    log.info("upgraded the database schema from %s to %s", sorted(current) or "empty", sorted(heads))
    return True


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A transactional ORM session: commit on success, roll back on any error."""
    factory = sessionmaker(bind=engine or get_engine(), expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
