"""Run a pipeline: source stream → mapping → CRM hub, in process or as a Singer subprocess pipe.

In-process mode pulls records straight from the singer-sdk stream's ``get_records`` (no JSON over a
pipe on the hot path), maps them with the compiled mapping and upserts them in batches. Each batch
commits its rows, its quarantined records, the stream cursor and the lock renewal in **one**
transaction, which is what makes a SIGKILL at any point safe: on resume the run starts from the last
committed cursor, re-reads at most one batch (plus the source's lookback) and the hash-guarded
upsert turns the re-read into no-ops.

Pipe mode runs the same tap and ``target-crm`` as two processes joined by a pipe (what Meltano
does); the target emits STATE only after a batch is committed, and the runner stores each STATE it
sees, so the same guarantee holds.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from connectors.kit.sampling import SAMPLE_RECORDS, absent_source_fields, optional_sources
from connectors.kit.sdk_compat import write_starting_replication_value
from connectors.registry import connector, load_class
from mappings.engine import CompiledMapping, MappingError, compile_mapping
from mappings.spec import load_mappings
from pipelines.project import PipelineSpec, Project
from tongbu.db import get_engine
from tongbu.hub.store import HubStore, PreparedBatch
from tongbu.state.models import SyncRun
from tongbu.state.store import PipelineLock, Quarantine, RunHistory, StateStore, jsonable
from tongbu.vault.secrets import resolve_secrets

log = logging.getLogger("tongbu.runner")
_RUNS = SyncRun.__table__

ProgressFn = Callable[["RunResult"], None]


@dataclass
class RunResult:
    """What one pipeline run did: the figures Dagster metadata and the CLI summary show."""

    pipeline: str
    status: str = "running"
    mode: str = "inprocess"
    full_refresh: bool = False
    rows_read: int = 0
    rows_written: int = 0
    rows_unchanged: int = 0
    rows_quarantined: int = 0
    lines_written: int = 0
    batches: int = 0
    cursor_before: dict[str, Any] | None = None
    cursor_after: dict[str, Any] | None = None
    duration_s: float = 0.0
    run_id: int | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def records_per_second(self) -> float:
        """Read throughput of the run."""
        return self.rows_read / self.duration_s if self.duration_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready) of the result."""
        d = asdict(self)
        d["records_per_second"] = round(self.records_per_second, 1)
        return d


def stream_cursor(stream: Any, record: dict[str, Any]) -> dict[str, Any] | None:
    """The Singer bookmark a record stands for (a stream may define ``cursor_for_record``)."""
    hook = getattr(stream, "cursor_for_record", None)
    if hook is not None:
        cursor: dict[str, Any] | None = hook(record)
        return cursor
    key = stream.replication_key
    if not key:
        return None
    return {"replication_key": key, "replication_key_value": jsonable(record.get(key))}


def _cursor_value(cursor: dict[str, Any] | None) -> Any:
    return None if cursor is None else cursor.get("replication_key_value")


