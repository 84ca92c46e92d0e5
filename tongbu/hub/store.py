"""Writing to and reading from the CRM hub: idempotent bulk upserts keyed by source identity.

The upsert is the hot path of every sync. Each batch is written with one hash-guarded statement:
new rows are inserted, changed rows updated, and unchanged rows (a lookback window or a full
re-sync re-reading them) cost one index probe and write nothing.

* **SQLite**: ``INSERT .. ON CONFLICT DO UPDATE .. WHERE row_hash IS NOT excluded.row_hash`` with
  positional tuples handed straight to ``sqlite3.executemany``.
* **PostgreSQL**: the batch is ``COPY``-ed into a per-connection temporary staging table, then one
  ``INSERT .. SELECT .. ON CONFLICT DO UPDATE .. WHERE row_hash IS DISTINCT FROM excluded.row_hash``
  moves it into the hub; order lines the same way (their order's id joined in the statement), and
  vanished lines removed with one ``DELETE .. USING``. All of it on the caller's connection, so rows,
  cursor, quarantine and lock renewal still commit in one transaction.
* **Other dialects** (MySQL/MariaDB, …) are refused with one clear error (:class:`HubError`): they
  have no tested bulk path, and a silently slow or subtly different hub is worse than none.

``row_hash`` is **canonical**: it is computed from the mapped values after a per-column-type
normalisation that does not depend on the database (numbers as normalised decimal text, datetimes as
UTC with microseconds, naive ones taken as UTC, booleans as 0/1, JSON with sorted keys, columns in
name order), so identical rows hash the same on SQLite and PostgreSQL and a hub can move between them
without rewriting every row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    Date,
    DateTime,
    Engine,
    Integer,
    Numeric,
    Table,
    and_,
    func,
    select,
    text,
    update,
)

from tongbu.config import DEFAULT_TENANT
from tongbu.db import SUPPORTED_BACKENDS, unsupported_backend_message
from tongbu.hub.models import CHILD_OBJECTS, HUB_OBJECTS, RecordLink

LINES_KEY = "__lines__"
_KEY_COLUMNS = ("tenant_id", "source_system", "source_id")
_NOT_HASHED = frozenset({"tenant_id", "source_system", "source_id", "row_hash", LINES_KEY})


# SQLite keeps DATETIME as text and compares it as text, so hub timestamps must be written in the
# exact form SQLAlchemy binds ("YYYY-MM-DD HH:MM:SS.ffffff"); CURRENT_TIMESTAMP has no fraction and
# would compare wrongly against bound values (tap-crm's (updated_at, id) bookmark relies on this).
_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"


class HubError(ValueError):
    """A write the hub cannot accept (unknown object or column, unstorable value); names what is wrong."""


@dataclass
class UpsertResult:
    """What one upsert call did. ``written`` counts inserted + changed rows."""

    received: int = 0
    written: int = 0
    lines_written: int = 0
    lines_deleted: int = 0

    @property
    def unchanged(self) -> int:
        """Rows that were already in the hub with identical content."""
        return self.received - self.written

    def add(self, other: UpsertResult) -> None:
        """Accumulate another result into this one."""
        self.received += other.received
        self.written += other.written
        self.lines_written += other.lines_written
        self.lines_deleted += other.lines_deleted


@dataclass
class PreparedBatch:
    """Rows of one object ready to write, built without touching the database (it pickles cheaply).

    ``tuples`` are ``(source_id, values)`` with values in the order of ``columns``, normalised (and
    on SQLite already in the form the driver takes); ``hashes`` are their row hashes when ``prepare``
    had to compute them (otherwise ``write`` does, from the values). ``lines`` is the prepared batch
    of order lines and ``with_lines`` the source ids of the orders whose line set is authoritative in
    this batch.
    """

    object_name: str
    source_system: str
    received: int
    columns: tuple[str, ...] = ()
    tuples: list[tuple[str, Any]] | None = None
    hashes: list[str] | None = None
    lines: PreparedBatch | None = None
    with_lines: list[str] = field(default_factory=list)

    @property
    def source_ids(self) -> list[str]:
        """Source ids of the batch's rows."""
        return [t[0] for t in self.tuples or ()]


