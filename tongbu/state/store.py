"""The transactional state store: cursors, run locks and the quarantine.

Cursors are written with the caller's connection, inside the transaction that writes the rows they
cover, so a crash (even SIGKILL) leaves either both or neither: a resumed run re-reads at most one
uncommitted batch and the idempotent upsert absorbs it.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from tongbu.config import DEFAULT_TENANT
from tongbu.state.models import PipelineLockRow, QuarantinedRecord, SyncRun, SyncState

_STATE = SyncState.__table__
_LOCKS = PipelineLockRow.__table__
_QUAR = QuarantinedRecord.__table__
_RUNS = SyncRun.__table__


def jsonable(value: Any) -> Any:
    """Make a source record storable as JSON (quarantine payloads, cursors, snapshots)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class PipelineLocked(RuntimeError):
    """Another live run holds this pipeline's lock."""


class StateStore:
    """Cursors keyed by tenant × connection × stream × partition."""

    def __init__(self, engine: Engine, tenant: str = DEFAULT_TENANT) -> None:
        self.engine = engine
        self.tenant = tenant

    def get(
        self, conn: Connection, connection: str, stream: str, partition: str = ""
    ) -> dict[str, Any] | None:
        """The committed cursor, or None when the stream never synced (or was reset)."""
        return conn.execute(
            select(_STATE.c.cursor).where(
                _STATE.c.tenant_id == self.tenant,
                _STATE.c.connection == connection,
                _STATE.c.stream == stream,
                _STATE.c.partition == partition,
            )
        ).scalar()

    def put(
        self,
        conn: Connection,
        connection: str,
        stream: str,
        cursor: dict[str, Any] | None,
        partition: str = "",
    ) -> None:
        """Write a cursor in the caller's transaction."""
        key = (
            _STATE.c.tenant_id == self.tenant,
            _STATE.c.connection == connection,
            _STATE.c.stream == stream,
            _STATE.c.partition == partition,
        )
        done = conn.execute(update(_STATE).where(*key).values(cursor=cursor, updated_at=_now())).rowcount
        if not done:
            conn.execute(
                insert(_STATE).values(
                    tenant_id=self.tenant,
                    connection=connection,
                    stream=stream,
                    partition=partition,
                    cursor=cursor,
                    updated_at=_now(),
                )
            )

    def all(self, connection: str | None = None) -> list[dict[str, Any]]:
        """Every cursor of this tenant (for ``tongbu state show``)."""
        q = (
            select(_STATE)
            .where(_STATE.c.tenant_id == self.tenant)
            .order_by(_STATE.c.connection, _STATE.c.stream)
        )
        if connection:
            q = q.where(_STATE.c.connection == connection)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def reset(self, connection: str, stream: str | None = None) -> int:
        """Forget cursors so the next run re-reads from the start; returns how many were removed."""
        q = delete(_STATE).where(_STATE.c.tenant_id == self.tenant, _STATE.c.connection == connection)
        if stream:
            q = q.where(_STATE.c.stream == stream)
        with self.engine.begin() as conn:
            return conn.execute(q).rowcount


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def _pid_namespace() -> str:
    """Which PID space ``os.getpid()`` counts in: the kernel's boot id and the PID namespace inode.

    Containers often share a hostname (host networking, fixed ``hostname:``) while their PIDs are
    numbered independently, so hostname + PID alone names different processes in different
    containers. Boot id + namespace inode make "same PID" mean "same process" (Linux; elsewhere both
    are empty, which is right for a host without PID namespaces).
    """
    boot = _read("/proc/sys/kernel/random/boot_id").replace("-", "")
    try:
        ns = os.readlink("/proc/self/ns/pid").removeprefix("pid:[").removesuffix("]")
    except OSError:
        ns = ""
    return f"{boot}-{ns}"