class Runner:
    """Runs the pipelines of a project against the hub database."""

    def __init__(
        self,
        project: Project,
        engine: Engine | None = None,
        *,
        config_overrides: dict[str, dict[str, Any]] | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        self.project = project
        self.engine = engine or get_engine()
        self.tenant = project.tenant
        self.hub = HubStore(self.engine, self.tenant)
        self.state = StateStore(self.engine, self.tenant)
        self.quarantine = Quarantine(self.engine, self.tenant)
        self.config_overrides = config_overrides or {}
        self.progress = progress
        self._mappings: dict[str, CompiledMapping] = {}
        self._configs: dict[str, dict[str, Any]] = {}

    # -- public ---------------------------------------------------------------------------------
    def mapping(self, spec: PipelineSpec) -> CompiledMapping:
        """The compiled mapping of a pipeline (compiled once per runner)."""
        if spec.name not in self._mappings:
            path, name = self.project.mapping_path(spec)
            self._mappings[spec.name] = compile_mapping(select_mapping(load_mappings(path), spec, name, path))
        return self._mappings[spec.name]

    def connection_config(self, connection: str) -> dict[str, Any]:
        """Connection config with env and vault references resolved (never logged).

        Resolved once per runner: each vault read decrypts and writes an audit row, and a run needs
        the config more than once (the tap, and the subprocess config in pipe mode).
        """
        if connection not in self._configs:
            cfg = self.project.resolved_config(connection, self.config_overrides.get(connection))
            self._configs[connection] = resolve_secrets(cfg, tenant=self.tenant, engine=self.engine)
        return dict(self._configs[connection])

    def make_tap(self, connection: str, state: dict[str, Any] | None = None) -> Any:
        """Instantiate the singer-sdk tap of a connection, in process."""
        info = connector(self.project.connection(connection).connector)
        if not info.tap:
            raise ValueError(f"connector {info.name!r} has no tap")
        tap_cls = load_class(info.tap)
        return tap_cls(
            config=self.connection_config(connection),
            state=state or {},
            parse_env_config=False,
            validate_config=True,
            setup_mapper=False,
        )

    def run(self, pipeline: str, *, full_refresh: bool = False, mode: str = "inprocess") -> RunResult:
        """Run one pipeline to completion; raises on failure after recording it."""
        spec = self.project.pipeline(pipeline)
        result = RunResult(pipeline=pipeline, mode=mode, full_refresh=full_refresh)
        lock = PipelineLock(self.engine, pipeline, tenant=self.tenant)
        lock.acquire()
        started = time.perf_counter()
        try:
            result.run_id = self._start_run(result)
            with self.engine.connect() as conn:
                result.cursor_before = self.state.get(conn, spec.source.connection, spec.source.stream)
            if mode == "inprocess":
                self._run_inprocess(spec, result, lock, full_refresh)
            elif mode == "pipe":
                self._run_pipe(spec, result, lock, full_refresh)
            else:
                raise ValueError(f"unknown mode {mode!r} (inprocess | pipe)")
            result.status = "success"
        except BaseException as exc:
            result.status = "failed"
            result.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            result.duration_s = time.perf_counter() - started
            try:
                self._finish_run(result)
            finally:
                lock.release()
        return result

    # -- in-process -----------------------------------------------------------------------------
    def _run_inprocess(
        self, spec: PipelineSpec, result: RunResult, lock: PipelineLock, full_refresh: bool
    ) -> None:
        mapping = self.mapping(spec)
        conn_name, stream_name = spec.source.connection, spec.source.stream
        start = None if full_refresh else result.cursor_before
        singer_state = {"bookmarks": {stream_name: dict(start)}} if start else {}
        tap = self.make_tap(conn_name, singer_state)
        try:
            stream = tap.streams[stream_name]
        except KeyError:
            raise ValueError(
                f"connection {conn_name!r} has no stream {stream_name!r}; "
                f"streams: {', '.join(sorted(tap.streams))}"
            ) from None
        if getattr(stream, "partitions", None):
            raise NotImplementedError(
                f"stream {stream_name!r} is partitioned; partitioned streams run in pipe mode"
            )
        write_starting_replication_value(stream)
        post = stream.post_process if _overrides(stream, "post_process") else None
        sorted_stream = bool(getattr(stream, "is_sorted", False))
        obj = mapping.target_object
        result.cursor_after = start
        with self.engine.connect() as conn:
            resolve_quarantine = self.quarantine.has_open(conn, spec.name)

        def commit(
            batch: PreparedBatch,
            batch_quarantined: list[dict[str, Any]],
            cursor: dict[str, Any] | None,
            read: int,
            notes: tuple[str, ...] = (),
        ) -> None:
            for note in notes:  # once per run, from the sample of the first records
                log.warning("pipeline %s: %s", spec.name, note)
                result.extra.setdefault("warnings", []).append(note)
            # Rows, quarantined records, cursor and lease renewal: one transaction, all or nothing.
            with self.engine.begin() as conn:
                if batch.received:
                    res = self.hub.write(conn, batch)
                    result.rows_written += res.written
                    result.rows_unchanged += res.unchanged
                    result.lines_written += res.lines_written
                    if resolve_quarantine:
                        self.quarantine.resolve_landed(conn, spec.name, batch.source_ids)
                if batch_quarantined:
                    self.quarantine.add_many(conn, batch_quarantined)
                    result.rows_quarantined += len(batch_quarantined)
                if cursor is not None and cursor != result.cursor_after:
                    self.state.put(conn, conn_name, stream_name, cursor)
                lock.renew(conn)
            result.cursor_after = cursor
            result.rows_read = read
            result.batches += 1
            if self.progress is not None:
                self.progress(result)

        parent_pid = os.getpid()
        resolver: _LazyHubResolver | None = None

        def read_batches() -> Iterator[
            tuple[PreparedBatch, list[dict[str, Any]], dict[str, Any] | None, int, tuple[str, ...]]
        ]:
            # The per-record loop is the hot path: locals only, one counter, no per-record cursor work
            # for sorted streams (the cursor is taken from the last record of each batch).
            records = stream.get_records(None)
            if post is not None:
                records = (r for r in (post(rec, None) for rec in records) if r is not None)
            notes: tuple[str, ...] = ()
            optional = optional_sources(mapping)
            if optional:
                # Only the first records are looked at, before the loop: the hot path stays as it is.
                head = list(itertools.islice(records, SAMPLE_RECORDS))
                notes = absent_source_fields(optional, head)
                records = itertools.chain(head, records)
            # Hub lookups (``lookup: {object, by, return}``) read through this process's own connection,
            # opened on the first lookup only; in a forked reader the parent's pooled connections are
            # dropped first, never shared.
            mapping.set_resolver(resolver)
            apply, prepare, batch_size = mapping.apply, self.hub.prepare, spec.batch_size
            rows: list[dict[str, Any]] = []
            quarantined: list[dict[str, Any]] = []
            append = rows.append
            pending = read = 0
            best, last = start, None
            for record in records:
                read += 1
                pending += 1
                try:
                    append(apply(record))
                except MappingError as exc:
                    quarantined.append(self._quarantine_row(spec, record, "mapping", str(exc), result.run_id))
                if not sorted_stream:
                    cur = stream_cursor(stream, record)
                    if cur is not None and (best is None or _gt(_cursor_value(cur), _cursor_value(best))):
                        best = cur
                if pending >= batch_size:
                    # Unsorted streams keep their cursor until the final batch: only then is the max known.
                    cursor = stream_cursor(stream, record) if sorted_stream else start
                    yield prepare(obj, rows, source_system=conn_name), quarantined, cursor, read, notes
                    notes = ()
                    rows, quarantined = [], []
                    append = rows.append
                    pending = 0
                last = record
            final = (stream_cursor(stream, last) if last is not None else start) if sorted_stream else best
            yield prepare(obj, rows, source_system=conn_name), quarantined, final, read, notes

        def batches() -> Iterator[
            tuple[PreparedBatch, list[dict[str, Any]], dict[str, Any] | None, int, tuple[str, ...]]
        ]:
            nonlocal resolver
            resolver = _LazyHubResolver(self.hub, forked=os.getpid() != parent_pid)
            try:
                yield from read_batches()
            finally:
                resolver.close()

        reader = _reader_mode()
        # Shown in the run's metadata: proves which path a (Dagster, Celery) worker took.
        result.extra["reader"] = reader
        result.extra["foreign_threads"] = _foreign_threads()
        result.extra["daemonic"] = bool(multiprocessing.current_process().daemon)
        with _gc_tuned_for_streaming():
            if reader == "process":
                _commit_from_reader_process(batches(), commit)
            else:
                _commit_with_writer_thread(batches(), commit)

    def _quarantine_row(
        self, spec: PipelineSpec, record: dict[str, Any], stage: str, reason: str, run_id: int | None
    ) -> dict[str, Any]:
        mapping = self._mappings.get(spec.name)
        source_id = None
        if mapping is not None:
            source_id = mapping.source_id_of(record)
        return {
            "pipeline": spec.name,
            "connection": spec.source.connection,
            "stream": spec.source.stream,
            "source_id": None if source_id is None else str(source_id),
            "stage": stage,
            "reason": reason,
            "payload": record,
            "run_id": run_id,
        }

    # -- pipe mode ------------------------------------------------------------------------------
    def _run_pipe(
        self, spec: PipelineSpec, result: RunResult, lock: PipelineLock, full_refresh: bool
    ) -> None:
        conn_name, stream_name = spec.source.connection, spec.source.stream
        info = connector(self.project.connection(conn_name).connector)
        start = None if full_refresh else result.cursor_before
        path, name = self.project.mapping_path(spec)
        tap = self.make_tap(conn_name)
        catalog = tap.catalog_dict
        for entry in catalog["streams"]:
            for md in entry.get("metadata", []):
                if not md.get("breadcrumb"):
                    md["metadata"]["selected"] = entry["tap_stream_id"] == stream_name
        target_config = {
            "database_url": str(self.engine.url.render_as_string(hide_password=False)),
            "source_system": conn_name,
            "mapping_file": str(path),
            "mapping_name": name,
            "tenant": self.tenant,
            "pipeline": spec.name,
            "batch_size": spec.batch_size,
            "emit_metrics": True,
            # The target refuses to commit once this runner is gone or has lost the lock (see
            # connectors/crm/target.py): an orphan must never write after its run ended.
            "lock_holder": lock.holder,
            "parent_pid": os.getpid(),
        }
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        procs: list[subprocess.Popen[Any]] = []
        # Resolved configs (ERP password, database URL) reach the subprocesses through inherited
        # in-memory files, never through a file on disk: nothing is left behind, even after SIGKILL.
        with _InheritedFiles() as files:
            tap_cmd = [
                _exe(info.tap_executable or f"tap-{info.name}"),
                "--config",
                files.add(self.connection_config(conn_name)),
                "--catalog",
                files.add(catalog),
                "--state",
                files.add({"bookmarks": {stream_name: start}} if start else {}),
            ]
            try:
                tap_proc = subprocess.Popen(
                    tap_cmd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    env=env,
                    pass_fds=files.take(),
                    preexec_fn=_die_with_parent(os.getpid()),
                )
                procs.append(tap_proc)
                target_cmd = [_exe("target-crm"), "--config", files.add(target_config)]
                target_proc = subprocess.Popen(
                    target_cmd,
                    stdin=tap_proc.stdout,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=env,
                    text=True,
                    pass_fds=files.take(),
                    preexec_fn=_die_with_parent(os.getpid()),
                )
                procs.append(target_proc)
            except BaseException:
                _stop(procs)
                raise
        try:
            self._follow_pipe(spec, result, lock, tap_proc, target_proc)
        finally:
            _stop(procs)  # on any error here the subprocesses must not go on writing

    def _follow_pipe(
        self,
        spec: PipelineSpec,
        result: RunResult,
        lock: PipelineLock,
        tap_proc: subprocess.Popen[Any],
        target_proc: subprocess.Popen[Any],
    ) -> None:
        conn_name, stream_name = spec.source.connection, spec.source.stream
        assert tap_proc.stdout is not None and target_proc.stdout is not None
        tap_proc.stdout.close()  # the target owns the read end now
        errors: list[str] = []

        def read_stderr() -> None:
            # Counts arrive on stderr (stdout is reserved for Singer STATE messages).
            assert target_proc.stderr is not None
            for err_line in target_proc.stderr:
                if err_line.startswith("TONGBU_METRICS "):
                    counts = json.loads(err_line.split(" ", 1)[1])
                    for k, v in counts.items():
                        setattr(result, k, getattr(result, k) + int(v))
                elif err_line.startswith("TONGBU_WARNING "):
                    note = str(json.loads(err_line.split(" ", 1)[1]))
                    log.warning("pipeline %s: %s", spec.name, note)
                    result.extra.setdefault("warnings", []).append(note)
                else:
                    errors.append(err_line)
                    del errors[:-50]

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        for line in target_proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            msg = json.loads(line)
            # Singer targets print the state *value* once its records are committed.
            value = msg.get("value") if msg.get("type") == "STATE" else msg
            if isinstance(value, dict) and "bookmarks" in value:
                bookmark = (value.get("bookmarks") or {}).get(stream_name)
                if bookmark:
                    bookmark = {k: v for k, v in bookmark.items() if k != "progress_markers"}
                    with self.engine.begin() as conn:
                        self.state.put(conn, conn_name, stream_name, bookmark)
                        lock.renew(conn)
                    result.cursor_after = bookmark
                if self.progress is not None:
                    self.progress(result)
        rc_target, rc_tap = target_proc.wait(), tap_proc.wait()
        reader.join(10)
        err = "".join(errors)
        if rc_tap != 0 or rc_target != 0:
            from tongbu.vault import redact  # the subprocesses cannot mask what this process resolved

            raise RuntimeError(
                f"pipe failed: tap exit {rc_tap}, target exit {rc_target}: {redact(err[-2000:])}"
            )

    # -- run history ----------------------------------------------------------------------------
    def _start_run(self, result: RunResult) -> int:
        return RunHistory(self.engine, self.tenant).start(result.pipeline, full_refresh=result.full_refresh)

    def _finish_run(self, result: RunResult) -> None:
        RunHistory(self.engine, self.tenant).finish(
            result.run_id,
            status=result.status,
            error=result.error,
            rows_read=result.rows_read,
            rows_written=result.rows_written,
            rows_unchanged=result.rows_unchanged,
            rows_quarantined=result.rows_quarantined,
            cursor_before=result.cursor_before,
            cursor_after=result.cursor_after,
            duration_s=result.duration_s,
        )


class _InheritedFiles:
    """JSON documents handed to a subprocess as inherited file descriptors, never as files on disk.

    Each document lives in a memfd (Linux; an anonymous in-memory file) or, where memfd does not
    exist, in a pipe fed by a thread; the child opens it as ``/dev/fd/N``, which singer-sdk's
    ``--config``/``--catalog``/``--state`` read like any path. The memory is freed when the last
    descriptor closes, which the kernel does for killed processes too: a SIGKILL leaves nothing.
    """

    def __init__(self) -> None:
        self._pending: list[int] = []
        self._all: list[int] = []
        self._writers: list[threading.Thread] = []

    def add(self, document: Any) -> str:
        """Hold ``document`` as JSON in a new inheritable descriptor; returns the path the child opens."""
        data = json.dumps(document, default=str).encode("utf-8")
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("tongbu-config", os.MFD_CLOEXEC | getattr(os, "MFD_ALLOW_SEALING", 0))
            self._all.append(fd)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.lseek(fd, 0, os.SEEK_SET)
            import fcntl  # POSIX only, like memfd

            with contextlib.suppress(AttributeError, OSError):  # read-only from here on
                fcntl.fcntl(
                    fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK
                )
        else:  # pragma: no cover - macOS and other systems without memfd
            fd, write_end = os.pipe()
            self._all.append(fd)

            def feed(w: int = write_end, payload: bytes = data) -> None:
                with contextlib.suppress(OSError), os.fdopen(w, "wb") as fh:
                    fh.write(payload)

            writer = threading.Thread(target=feed, daemon=True)
            writer.start()
            self._writers.append(writer)
        self._pending.append(fd)
        return f"/dev/fd/{fd}"

    def take(self) -> tuple[int, ...]:
        """The descriptors added since the last call (for one ``Popen(pass_fds=...)``)."""
        fds, self._pending = tuple(self._pending), []
        return fds

    def __enter__(self) -> _InheritedFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        # The children hold their own copies; ours go as soon as both are started.
        for fd in self._all:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._all.clear()


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when the runner dies (Linux ``prctl``).

    Without it a SIGKILLed runner leaves ``tap | target`` running: the orphaned target would go on
    committing batches no live run owns. (The target also checks before each commit; see
    ``connectors/crm/target.py``.) The death signal is tied to the thread that starts the child,
    which is the thread that waits for it here.
    """
    if not sys.platform.startswith("linux"):  # pragma: no cover - the target's own check remains
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork: the child only calls it

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the runner died between fork and prctl
            os._exit(1)

    return preexec


def _stop(procs: list[subprocess.Popen[Any]]) -> None:
    """Kill what is still running of a pipe and reap it."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.wait(10)


class _LazyHubResolver:
    """``(object, by, value[, returning]) -> value`` against the hub, connecting on first use."""

    def __init__(self, hub: HubStore, *, forked: bool) -> None:
        self._hub = hub
        self._forked = forked
        self._conn: Any = None
        self._resolve: Callable[..., Any] | None = None

    def __call__(self, object_name: str, by: str, value: Any, returning: str = "id") -> Any:
        if self._resolve is None:
            if self._forked:
                self._hub.engine.dispose(close=False)  # the parent's connections stay the parent's
            self._conn = self._hub.engine.connect()
            self._resolve = self._hub.resolver(self._conn)
        return self._resolve(object_name, by, value, returning)

    def close(self) -> None:
        """Give the connection back (if one was opened)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._resolve = None


class _BatchWriter:
    """Commits batches on one background thread, in submission order; re-raises its failure."""

    def __init__(self, commit: Callable[..., None], depth: int = 2) -> None:
        self._commit = commit
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="tongbu-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self._commit(*item)
                except BaseException as exc:  # handed to the producer thread, which re-raises it
                    self._error = exc

    def submit(self, *item: Any) -> None:
        """Queue one batch (blocks while the writer is ``depth`` batches behind)."""
        self._raise()
        while True:
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                self._raise()

    def close(self, raise_error: bool = True) -> None:
        """Wait for every queued batch to commit; raise the writer's error if it had one."""
        self._queue.put(None)
        self._thread.join()
        if raise_error:
            self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


@contextlib.contextmanager
def _gc_tuned_for_streaming() -> Iterator[None]:
    """Keep Python's cyclic GC from rescanning the whole heap while millions of records stream by.

    Every record, mapped row and parameter tuple is a GC-tracked container, so the default
    thresholds trigger a collection every 700 allocations and a full one every few batches; measured
    on 1M records that cost ~40 % of the run. Records are acyclic and freed by reference counting,
    so during the run we freeze what already exists (out of the collector's sight) and collect
    rarely; both are undone afterwards. The forked reader process inherits the setting.
    """
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


def _reader_mode() -> str:
    """``process`` or ``thread``: where the source is read and mapped. ``TONGBU_READER`` overrides.

    The default forks a reader process only from a **single-threaded** parent. ``fork`` copies the
    calling thread alone: a lock another thread holds at that instant (the logging module's, a
    connection pool's, Dagster's event writer or compute-log capture, a Celery worker's heartbeat or
    broker connection) stays locked forever in the child, which then hangs or corrupts what it shares.
    Inside a multi-threaded Dagster or Celery worker the reading therefore stays in this process, with
    a writer thread committing (no fork at all); ``spawn`` is no alternative, since the reader is a
    closure over the open tap that cannot be pickled into a fresh interpreter.
    """
    mode = os.environ.get("TONGBU_READER", "").strip().lower()
    foreign = _foreign_threads()
    if mode in ("thread", "process"):
        if mode == "process" and foreign:
            log.warning(
                "TONGBU_READER=process in a process with %d other threads: forking anyway, as asked "
                "(unset TONGBU_READER to let tongbu read in a thread here)",
                foreign,
            )
        return mode
    if "fork" not in multiprocessing.get_all_start_methods() or foreign:
        return "thread"
    if multiprocessing.current_process().daemon:
        # A daemonic process may not have children: a Celery prefork pool child, a multiprocessing
        # pool worker (``AssertionError: daemonic processes are not allowed to have children``).
        return "thread"
    return "process"


#: Threads of tongbu's own that a fork may copy: the lock heartbeat holds nothing the reader uses (its
#: engine has no pool, the reader never logs through its connection) and logging's locks are re-made in
#: a forked child by Python itself.
_FORK_SAFE_THREADS = ("tongbu-lock-heartbeat",)


def _foreign_threads() -> int:
    """Threads besides this one and tongbu's fork-safe ones (a Dagster or Celery worker's, …)."""
    me = threading.current_thread()
    return sum(1 for t in threading.enumerate() if t is not me and not t.name.startswith(_FORK_SAFE_THREADS))


def _commit_with_writer_thread(batches: Iterator[tuple[Any, ...]], commit: Callable[..., None]) -> None:
    """Read and map here; a single writer thread commits batches strictly in order.

    The bounded queue keeps memory flat however large the source is, and the database work of batch k
    overlaps with reading and mapping batch k+1 while SQLite runs without the GIL.
    """
    writer = _BatchWriter(commit)
    try:
        for item in batches:
            writer.submit(*item)
    except BaseException:
        writer.close(raise_error=False)  # the reader's error is the one to report
        raise
    writer.close()


def _commit_from_reader_process(batches: Iterator[tuple[Any, ...]], commit: Callable[..., None]) -> None:
    """Read, map and prepare batches in a forked child process; commit them here, in order.

    Reading, mapping and building the final rows is pure Python and holds the GIL; a second process
    gives it its own core while this one writes. Batches cross a pipe pickled (prepared tuples pickle
    in C), one in flight at a time, so memory stays flat. The child only reads: it never touches the
    database, the lock or the cursor, which are all committed here.
    """
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)

    def produce() -> None:
        receiver.close()
        try:
            for item in batches:
                sender.send_bytes(pickle.dumps(("batch", item), protocol=pickle.HIGHEST_PROTOCOL))
            sender.send_bytes(pickle.dumps(("done", None)))
        except BaseException as exc:  # report it to the parent, which raises it in the run
            text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            with contextlib.suppress(BaseException):
                sender.send_bytes(pickle.dumps(("error", text)))
        finally:
            sender.close()

    child = ctx.Process(target=produce, name="tongbu-reader", daemon=True)
    child.start()
    sender.close()
    try:
        while True:
            try:
                kind, payload = pickle.loads(receiver.recv_bytes())
            except EOFError:
                raise RuntimeError(f"the reader process died (exit code {child.exitcode})") from None
            if kind == "done":
                break
            if kind == "error":
                raise RuntimeError(f"reading the source failed: {payload}")
            commit(*payload)
    finally:
        receiver.close()
        if child.is_alive():
            child.terminate()
        child.join(10)


