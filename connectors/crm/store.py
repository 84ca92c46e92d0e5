"""Writing to and reading from the CRM hub: idempotent bulk upserts keyed by source identity.

The upsert is the hot path of every sync, so it is one ``INSERT .. ON CONFLICT DO UPDATE .. WHERE
row_hash <> excluded.row_hash`` statement executed with ``executemany`` per batch: new rows are
inserted, changed rows updated, and unchanged rows (a lookback window or a full re-sync re-reading
them) cost one index probe and write nothing. The same statement works on SQLite and PostgreSQL;
other dialects fall back to a slower select-then-write path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, DateTime, Engine, Table, and_, bindparam, func, null, select, text, update
from sqlalchemy.sql.elements import ColumnElement

from connectors.crm.models import CHILD_OBJECTS, HUB_OBJECTS, RecordLink
from tongbu.config import DEFAULT_TENANT

LINES_KEY = "__lines__"
_KEY_COLUMNS = ("tenant_id", "source_system", "source_id")
_NOT_HASHED = frozenset({"tenant_id", "source_system", "source_id", "row_hash", LINES_KEY})


# SQLite keeps DATETIME as text and compares it as text, so hub timestamps must be written in the
# exact form SQLAlchemy binds ("YYYY-MM-DD HH:MM:SS.ffffff"); CURRENT_TIMESTAMP has no fraction and
# would compare wrongly against bound values (tap-crm's (updated_at, id) bookmark relies on this).
_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"


class HubError(ValueError):
    """A write the hub cannot accept (unknown object or column); names what is wrong."""


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
    """Rows of one object ready to write: SQLite ``(source_id, converted values)`` pairs, or mapped rows."""

    object_name: str
    source_system: str
    received: int
    sql: str | None = None
    tuples: list[tuple[str, Any]] | None = None
    rows: list[dict[str, Any]] | None = None

    @property
    def source_ids(self) -> list[str]:
        """Source ids of the batch's rows."""
        if self.tuples is not None:
            return [t[0] for t in self.tuples]
        return [str(r["source_id"]) for r in self.rows or ()]


def _canon(value: Any) -> str:
    # A stable text form per type so the hash does not depend on float repr quirks or tz objects.
    if value is None:
        return "\x00"
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return repr(value)


def row_hash(row: dict[str, Any], columns: Sequence[str]) -> str:
    """Hash of a row's business fields (and its lines), used to skip unchanged rows.

    Mapped values are deterministic per source (the engine normalises datetimes to UTC, numbers to
    one type), so the ``repr`` of the value tuple is a stable and much cheaper input than per-type
    canonical text; this is on the hot path of every record.
    """
    key = repr(tuple([row.get(c) for c in columns]))
    lines = row.get(LINES_KEY)
    if lines:
        # Lines are part of the order: a changed line makes the order a changed row too.
        key += repr(sorted(repr(sorted((k, _canon(v)) for k, v in line.items())) for line in lines))
    return hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()


def hub_table(object_name: str) -> Table:
    """The table of a hub object, with a clear error for an unknown name."""
    cls = HUB_OBJECTS.get(object_name)
    if cls is None:
        raise HubError(f"unknown CRM object {object_name!r}; known objects: {', '.join(sorted(HUB_OBJECTS))}")
    return cls.__table__  # type: ignore[attr-defined]