class PipelineLock:
    """A lease in the database that keeps two runs of one pipeline from interleaving.

    The holder is named ``host:pid:token:boot-pidns``; the random token makes every lock instance
    unique, and the boot id and PID namespace let a process judge another one dead only when the PID
    really is in its own PID space (a live holder in another container is never taken over). While
    held, a heartbeat thread renews the lease every quarter of it (default lease 2 minutes), and every
    committed batch renews it too; so a live run never loses its lock to a slow source, and a run
    killed anywhere (SIGKILL, a lost container) frees the pipeline once its lease runs out.
    """

    def __init__(
        self,
        engine: Engine,
        pipeline: str,
        *,
        tenant: str = DEFAULT_TENANT,
        lease_s: float = 120,
        heartbeat: bool = True,
    ) -> None:
        self.engine = engine
        self.pipeline = pipeline
        self.tenant = tenant
        self.lease = dt.timedelta(seconds=lease_s)
        host = socket.gethostname()[:40]
        self.holder = f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}:{_pid_namespace()}"[:128]
        self._heartbeat = heartbeat and lease_s > 0
        self._stop = threading.Event()
        self._beats: threading.Thread | None = None
        self.lost = False

    def acquire(self) -> None:
        """Take the lock or raise :class:`PipelineLocked` naming the holder and when it expires."""
        now = _now()
        key = (_LOCKS.c.tenant_id == self.tenant, _LOCKS.c.pipeline == self.pipeline)
        with self.engine.begin() as conn:
            # Take over an expired lease atomically (the WHERE on expires_at makes it a compare-and-swap).
            taken = conn.execute(
                update(_LOCKS)
                .where(*key, _LOCKS.c.expires_at < now)
                .values(holder=self.holder, acquired_at=now, expires_at=now + self.lease)
            ).rowcount
        if taken:
            self._start_heartbeat()
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(_LOCKS).values(
                        tenant_id=self.tenant,
                        pipeline=self.pipeline,
                        holder=self.holder,
                        acquired_at=now,
                        expires_at=now + self.lease,
                    )
                )
            self._start_heartbeat()
        except IntegrityError:
            with self.engine.connect() as conn:
                row = conn.execute(select(_LOCKS.c.holder, _LOCKS.c.expires_at).where(*key)).first()
            holder, expires = (row.holder, row.expires_at) if row else ("?", "?")
            if row is not None and _holder_is_dead(holder):
                # The holder was a process on this host that no longer exists (killed, crashed):
                # take its lease over at once instead of waiting for it to expire.
                with self.engine.begin() as conn:
                    taken = conn.execute(
                        update(_LOCKS)
                        .where(*key, _LOCKS.c.holder == holder)
                        .values(holder=self.holder, acquired_at=now, expires_at=now + self.lease)
                    ).rowcount
                if taken:
                    self._start_heartbeat()
                    return
            raise PipelineLocked(
                f"pipeline {self.pipeline!r} is already running (lock held by {holder} until {expires}); "
                "wait for it to finish, or if that process is dead the lock expires by itself"
            ) from None

    def renew(self, conn: Connection) -> None:
        """Extend the lease (called inside each batch's transaction)."""
        done = conn.execute(
            update(_LOCKS)
            .where(
                _LOCKS.c.tenant_id == self.tenant,
                _LOCKS.c.pipeline == self.pipeline,
                _LOCKS.c.holder == self.holder,
            )
            .values(expires_at=_now() + self.lease)
        ).rowcount
        if not done:
            # Someone took over our expired lease: stop before we write interleaved state.
            raise PipelineLocked(
                f"lost the lock of pipeline {self.pipeline!r} (lease expired and was taken over)"
            )

    def _start_heartbeat(self) -> None:
        url = self.engine.url
        if not self._heartbeat or (
            url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")
        ):
            return  # an in-memory database is private to its connection: batches renew the lease
        self._stop.clear()
        self._beats = threading.Thread(target=self._beat, name="tongbu-lock-heartbeat", daemon=True)
        self._beats.start()

    def _beat(self) -> None:
        # Its own engine without a pool: nothing shared with the run's connections, and nothing a
        # forked reader process could inherit in use.
        engine = create_engine(self.engine.url, poolclass=NullPool)
        every = self.lease.total_seconds() / 4
        try:
            while not self._stop.wait(every):
                try:
                    with engine.begin() as conn:
                        self.renew(conn)
                except PipelineLocked:
                    self.lost = True  # the next batch's renew() fails the run
                    return
                except SQLAlchemyError:
                    continue  # a transient database error: the next beat (or batch) tries again
        finally:
            engine.dispose()

    def release(self) -> None:
        """Give the lock back (only if we still hold it)."""
        self._stop.set()
        if self._beats is not None and self._beats is not threading.current_thread():
            self._beats.join(timeout=30)
            self._beats = None
        with self.engine.begin() as conn:
            conn.execute(
                delete(_LOCKS).where(
                    _LOCKS.c.tenant_id == self.tenant,
                    _LOCKS.c.pipeline == self.pipeline,
                    _LOCKS.c.holder == self.holder,
                )
            )

    @contextmanager
    def held(self) -> Iterator[PipelineLock]:
        """``with lock.held(): ...`` acquires and always releases."""
        self.acquire()
        try:
            yield self
        finally:
            self.release()


def _holder_is_dead(holder: str) -> bool:
    """True when ``holder`` names a process in this PID space that is not running any more."""
    parts = holder.split(":")
    if len(parts) != 4:
        return False  # an older holder format without its PID space: only its lease expiry can tell
    host, pid_text, _token, space = parts
    if host != socket.gethostname()[:40] or space != _pid_namespace() or not pid_text.isdigit():
        return False  # another machine, boot or container: only its lease expiry can tell
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class RunHistory:
    """The ``sync_runs`` table: one row per run of a pipeline (or rescan), for operations."""

    def __init__(self, engine: Engine, tenant: str = DEFAULT_TENANT) -> None:
        self.engine = engine
        self.tenant = tenant

    def start(self, pipeline: str, *, full_refresh: bool = False) -> int:
        """Record a run as started; returns its id."""
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    insert(_RUNS).values(
                        tenant_id=self.tenant,
                        pipeline=pipeline,
                        status="running",
                        full_refresh=int(full_refresh),
                        started_at=_now(),
                    )
                ).inserted_primary_key[0]
            )

    def finish(self, run_id: int | None, *, status: str, error: str | None = None, **figures: Any) -> None:
        """Record how a run ended (rows_read, rows_written, … cursor_after, duration_s)."""
        if run_id is None:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(_RUNS)
                .where(_RUNS.c.id == run_id)
                .values(
                    status=status,
                    finished_at=_now(),
                    error=None if error is None else error[:4000],
                    **figures,
                )
            )