# -- canonical values (the row hash's input) ---------------------------------------------------
def _canon_datetime(value: Any) -> str:
    """UTC ``YYYY-MM-DD HH:MM:SS.ffffff`` (naive = UTC); also the text SQLite stores."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    elif not isinstance(value, dt.datetime):
        if isinstance(value, dt.date):
            value = dt.datetime(value.year, value.month, value.day)
        else:
            raise TypeError(f"not a datetime: {value!r}")
    tz = value.tzinfo
    if tz is not None and tz is not dt.UTC:
        value = value.astimezone(dt.UTC)
    return value.isoformat(" ", "microseconds")[:26]


def _canon_date(value: Any) -> str:
    if isinstance(value, str):
        value = dt.date.fromisoformat(value[:10])
    if isinstance(value, dt.datetime):
        value = value.date()
    if not isinstance(value, dt.date):
        raise TypeError(f"not a date: {value!r}")
    return value.isoformat()


def _canon_number(value: Any) -> str:
    """Normalised decimal text: ``10.50``, ``10.5`` and ``Decimal('1.05E+1')`` are all ``10.5``."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        value = Decimal(repr(value))
    elif not isinstance(value, Decimal):
        value = Decimal(str(value).strip())
    if value.is_finite():
        if value == 0:
            return "0"
        return format(value.normalize(), "f")
    return str(value)


def _canon_int(value: Any) -> int:
    if type(value) is int:
        return value
    if isinstance(value, bool | int):
        return int(value)
    number = Decimal(str(value).strip()) if not isinstance(value, float | Decimal) else Decimal(value)
    if number != number.to_integral_value():
        raise ValueError(f"not an integer: {value!r}")
    return int(number)


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return _canon_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return _canon_number(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _canon_json(value: Any) -> str:
    """JSON text with sorted keys and no spaces; also the text the database stores."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _canon_proc(coltype: Any) -> Callable[[Any], Any] | None:
    """The normaliser of a column type; ``None`` for text, which is hashed and stored as given."""
    if isinstance(coltype, DateTime):
        return _canon_datetime
    if isinstance(coltype, Date):
        return _canon_date
    if isinstance(coltype, Boolean | Integer):
        return _canon_int
    if isinstance(coltype, Numeric):
        return _canon_number
    if isinstance(coltype, JSON):
        return _canon_json
    return None


def _canon_value(value: Any) -> Any:
    """Normalise a value by its Python type (snapshots and other rows without a table)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float | Decimal):
        return _canon_number(value)
    if isinstance(value, dt.datetime):
        return _canon_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict | list | tuple):
        return _canon_json(value)
    return repr(value)