def select_mapping(specs: list[Any], pipeline: PipelineSpec, name: str | None, path: Path) -> Any:
    """The mapping a pipeline uses from a file: by ``#name``, else the one for its source stream."""
    if name:
        found = [m for m in specs if m.name == name]
    else:
        found = [
            m
            for m in specs
            if m.source.stream == pipeline.source.stream and m.target.object == pipeline.target.object
        ] or (specs if len(specs) == 1 else [])
    if len(found) != 1:
        known = ", ".join(f"{m.name} ({m.source.stream}→{m.target.object})" for m in specs)
        want = (
            f"named {name!r}"
            if name
            else f"for stream {pipeline.source.stream!r} → {pipeline.target.object!r}"
        )
        raise ValueError(
            f"{path}: {'no' if not found else 'more than one'} mapping {want}; file has: {known}"
        )
    return found[0]


def _overrides(obj: Any, name: str) -> bool:
    from singer_sdk import Stream

    return getattr(type(obj), name, None) is not getattr(Stream, name, None)


def _gt(a: Any, b: Any) -> bool:
    if b is None:
        return a is not None
    if a is None:
        return False
    try:
        return bool(a > b)
    except TypeError:
        return str(a) > str(b)


def _exe(name: str) -> str:
    # Prefer the executable next to the running interpreter (the venv), so pipe mode uses this install.
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name