class Quarantine:
    """Records that failed validation or mapping, kept with the reason and payload."""

    def __init__(self, engine: Engine, tenant: str = DEFAULT_TENANT) -> None:
        self.engine = engine
        self.tenant = tenant

    def add_many(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Quarantine records (keys: pipeline, connection, stream, source_id, stage, reason, payload, run_id).

        A record already open in the quarantine (same pipeline and source id, e.g. re-read through a
        lookback window) is updated in place with the newest payload and reason, not added twice.
        """
        if not rows:
            return
        # Payloads are raw source records (datetimes, Decimals): made JSON-safe here, for every caller.
        rows = [{**r, "payload": jsonable(r.get("payload"))} for r in rows]
        keyed = [r for r in rows if r.get("source_id") is not None]
        existing: dict[tuple[str, str], tuple[int, int]] = {}
        for pipeline in {r["pipeline"] for r in keyed}:
            ids = [r["source_id"] for r in keyed if r["pipeline"] == pipeline]
            for i in range(0, len(ids), 500):
                for qid, sid, attempts in conn.execute(
                    select(_QUAR.c.id, _QUAR.c.source_id, _QUAR.c.attempts).where(
                        _QUAR.c.tenant_id == self.tenant,
                        _QUAR.c.pipeline == pipeline,
                        _QUAR.c.status == "open",
                        _QUAR.c.source_id.in_(ids[i : i + 500]),
                    )
                ):
                    existing[(pipeline, sid)] = (qid, attempts)
        fresh = []
        for r in rows:
            hit = existing.get((r["pipeline"], r.get("source_id")))
            if hit is None:
                fresh.append({"tenant_id": self.tenant, "status": "open", **r})
            else:
                conn.execute(
                    update(_QUAR)
                    .where(_QUAR.c.id == hit[0])
                    .values(
                        reason=r["reason"],
                        stage=r["stage"],
                        payload=r.get("payload"),
                        run_id=r.get("run_id"),
                        attempts=hit[1] + 1,
                    )
                )
        if fresh:
            conn.execute(insert(_QUAR), fresh)

    def has_open(self, conn: Connection, pipeline: str) -> bool:
        """Whether a pipeline has open quarantine entries (cheap check before resolving any)."""
        return (
            conn.execute(
                select(_QUAR.c.id)
                .where(
                    _QUAR.c.tenant_id == self.tenant, _QUAR.c.pipeline == pipeline, _QUAR.c.status == "open"
                )
                .limit(1)
            ).first()
            is not None
        )

    def resolve_landed(self, conn: Connection, pipeline: str, source_ids: list[str]) -> int:
        """Close open entries of records that have now landed (the source fixed them)."""
        done = 0
        for i in range(0, len(source_ids), 500):
            done += conn.execute(
                update(_QUAR)
                .where(
                    _QUAR.c.tenant_id == self.tenant,
                    _QUAR.c.pipeline == pipeline,
                    _QUAR.c.status == "open",
                    _QUAR.c.source_id.in_(source_ids[i : i + 500]),
                )
                .values(status="resolved", resolved_at=_now())
            ).rowcount
        return done

    def list(
        self, pipeline: str | None = None, status: str | None = "open", limit: int = 100
    ) -> list[dict[str, Any]]:
        """Quarantined records, newest first."""
        q = select(_QUAR).where(_QUAR.c.tenant_id == self.tenant).order_by(_QUAR.c.id.desc()).limit(limit)
        if pipeline:
            q = q.where(_QUAR.c.pipeline == pipeline)
        if status:
            q = q.where(_QUAR.c.status == status)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def count(self, conn: Connection, pipeline: str, status: str = "open") -> int:
        """How many records of a pipeline are quarantined."""
        from sqlalchemy import func

        return int(
            conn.execute(
                select(func.count())
                .select_from(_QUAR)
                .where(
                    _QUAR.c.tenant_id == self.tenant,
                    _QUAR.c.pipeline == pipeline,
                    _QUAR.c.status == status,
                )
            ).scalar_one()
        )

    def mark(self, conn: Connection, ids: list[int], status: str, reason: str | None = None) -> None:
        """Close (``replayed``/``dropped``) or re-open quarantine rows."""
        values: dict[str, Any] = {"status": status, "resolved_at": _now() if status != "open" else None}
        if reason is not None:
            values["reason"] = reason
        if ids:
            # Ids are global: without the tenant filter one tenant could close another's entries.
            conn.execute(
                update(_QUAR).where(_QUAR.c.tenant_id == self.tenant, _QUAR.c.id.in_(ids)).values(**values)
            )