class HubStore:
    """Bulk, idempotent writes into the hub for one tenant.

    ``upsert`` takes mapped rows (dicts keyed by hub column, each with ``source_id``) and an open
    connection: the caller owns the transaction, so the runner commits rows and cursor together.
    """

    def __init__(self, engine: Engine, tenant: str = DEFAULT_TENANT) -> None:
        self.engine = engine
        self.tenant = tenant
        self._dialect = engine.dialect.name
        self._stmts: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._raw: dict[tuple[str, tuple[str, ...]], tuple[str, list[tuple[str, Any]]]] = {}

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

        On SQLite this builds the final parameter tuples (values converted, row hash computed), so a
        reader process can do it in parallel with the process that writes; the batch pickles cheaply.
        """
        batch = PreparedBatch(object_name, source_system, len(rows))
        if not rows:
            return batch
        table = hub_table(object_name)
        columns = self._columns(table, rows[0])
        if self._dialect == "sqlite" and not any(LINES_KEY in r for r in rows):
            batch.sql, batch.tuples = self._sqlite_tuples(table, columns, rows, source_system)
        else:
            batch.rows = list(rows)
        return batch

    def write(self, conn: Connection, batch: PreparedBatch) -> UpsertResult:
        """Write a prepared batch in the caller's transaction."""
        result = UpsertResult(received=batch.received)
        if batch.tuples is not None:
            # The row hash is computed here rather than in ``prepare``: with a reader process this
            # balances the Python work between the two processes.
            tenant, system, md5 = self.tenant, batch.source_system, hashlib.md5
            params = [
                (tenant, system, sid, md5(repr(vals).encode(), usedforsecurity=False).hexdigest(), *vals)
                for sid, vals in batch.tuples
            ]
            cursor = conn.connection.driver_connection.cursor()  # same connection, same transaction
            try:
                cursor.executemany(batch.sql, params)
                result.written = max(cursor.rowcount, 0)
            finally:
                cursor.close()
            return result
        rows = batch.rows or []
        if not rows:
            return result
        table = hub_table(batch.object_name)
        columns = self._columns(table, rows[0])
        params = self._params(rows, columns, batch.source_system)
        result.written = self._execute_upsert(conn, table, columns, params)
        child = CHILD_OBJECTS.get(batch.object_name)
        if child is not None and any(LINES_KEY in r for r in rows):
            self._upsert_lines(conn, table, child, rows, batch.source_system, result)
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

    def resolver(self, conn: Connection) -> Callable[[str, str, Any], Any]:
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
        return tuple(k for k in sample if k not in _NOT_HASHED)

    def _params(
        self, rows: Sequence[dict[str, Any]], columns: Sequence[str], source_system: str
    ) -> list[dict]:
        tenant = self.tenant
        out = []
        for r in rows:
            p = {c: r.get(c) for c in columns}
            p["tenant_id"] = tenant
            p["source_system"] = source_system
            p["source_id"] = str(r["source_id"])
            p["row_hash"] = row_hash(r, columns)
            out.append(p)
        return out

    def _statement(
        self, table: Table, columns: tuple[str, ...], extra: dict[str, ColumnElement] | None = None
    ):
        key = (table.name, columns + tuple(sorted(extra or ())))
        stmt = self._stmts.get(key)
        if stmt is not None:
            return stmt
        if self._dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            return None
        all_cols = (*_KEY_COLUMNS, "row_hash", *columns)
        values: dict[str, Any] = {c: bindparam(c) for c in all_cols}
        values.update(extra or {})
        values.update(created_at=self._now(), updated_at=self._now())
        ins = insert(table).values(values)
        set_ = {c: ins.excluded[c] for c in ("row_hash", *columns, *(extra or {}))}
        set_["updated_at"] = self._now()
        set_["deleted_at"] = null()  # a literal NULL, not a bound parameter
        stmt = ins.on_conflict_do_update(
            index_elements=list(_KEY_COLUMNS), set_=set_, where=table.c.row_hash != ins.excluded.row_hash
        )
        self._stmts[key] = stmt
        return stmt

    def _execute_upsert(
        self,
        conn: Connection,
        table: Table,
        columns: tuple[str, ...],
        params: list[dict],
        extra: dict[str, ColumnElement] | None = None,
    ) -> int:
        stmt = self._statement(table, columns, extra)
        if stmt is None:
            return self._generic_upsert(conn, table, params)
        if self._dialect == "postgresql":
            # psycopg2's executemany rowcount is unreliable; RETURNING gives one row per written row.
            return len(conn.execute(stmt.returning(table.c.id), params).all())
        return max(conn.execute(stmt, params).rowcount, 0)

    def _sqlite_tuples(
        self, table: Table, columns: tuple[str, ...], rows: Sequence[dict[str, Any]], source_system: str
    ) -> tuple[str, list[tuple[str, Any]]]:
        # The hot path. SQLAlchemy's per-row parameter handling costs more than SQLite's own insert,
        # so the statement is built once per column set and positional tuples go straight to the
        # driver (``write``), on the same connection and therefore in the caller's transaction. Values pass
        # through the columns' own SQLAlchemy bind processors, so rows read back exactly as if
        # SQLAlchemy had written them, and the hash is taken over those processed values (cheap
        # to repr: text and numbers).
        key = (table.name, columns)
        plan = self._raw.get(key)
        if plan is None:
            dialect = self.engine.dialect
            procs = [
                _sqlite_datetime
                if isinstance(table.c[c].type, DateTime)
                else table.c[c].type._cached_bind_processor(dialect)
                for c in columns
            ]
            names = ", ".join(
                f'"{c}"' for c in ("tenant_id", "source_system", "source_id", "row_hash", *columns)
            )
            marks = ", ".join("?" * (4 + len(columns)))
            sets = ", ".join(f'"{c}" = excluded."{c}"' for c in ("row_hash", *columns))
            sql = (
                f'INSERT INTO "{table.name}" ({names}, created_at, updated_at) '
                f"VALUES ({marks}, {_SQLITE_NOW}, {_SQLITE_NOW}) "
                f"ON CONFLICT (tenant_id, source_system, source_id) DO UPDATE SET {sets}, "
                f"updated_at = {_SQLITE_NOW}, deleted_at = NULL "
                f'WHERE "{table.name}".row_hash IS NOT excluded.row_hash'
            )
            converters = [(i, proc) for i, proc in enumerate(procs) if proc is not None]
            getter = operator.itemgetter(*columns) if len(columns) > 1 else (lambda r, c=columns[0]: (r[c],))
            plan = (sql, getter, converters, list(zip(columns, procs, strict=True)))
            self._raw[key] = plan
        sql, getter, converters, by_name = plan
        out = []
        append = out.append
        for r in rows:
            try:
                vals = getter(r)  # one C call for all columns
            except KeyError:  # a row without some column: it is NULL there
                vals = tuple(r.get(c) for c, _ in by_name)
            if converters:
                vals = list(vals)
                for i, proc in converters:
                    v = vals[i]
                    if v is not None:
                        vals[i] = proc(v)
            sid = r["source_id"]
            append((sid if type(sid) is str else str(sid), vals))
        return sql, out

    def db_now(self, conn: Connection) -> dt.datetime:
        """The database's clock, at the precision hub timestamps are written with (aware, UTC)."""
        value = conn.execute(select(self._now())).scalar()
        if isinstance(value, str):  # SQLite returns text
            value = dt.datetime.fromisoformat(value)
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)

    def _now(self) -> Any:
        """SQL for "now" in the form the dialect compares correctly with bound datetimes."""
        return text(_SQLITE_NOW) if self._dialect == "sqlite" else func.current_timestamp()

    def _generic_upsert(self, conn: Connection, table: Table, params: list[dict]) -> int:
        written = 0
        for p in params:
            existing = conn.execute(
                select(table.c.id, table.c.row_hash).where(*(table.c[k] == p[k] for k in _KEY_COLUMNS))
            ).first()
            if existing is None:
                conn.execute(table.insert().values(**p))
                written += 1
            elif existing.row_hash != p["row_hash"]:
                conn.execute(
                    table.update()
                    .where(table.c.id == existing.id)
                    .values(**p, updated_at=self._now(), deleted_at=None)
                )
                written += 1
        return written

    def _upsert_lines(
        self,
        conn: Connection,
        parent: Table,
        child: tuple[str, str],
        rows: Sequence[dict],
        source_system: str,
        result: UpsertResult,
    ) -> None:
        child_name, parent_key = child
        table = hub_table(child_name)
        lines: list[dict[str, Any]] = []
        for r in rows:
            for line in r.get(LINES_KEY) or ():
                line = dict(line)
                line[parent_key] = str(r["source_id"])
                lines.append(line)
        if lines:
            columns = self._columns(table, lines[0])
            params = self._params(lines, columns, source_system)
            # The parent's hub id is looked up inside the statement, so lines never point at a stale id.
            order_id = (
                select(parent.c.id)
                .where(
                    parent.c.tenant_id == bindparam("tenant_id"),
                    parent.c.source_system == bindparam("source_system"),
                    parent.c.source_id == bindparam(parent_key),
                )
                .scalar_subquery()
            )
            result.lines_written += self._execute_upsert(conn, table, columns, params, {"order_id": order_id})
        # Lines that vanished from an order in the source are removed from the hub copy of that order.
        keep: dict[str, set[str]] = {str(r["source_id"]): set() for r in rows if LINES_KEY in r}
        for line in lines:
            keep[line[parent_key]].add(str(line["source_id"]))
        stale: list[int] = []
        for chunk in _chunks(list(keep), 500):
            for line_id, order_sid, sid in conn.execute(
                select(table.c.id, table.c[parent_key], table.c.source_id).where(
                    table.c.tenant_id == self.tenant,
                    table.c.source_system == source_system,
                    table.c[parent_key].in_(chunk),
                )
            ):
                if sid not in keep[order_sid]:
                    stale.append(line_id)
        for chunk in _chunks(stale, 500):
            result.lines_deleted += conn.execute(table.delete().where(table.c.id.in_(chunk))).rowcount


def _sqlite_datetime(value: dt.datetime) -> str:
    """SQLAlchemy's SQLite DATETIME text (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC), about 3x faster."""
    tz = value.tzinfo
    if tz is not None and tz is not dt.UTC:
        value = value.astimezone(dt.UTC)
    return value.isoformat(" ", "microseconds")[:26]


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