def _digest(text_: str) -> str:
    return hashlib.md5(text_.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()


def row_hash(row: dict[str, Any], columns: Sequence[str] | None = None, table: Table | None = None) -> str:
    """Canonical hash of a row's business fields (and its lines), used to skip unchanged rows.

    The input is ``repr`` of the column names in sorted order followed by the normalised values
    (by column type when ``table`` is given, else by value type), so it is the same whatever the
    database, the mapping's field order, the value's time zone or the JSON key order.
    """
    names = tuple(sorted(columns if columns is not None else (k for k in row if k not in _NOT_HASHED)))
    if table is not None:
        procs = [_canon_proc(table.c[c].type) if c in table.c else _canon_value for c in names]
        vals = tuple(
            v if (v := row.get(c)) is None or p is None else p(v) for c, p in zip(names, procs, strict=True)
        )
    else:
        vals = tuple(_canon_value(row.get(c)) for c in names)
    return _digest(repr(names) + repr(vals) + _lines_key(row.get(LINES_KEY), table))


def _lines_key(lines: Any, parent: Table | None) -> str:
    # Lines are part of the order: a changed line makes the order a changed row too.
    if not lines:
        return ""
    child = CHILD_OBJECTS.get(parent.name) if parent is not None else None
    table = hub_table(child[0]) if child is not None else None
    keys = []
    for line in lines:
        items = []
        for k in sorted(line):
            v = line[k]
            if v is not None:
                col = table.c.get(k) if table is not None else None
                p = _canon_proc(col.type) if col is not None else _canon_value
                if p is not None:
                    v = p(v)
            items.append((k, v))
        keys.append(repr(items))
    return repr(sorted(keys))


def hub_table(object_name: str) -> Table:
    """The table of a hub object, with a clear error for an unknown name."""
    cls = HUB_OBJECTS.get(object_name)
    if cls is None:
        raise HubError(f"unknown CRM object {object_name!r}; known objects: {', '.join(sorted(HUB_OBJECTS))}")
    return cls.__table__  # type: ignore[attr-defined]


@dataclass
class _Plan:
    """Everything per (table, column set) that does not change from batch to batch."""

    table: Table
    columns: tuple[str, ...]  # business columns, sorted by name (the hash's order too)
    prefix: str  # repr of the column names: the hash input starts with it
    getter: Callable[[dict[str, Any]], tuple[Any, ...]]
    canon: list[tuple[int, str, Callable[[Any], Any]]]  # (index, column, normaliser)
    db: list[tuple[int, Callable[[Any], Any]]]  # dialect conversions applied to canonical values
    sql: str = ""  # SQLite: the upsert; PostgreSQL: the INSERT .. SELECT from the staging table
    stage_sql: str = ""  # PostgreSQL: create-if-missing and empty the staging table
    copy_sql: str = ""  # PostgreSQL: COPY into the staging table
    direct_copy_sql: str = ""  # PostgreSQL: COPY straight into the hub table (top-level objects)
    direct: bool = True  # PostgreSQL: still trying direct COPY (no row of this store existed yet)


class HubResolver(Protocol):
    """A ``lookup`` step's resolver: the ``returning`` column (default the hub id) of the row whose ``by`` is ``value``."""

    def __call__(self, object_name: str, by: str, value: Any, returning: str = "id") -> Any:
        """Look one value up (cached per resolver)."""


class HubStore:
    """Bulk, idempotent writes into the hub for one tenant.

    ``upsert`` takes mapped rows (dicts keyed by hub column, each with ``source_id``) and an open
    connection: the caller owns the transaction, so the runner commits rows and cursor together.
    ``prepare`` (no database) and ``write`` (in the caller's transaction) are its two halves, so a
    reader process can do the per-row work while the writer writes.
    """

    def __init__(self, engine: Engine, tenant: str = DEFAULT_TENANT) -> None:
        self.engine = engine
        self.tenant = tenant
        self._dialect = engine.dialect.name
        if self._dialect not in SUPPORTED_BACKENDS:
            raise HubError(unsupported_backend_message(self._dialect))
        self._plans: dict[tuple[str, tuple[str, ...]], _Plan] = {}

    # -- writes ---------------------------------------------------------------------------------
    def upsert(
        self, conn: Connection, object_name: str, rows: Sequence[dict[str, Any]], *, source_system: str
    ) -> UpsertResult:
        """Insert new rows, update changed ones, skip unchanged ones; returns the counts."""
        return self.write(conn, self.prepare(object_name, rows, source_system=source_system))

    def prepare(
        self, object_name: str, rows: Sequence[dict[str, Any]], *, source_system: str
    ) -> PreparedBatch:
        """Do the per-row work of an upsert without touching the database.

        Values are normalised (the canonical form the hash is taken over) and converted to what the
        driver takes; order lines become a prepared child batch. The result pickles cheaply, so a
        reader process can do this in parallel with the process that writes.
        """
        batch = PreparedBatch(object_name, source_system, len(rows))
        if not rows:
            return batch
        table = hub_table(object_name)
        plan = self._plan(table, self._columns(table, rows[0]))
        batch.columns = plan.columns
        child = CHILD_OBJECTS.get(object_name)
        has_lines = child is not None and any(LINES_KEY in r for r in rows)
        # PostgreSQL's conversions to COPY text happen in ``write``: with a reader process the
        # writer mostly waits on the server, so it has the time the reader does not.
        batch.tuples, batch.hashes = self._tuples(
            plan, rows, with_lines=has_lines, apply_db=self._dialect == "sqlite"
        )
        if has_lines:
            assert child is not None
            child_name, parent_key = child
            lines: list[dict[str, Any]] = []
            for r in rows:
                if LINES_KEY not in r:
                    continue
                sid = str(r["source_id"])
                batch.with_lines.append(sid)
                for line in r[LINES_KEY] or ():
                    line = dict(line)
                    line[parent_key] = sid
                    lines.append(line)
            batch.lines = self.prepare(child_name, lines, source_system=source_system)
        return batch

    def write(self, conn: Connection, batch: PreparedBatch) -> UpsertResult:
        """Write a prepared batch in the caller's transaction."""
        result = UpsertResult(received=batch.received)
        if not batch.tuples:
            return result
        table = hub_table(batch.object_name)
        plan = self._plan(table, batch.columns)
        result.written = self._write_tuples(conn, plan, batch, None)
        child = CHILD_OBJECTS.get(batch.object_name)
        if child is not None and batch.with_lines:
            lines = batch.lines
            if lines is not None and lines.tuples:
                child_plan = self._plan(hub_table(lines.object_name), lines.columns)
                result.lines_written = self._write_tuples(conn, child_plan, lines, (table, child[1]))
            result.lines_deleted = self._delete_stale_lines(conn, batch, child)
        return result

    def mark_deleted(
        self,
        conn: Connection,
        object_name: str,
        source_ids: Iterable[str],
        *,
        source_system: str,
        only_if: Callable[[Table], Sequence[Any]] | None = None,
    ) -> int:
        """Soft-delete rows that disappeared from the source (WeCom rescans, ERP deletions).

        ``only_if(table)`` adds conditions checked in the same UPDATE (e.g. "not written since the
        scan began"), so a row another writer changed after the caller chose it is never deleted.
        """
        table = hub_table(object_name)
        ids = list(source_ids)
        extra = list(only_if(table)) if only_if is not None else []
        done = 0
        for chunk in _chunks(ids, 500):
            done += conn.execute(
                update(table)
                .where(
                    table.c.tenant_id == self.tenant,
                    table.c.source_system == source_system,
                    table.c.source_id.in_(chunk),
                    table.c.deleted_at.is_(None),
                    *extra,
                )
                .values(deleted_at=self._now(), updated_at=self._now())
            ).rowcount
        return done

    def link(
        self,
        conn: Connection,
        object_name: str,
        hub_id: int,
        system: str,
        external_id: str,
        snapshot: dict[str, Any] | None = None,
    ) -> None:
        """Record (or refresh) the id of hub row ``hub_id`` in ``system`` with its last synced snapshot."""
        t = RecordLink.__table__
        snap_hash = None if snapshot is None else row_hash(snapshot, sorted(snapshot))
        key = and_(
            t.c.tenant_id == self.tenant,
            t.c.object == object_name,
            t.c.system == system,
            t.c.external_id == external_id,
        )
        existing = conn.execute(select(t.c.id, t.c.version).where(key)).first()
        now = dt.datetime.now(dt.UTC)
        if existing is None:
            conn.execute(
                t.insert().values(
                    tenant_id=self.tenant,
                    object=object_name,
                    hub_id=hub_id,
                    system=system,
                    external_id=external_id,
                    snapshot=snapshot,
                    snapshot_hash=snap_hash,
                    version=1,
                    synced_at=now,
                )
            )
        else:
            conn.execute(
                t.update()
                .where(t.c.id == existing.id)
                .values(
                    hub_id=hub_id,
                    snapshot=snapshot,
                    snapshot_hash=snap_hash,
                    version=existing.version + 1,
                    synced_at=now,
                )
            )

    # -- reads ----------------------------------------------------------------------------------
    def count(
        self,
        conn: Connection,
        object_name: str,
        *,
        source_system: str | None = None,
        include_deleted: bool = False,
    ) -> int:
        """Number of rows of an object (optionally from one source system)."""
        table = hub_table(object_name)
        q = select(func.count()).select_from(table).where(table.c.tenant_id == self.tenant)
        if source_system is not None:
            q = q.where(table.c.source_system == source_system)
        if not include_deleted:
            q = q.where(table.c.deleted_at.is_(None))
        return int(conn.execute(q).scalar_one())

    def get(
        self, conn: Connection, object_name: str, source_system: str, source_id: str
    ) -> dict[str, Any] | None:
        """One hub row by its source identity, as a dict."""
        table = hub_table(object_name)
        row = (
            conn.execute(
                select(table).where(
                    table.c.tenant_id == self.tenant,
                    table.c.source_system == source_system,
                    table.c.source_id == source_id,
                )
            )
            .mappings()
            .first()
        )
        return dict(row) if row is not None else None

    def resolver(self, conn: Connection) -> HubResolver:
        """A cached ``(object, by_field, value) -> hub id`` lookup for mapping ``lookup`` steps."""
        cache: dict[tuple[str, str, Any], Any] = {}

        def resolve(object_name: str, by: str, value: Any, returning: str = "id") -> Any:
            key = (object_name, f"{by}->{returning}", value)
            if key not in cache:
                table = hub_table(object_name)
                if by not in table.c or returning not in table.c:
                    raise HubError(f"lookup on {object_name!r}: no column {by!r} or {returning!r}")
                cache[key] = conn.execute(
                    select(table.c[returning])
                    .where(table.c.tenant_id == self.tenant, table.c[by] == value)
                    .limit(1)
                ).scalar()
            return cache[key]

        return resolve

    # -- internals ------------------------------------------------------------------------------
    def _columns(self, table: Table, sample: dict[str, Any]) -> tuple[str, ...]:
        unknown = [k for k in sample if k != LINES_KEY and k not in table.c]
        if unknown:
            raise HubError(f"CRM object {table.name!r} has no column(s) {', '.join(sorted(unknown))}")
        if "source_id" not in sample:
            raise HubError(f"rows for {table.name!r} need a source_id")
        return tuple(sorted(k for k in sample if k not in _NOT_HASHED))

    def _plan(self, table: Table, columns: tuple[str, ...]) -> _Plan:
        key = (table.name, columns)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        canon, db = [], []
        for i, c in enumerate(columns):
            coltype = table.c[c].type
            proc = _canon_proc(coltype)
            if proc is not None:
                canon.append((i, c, proc))
            # What the driver takes, from the canonical value: SQLite stores the canonical text of
            # datetimes and JSON as is and numbers as REAL (as SQLAlchemy does); COPY takes text.
            if self._dialect == "sqlite" and isinstance(coltype, Numeric):
                db.append((i, float))
            elif self._dialect == "postgresql" and isinstance(coltype, Boolean | Integer):
                db.append((i, str))
            elif self._dialect == "postgresql" and isinstance(coltype, DateTime) and coltype.timezone:
                # The canonical text is UTC without an offset; say so, whatever the session's zone.
                db.append((i, _utc_text))
        getter: Callable[[dict[str, Any]], tuple[Any, ...]]
        if len(columns) > 1:
            getter = operator.itemgetter(*columns)
        elif columns:
            getter = lambda r, c=columns[0]: (r[c],)  # noqa: E731 - itemgetter of one key gives no tuple
        else:  # a row that carries only its identity (source_id)
            getter = lambda r: ()  # noqa: E731
        plan = _Plan(table, columns, repr(columns), getter, canon, db)
        if self._dialect == "sqlite":
            self._sqlite_sql(plan)
        else:
            self._postgres_sql(plan)
        self._plans[key] = plan
        return plan

    def _tuples(
        self, plan: _Plan, rows: Sequence[dict[str, Any]], *, with_lines: bool, apply_db: bool = True
    ) -> tuple[list[tuple[str, Any]], list[str] | None]:
        # The hot path: one C call gathers a row's values; only non-text columns get normalised.
        getter, canon, db, prefix, columns = plan.getter, plan.canon, plan.db, plan.prefix, plan.columns
        # The hash is taken here only when it cannot be taken from the stored values in ``write``
        # (those differ from the canonical ones, or lines are part of it); otherwise ``write`` does
        # it, which balances the Python work between a reader process and the writer.
        db = db if apply_db else []
        hash_here = bool(db) or with_lines
        parent = plan.table if with_lines else None
        out: list[tuple[str, Any]] = []
        hashes: list[str] | None = [] if hash_here else None
        append = out.append
        for r in rows:
            try:
                vals = getter(r)
            except KeyError:  # a row without some column: it is NULL there
                vals = tuple([r.get(c) for c in columns])
            if canon:
                vals = list(vals)
                for i, c, proc in canon:
                    v = vals[i]
                    if v is not None:
                        try:
                            vals[i] = proc(v)
                        except (TypeError, ValueError, ArithmeticError, InvalidOperation) as exc:
                            raise HubError(
                                f"{plan.table.name}.{c} of source id {r.get('source_id')!r}: "
                                f"cannot store {v!r} ({exc})"
                            ) from None
                vals = tuple(vals)
            if hashes is not None:
                lines = _lines_key(r.get(LINES_KEY), parent) if with_lines else ""
                hashes.append(_digest(prefix + repr(vals) + lines))
                if db:
                    vals = list(vals)
                    for i, proc in db:
                        if vals[i] is not None:
                            vals[i] = proc(vals[i])
                    vals = tuple(vals)
            sid = r["source_id"]
            append((sid if type(sid) is str else str(sid), vals))
        return out, hashes

    def _write_tuples(
        self, conn: Connection, plan: _Plan, batch: PreparedBatch, parent: tuple[Table, str] | None
    ) -> int:
        tuples = batch.tuples or []
        hashes = batch.hashes
        if hashes is None:
            prefix, md5 = plan.prefix, hashlib.md5
            hashes = [
                md5((prefix + repr(vals)).encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()
                for _, vals in tuples
            ]
        cursor = conn.connection.driver_connection.cursor()  # same connection, same transaction
        try:
            if self._dialect == "sqlite":
                tenant, system = self.tenant, batch.source_system
                if parent is None:
                    params = [
                        (tenant, system, sid, h, *vals) for (sid, vals), h in zip(tuples, hashes, strict=True)
                    ]
                else:
                    at = plan.columns.index(parent[1])
                    params = [
                        (tenant, system, sid, h, *vals, tenant, system, vals[at])
                        for (sid, vals), h in zip(tuples, hashes, strict=True)
                    ]
                cursor.executemany(plan.sql, params)
                return max(cursor.rowcount, 0)
            return self._write_copy(cursor, plan, batch, tuples, hashes, direct=parent is None)
        finally:
            cursor.close()

    def _write_copy(
        self,
        cursor: Any,
        plan: _Plan,
        batch: PreparedBatch,
        tuples: list[tuple[str, Any]],
        hashes: list[str],
        *,
        direct: bool,
    ) -> int:
        """PostgreSQL: COPY the batch, straight into the hub table while that works, else staged."""
        import psycopg2.errors

        if len({sid for sid, _ in tuples}) != len(tuples):
            # ON CONFLICT cannot touch one row twice in a statement: the last copy of a row wins, as it
            # would have with row-by-row upserts.
            keep = sorted({sid: i for i, (sid, _) in enumerate(tuples)}.values())
            tuples = [tuples[i] for i in keep]
            hashes = [hashes[i] for i in keep]
        if plan.db:
            converted = []
            for sid, vals in tuples:
                vals = list(vals)
                for i, proc in plan.db:
                    if vals[i] is not None:
                        vals[i] = proc(vals[i])
                converted.append((sid, vals))
            tuples = converted
        copy = _copy_text(self.tenant, batch.source_system, tuples, hashes, len(plan.columns))
        if direct and plan.direct:
            # While every row is new (a first sync, a new tenant), the batch goes straight in with
            # COPY: it is exactly what the upsert would do, at the database's own bulk speed. The
            # first row that already exists rolls the attempt back (a savepoint: the caller's
            # transaction is untouched) and from then on this store stages every batch.
            cursor.execute("SAVEPOINT tongbu_copy")
            try:
                cursor.copy_expert(plan.direct_copy_sql, io.StringIO(copy), size=_COPY_CHUNK)
            except psycopg2.errors.UniqueViolation:
                cursor.execute("ROLLBACK TO SAVEPOINT tongbu_copy")
                plan.direct = False
            else:
                cursor.execute("RELEASE SAVEPOINT tongbu_copy")
                return len(tuples)
        cursor.execute(plan.stage_sql)
        cursor.copy_expert(plan.copy_sql, io.StringIO(copy), size=_COPY_CHUNK)
        cursor.execute(plan.sql)
        return max(cursor.rowcount, 0)

    def _sqlite_sql(self, plan: _Plan) -> None:
        # SQLAlchemy's per-row parameter handling costs more than SQLite's own insert, so the
        # statement is built once per column set and positional tuples go straight to the driver.
        table, columns = plan.table, plan.columns
        names = ", ".join(f'"{c}"' for c in ("tenant_id", "source_system", "source_id", "row_hash", *columns))
        marks = ", ".join("?" * (4 + len(columns)))
        sets = ", ".join(f'"{c}" = excluded."{c}"' for c in ("row_hash", *columns))
        child_of = _parent_of(table.name)
        extra_col = extra_val = extra_set = ""
        if child_of is not None:
            # The order's hub id is looked up inside the statement, so a line never points at a stale id.
            extra_col, extra_set = ', "order_id"', ', "order_id" = excluded."order_id"'
            extra_val = (
                f', (SELECT id FROM "{child_of}" WHERE tenant_id = ? AND source_system = ? AND source_id = ?)'
            )
        plan.sql = (
            f'INSERT INTO "{table.name}" ({names}{extra_col}, created_at, updated_at) '
            f"VALUES ({marks}{extra_val}, {_SQLITE_NOW}, {_SQLITE_NOW}) "
            f"ON CONFLICT (tenant_id, source_system, source_id) DO UPDATE SET {sets}{extra_set}, "
            f"updated_at = {_SQLITE_NOW}, deleted_at = NULL "
            f'WHERE "{table.name}".row_hash IS NOT excluded.row_hash'
        )

    def _postgres_sql(self, plan: _Plan) -> None:
        from sqlalchemy.dialects import postgresql

        table, columns = plan.table, plan.columns
        dialect = postgresql.dialect()
        stage = f"tongbu_stage_{table.name}_{_digest(repr(columns))[:10]}"
        stage_cols = ['"tenant_id" text', '"source_system" text', '"source_id" text', '"row_hash" text']
        selects = ['s."tenant_id"', 's."source_system"', 's."source_id"', 's."row_hash"']
        for c in columns:
            coltype = table.c[c].type
            stage_cols.append(f'"{c}" {coltype.compile(dialect=dialect)}')
            selects.append(f's."{c}"')
        names = ", ".join(f'"{c}"' for c in ("tenant_id", "source_system", "source_id", "row_hash", *columns))
        sets = ", ".join(f'"{c}" = excluded."{c}"' for c in ("row_hash", *columns))
        child_of = _parent_of(table.name)
        extra_col = extra_set = join = ""
        if child_of is not None:
            extra_col, extra_set = ', "order_id"', ', "order_id" = excluded."order_id"'
            selects.append("p.id")
            join = (
                f' LEFT JOIN "{child_of}" p ON p.tenant_id = s.tenant_id AND p.source_system = s.source_system'
                ' AND p.source_id = s."order_source_id"'
            )
        # ON COMMIT DELETE ROWS empties the table when the transaction ends; the DELETE covers a
        # second batch of the same shape within one transaction. The table lives as long as the
        # connection, so a sync creates it once.
        plan.stage_sql = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} ({', '.join(stage_cols)}) ON COMMIT DELETE ROWS; "
            f"DELETE FROM {stage}"
        )
        copy_cols = ", ".join(
            ["tenant_id", "source_system", "source_id", "row_hash", *(f'"{c}"' for c in columns)]
        )
        plan.copy_sql = f"COPY {stage} ({copy_cols}) FROM STDIN"
        if child_of is None:  # lines need their order's id, which only the staged statement joins in
            plan.direct_copy_sql = f'COPY "{table.name}" ({copy_cols}) FROM STDIN'
        plan.sql = (
            f'INSERT INTO "{table.name}" AS t ({names}{extra_col}, created_at, updated_at) '
            f"SELECT {', '.join(selects)}, current_timestamp, current_timestamp FROM {stage} s{join} "
            f"ON CONFLICT (tenant_id, source_system, source_id) DO UPDATE SET {sets}{extra_set}, "
            "updated_at = current_timestamp, deleted_at = NULL "
            "WHERE t.row_hash IS DISTINCT FROM excluded.row_hash"
        )

    def _delete_stale_lines(self, conn: Connection, batch: PreparedBatch, child: tuple[str, str]) -> int:
        # Lines that vanished from an order in the source are removed from the hub copy of that order.
        child_name, parent_key = child
        table = hub_table(child_name)
        keep: dict[str, set[str]] = {sid: set() for sid in batch.with_lines}
        lines = batch.lines
        if lines is not None and lines.tuples:
            at = lines.columns.index(parent_key)
            for sid, vals in lines.tuples:
                keep[vals[at]].add(sid)
        stale: list[int] = []
        for chunk in _chunks(list(keep), 500):
            for line_id, order_sid, sid in conn.execute(
                select(table.c.id, table.c[parent_key], table.c.source_id).where(
                    table.c.tenant_id == self.tenant,
                    table.c.source_system == batch.source_system,
                    table.c[parent_key].in_(chunk),
                )
            ):
                if sid not in keep[order_sid]:
                    stale.append(line_id)
        deleted = 0
        for chunk in _chunks(stale, 500):
            deleted += conn.execute(table.delete().where(table.c.id.in_(chunk))).rowcount
        return deleted

    def db_now(self, conn: Connection) -> dt.datetime:
        """The database's clock, at the precision hub timestamps are written with (aware, UTC)."""
        value = conn.execute(select(self._now())).scalar()
        if isinstance(value, str):  # SQLite returns text
            value = dt.datetime.fromisoformat(value)
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)

    def _now(self) -> Any:
        """SQL for "now" in the form the dialect compares correctly with bound datetimes."""
        return text(_SQLITE_NOW) if self._dialect == "sqlite" else func.current_timestamp()


def _utc_text(value: str) -> str:
    return value + "+00"


def _parent_of(child_name: str) -> str | None:
    for parent, (child, _) in CHILD_OBJECTS.items():
        if child == child_name:
            return parent
    return None


_COPY_CHUNK = 1 << 22  # psycopg2 reads the COPY buffer in chunks of this many characters
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_field(value: Any) -> str:
    if value is None:
        return "\\N"
    return (value if type(value) is str else str(value)).translate(_COPY_ESCAPES)


def _copy_text(tenant: str, system: str, tuples: list[tuple[str, Any]], hashes: list[str], ncols: int) -> str:
    """The batch in COPY's text format, built with one ``join`` per row in the common case.

    Rows are joined without escaping first; counting tabs, newlines and backslashes over the whole
    batch (C speed) then proves no value needed escaping. If any did, the batch is rebuilt with every
    field escaped, which is exact for any text.
    """
    parts: list[str] = []
    append = parts.append
    nulls = 0
    for (sid, vals), h in zip(tuples, hashes, strict=True):
        try:
            append("\t".join((tenant, system, sid, h, *vals)))
        except TypeError:  # NULLs or non-text values in this row
            fields = []
            for v in vals:
                if v is None:
                    fields.append("\\N")
                    nulls += 1
                else:
                    fields.append(v if type(v) is str else str(v))
            append("\t".join((tenant, system, sid, h, *fields)))
    parts.append("")
    body = "\n".join(parts)
    rows = len(tuples)
    if (
        body.count("\t") != rows * (ncols + 3)
        or body.count("\n") != rows
        or body.count("\\") != nulls
        or "\r" in body
    ):
        head = f"{_copy_field(tenant)}\t{_copy_field(system)}\t"
        lines = [
            head + "\t".join((_copy_field(sid), h, *[_copy_field(v) for v in vals]))
            for (sid, vals), h in zip(tuples, hashes, strict=True)
        ]
        lines.append("")
        body = "\n".join(lines)
    return body


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
