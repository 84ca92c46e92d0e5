"""Drift detection: find (and repair) records the incremental sync missed, per pipeline.

An incremental run reads "modified after the cursor, minus the lookback window". Edits the source
stamps further back (ERPs back-date), late commits older than the window, and hard deletes are
never read again. :func:`check` compares, for the range the pipeline has already synced
(``start_date`` .. its cursor), the source with the hub:

1. Both sides are reduced to per-bucket ``(count, hash of (source_id, modification ms))`` on the
   source's modification time (coarse buckets of 30 days first). The source answers through its
   connector's :class:`connectors.kit.drift.DriftSource` (Kingdee: the id and ``FModifyDate`` columns
   alone, paged); the hub from ``source_id`` and ``source_modified_at``, which every mapping of an
   incremental stream fills from the source's own modification time. The hash is computed in
   Python on both sides, so it is the same on SQLite and PostgreSQL.
2. Only buckets whose digests differ are split (30 d → 1 d → 1 h → 1 min → 1 s) and compared again,
   until a differing bucket is small (``leaf_rows``) or 1 s wide; an unchanged stream costs one pass
   over two columns on each side and nothing else.
3. In the differing leaf buckets, ids are compared: **missing** (in the source, not in the hub),
   **stale** (both, different modification time: the hub holds an older version), **deleted** (in
   the hub, gone from the source, confirmed by asking the source for those ids), **pending**
   (modified after the cursor since: the next incremental run reads it) and **quarantined** (the
   record failed mapping earlier and waits in the quarantine).

:func:`repair` re-reads the missing, stale and quarantined records by id through the stream's own
read, the pipeline's mapping, the quarantine and the idempotent upsert (the cursor is never moved),
under the pipeline's lock. Deleted records are reported only, unless ``deletes="soft-delete"``
(then the hub rows get ``deleted_at``, as the WeCom rescan does).
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, String, and_, false, func, or_, select, true, type_coerce, update

from connectors.kit.drift import (
    Digest,
    DriftNotSupported,
    DriftSource,
    Range,
    bucket_digests,
    from_ms,
    merge_ranges,
    to_ms,
)
from mappings.engine import MappingError
from pipelines.project import PipelineSpec
from pipelines.runner import Runner, _LazyHubResolver
from tongbu.hub.store import hub_table
from tongbu.state.store import PipelineLock

log = logging.getLogger("tongbu.drift")

SECOND, MINUTE, HOUR, DAY = 1000, 60_000, 3_600_000, 86_400_000
#: Bucket widths, coarse to fine; a differing bucket is split into buckets of the next width.
WIDTHS: tuple[int, ...] = (30 * DAY, DAY, HOUR, MINUTE, SECOND)
#: A differing bucket with at most this many rows on either side is compared id by id.
LEAF_ROWS = 256
DELETE_POLICIES = ("report", "soft-delete")
_BATCH = 500
_RANGES_PER_QUERY = 200  # time ranges ORed into one hub query
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)
_ONE_MS = dt.timedelta(milliseconds=1)


@dataclass
class DriftBucket:
    """One leaf bucket whose digests differ, named by its UTC start and width."""

    start_ms: int
    width_ms: int
    source: Digest
    hub: Digest

    @property
    def name(self) -> str:
        """``2025-06-30T15:59:00.000Z/1m``: the bucket's start (UTC) and width."""
        return f"{from_ms(self.start_ms).isoformat(timespec='milliseconds').replace('+00:00', 'Z')}/{_width_label(self.width_ms)}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "bucket": self.name,
            "start": from_ms(self.start_ms).isoformat(),
            "end": from_ms(self.start_ms + self.width_ms).isoformat(),
            "source_count": self.source.count,
            "hub_count": self.hub.count,
        }


@dataclass
class DriftReport:
    """The outcome of one drift check (and repair) of one pipeline."""

    pipeline: str
    status: str = "in_sync"  # in_sync | drift | repaired | not_applicable | never_synced
    range_start: str | None = None
    range_end: str | None = None
    source_rows: int = 0
    hub_rows: int = 0
    buckets: list[DriftBucket] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    hub_without_time: int = 0
    buckets_compared: int = 0
    source_requests: int = 0
    duration_s: float = 0.0
    repaired: dict[str, int] | None = None
    note: str | None = None

    @property
    def drifted(self) -> int:
        """Records that differ and the sync will not fix by itself."""
        return len(self.missing) + len(self.stale) + len(self.deleted)

    def as_dict(self, limit: int = 1000) -> dict[str, Any]:
        """JSON-ready report (id lists cut at ``limit``; their full lengths are in ``counts``)."""
        return {
            "pipeline": self.pipeline,
            "status": self.status,
            "range": {"start": self.range_start, "end": self.range_end},
            "source_rows": self.source_rows,
            "hub_rows": self.hub_rows,
            "counts": {
                "missing": len(self.missing),
                "stale": len(self.stale),
                "deleted": len(self.deleted),
                "pending": len(self.pending),
                "quarantined": len(self.quarantined),
                "hub_without_time": self.hub_without_time,
            },
            "buckets": [b.as_dict() for b in self.buckets[:limit]],
            "missing": self.missing[:limit],
            "stale": self.stale[:limit],
            "deleted": self.deleted[:limit],
            "pending": self.pending[:limit],
            "quarantined": self.quarantined[:limit],
            "buckets_compared": self.buckets_compared,
            "source_requests": self.source_requests,
            "duration_s": round(self.duration_s, 3),
            "repaired": self.repaired,
            "note": self.note,
        }


def drift_source_for(stream: Any, connector_name: str) -> DriftSource:
    """The connector's drift interface for a stream: ``stream.drift_source()`` if the stream has one,
    else ``connectors.<connector>.drift.drift_source(stream)``; :class:`DriftNotSupported` otherwise."""
    hook = getattr(stream, "drift_source", None)
    if callable(hook):
        return hook()  # type: ignore[no-any-return]
    try:
        module = importlib.import_module(f"connectors.{connector_name}.drift")
    except ModuleNotFoundError as exc:
        if exc.name != f"connectors.{connector_name}.drift":
            raise
        raise DriftNotSupported(f"connector {connector_name!r} does not implement drift queries") from None
    return module.drift_source(stream)  # type: ignore[no-any-return]


class HubSide:
    """The hub rows of one pipeline (tenant, source system, object), as drift detection reads them.

    Only live rows count (``deleted_at`` is NULL); rows without ``source_modified_at`` cannot be
    bucketed and are counted apart.
    """

    def __init__(self, engine: Engine, tenant: str, object_name: str, source_system: str) -> None:
        self.engine = engine
        self.table = hub_table(object_name)
        self._naive = engine.dialect.name == "sqlite"  # SQLite stores naive UTC text
        t = self.table
        self._key = and_(t.c.tenant_id == tenant, t.c.source_system == source_system)

    def _bind(self, ms: int) -> dt.datetime:
        value = from_ms(ms)
        return value.replace(tzinfo=None) if self._naive else value

    def _where(self, ranges: Sequence[Range]) -> list[Any]:
        t = self.table
        col = t.c.source_modified_at
        spans = []
        for lo, hi in ranges:
            bounds = []
            if lo is not None:
                bounds.append(col >= self._bind(lo))
            if hi is not None:
                bounds.append(col < self._bind(hi))
            spans.append(and_(*bounds) if bounds else true())
        return [self._key, t.c.deleted_at.is_(None), col.is_not(None), or_(*spans) if spans else false()]

    def rows(self, ranges: Sequence[Range]) -> Iterator[tuple[str, int]]:
        """``(source_id, ms)`` of live rows modified (at the source) in any of ``ranges``.

        One query per :data:`_RANGES_PER_QUERY` ranges: with no index on ``source_modified_at``
        each query scans the object's rows, so many small buckets must not mean many scans.
        """
        t = self.table
        merged = merge_ranges(ranges)
        # On SQLite the column is text; parsing it with fromisoformat is ~5x faster than the ORM type.
        col = type_coerce(t.c.source_modified_at, String) if self._naive else t.c.source_modified_at
        with self.engine.connect() as conn:
            for i in range(0, len(merged), _RANGES_PER_QUERY):
                q = select(t.c.source_id, col).where(*self._where(merged[i : i + _RANGES_PER_QUERY]))
                parse, epoch, one = dt.datetime.fromisoformat, _EPOCH_NAIVE, _ONE_MS
                for sid, modified in conn.execution_options(yield_per=10_000).execute(q):
                    if isinstance(modified, str):
                        moment = parse(modified)
                        if moment.tzinfo is None:  # what the hub writes: naive UTC
                            yield sid, (moment - epoch) // one
                            continue
                        modified = moment
                    yield sid, to_ms(modified)

    def buckets(self, ranges: Sequence[Range], width_ms: int) -> dict[int, Digest]:
        """Per-bucket digests of the ranges, the same function the source side uses."""
        return bucket_digests(self.rows(ranges), width_ms)

    def without_time(self) -> int:
        """Live rows with no ``source_modified_at`` (never compared)."""
        t = self.table
        q = (
            select(func.count())
            .select_from(t)
            .where(self._key, t.c.deleted_at.is_(None), t.c.source_modified_at.is_(None))
        )
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def lookup(self, source_ids: Sequence[str]) -> dict[str, tuple[int | None, bool]]:
        """``{source_id: (ms or None, soft-deleted)}`` of those ids the hub holds."""
        t = self.table
        out: dict[str, tuple[int | None, bool]] = {}
        ids = list(source_ids)
        with self.engine.connect() as conn:
            for i in range(0, len(ids), _BATCH):
                q = select(t.c.source_id, t.c.source_modified_at, t.c.deleted_at).where(
                    self._key, t.c.source_id.in_(ids[i : i + _BATCH])
                )
                for sid, modified, deleted in conn.execute(q):
                    out[sid] = (None if modified is None else to_ms(modified), deleted is not None)
        return out

    def invalidate(self, conn: Connection, source_ids: Sequence[str]) -> None:
        """Blank the row hash of rows about to be re-read, so that the upsert rewrites them even when
        the hub row was changed outside the sync and its hash no longer describes its content."""
        t = self.table
        ids = list(source_ids)
        for i in range(0, len(ids), _BATCH):
            conn.execute(
                update(t).where(self._key, t.c.source_id.in_(ids[i : i + _BATCH])).values(row_hash="")
            )

    def undelete(self, conn: Connection, source_ids: Sequence[str]) -> int:
        """Clear ``deleted_at`` of rows the source holds again (an unchanged row's upsert is a no-op
        and would leave it deleted)."""
        t = self.table
        done = 0
        ids = list(source_ids)
        for i in range(0, len(ids), _BATCH):
            done += conn.execute(
                update(t)
                .where(self._key, t.c.source_id.in_(ids[i : i + _BATCH]), t.c.deleted_at.is_not(None))
                .values(deleted_at=None)
            ).rowcount
        return done


class _Comparison:
    """One pipeline's source and hub sides, with the id translation between them."""

    def __init__(self, runner: Runner, spec: PipelineSpec) -> None:
        self.runner = runner
        self.spec = spec
        self.mapping = runner.mapping(spec)
        tap = runner.make_tap(spec.source.connection)
        self.stream = tap.streams[spec.source.stream]
        connector_name = runner.project.connection(spec.source.connection).connector
        self.source = drift_source_for(self.stream, connector_name)
        self.hub = HubSide(runner.engine, runner.tenant, self.mapping.target_object, spec.source.connection)
        # hub source_id -> source id, for ids the mapping transforms (else the text is the id)
        self.raw_of: dict[str, Any] = {}
        self._identity = _identity_id(self.mapping, self.source.id_key)

    def sid_of(self, raw_id: Any) -> str:
        if self._identity:
            return str(raw_id)  # the source id is the hub id's text: nothing to remember
        sid = str(self.mapping.source_id_of({self.source.id_key: raw_id}))
        self.raw_of[sid] = raw_id
        return sid

    def source_rows(self, ranges: Sequence[Range]) -> Iterator[tuple[str, int]]:
        sid_of = self.sid_of
        for raw, ms in self.source.rows(ranges):
            yield sid_of(raw), ms

    def source_buckets(self, ranges: Sequence[Range], width: int) -> dict[int, Digest]:
        if self._identity:
            return self.source.buckets(ranges, width)
        return bucket_digests(self.source_rows(ranges), width)


def _identity_id(mapping: Any, id_key: str) -> bool:
    """Whether the hub ``source_id`` is the source id as text (``source: <id>``, at most ``str``)."""
    for f in mapping.spec.fields:
        if f.target == "source_id":
            return f.source == id_key and all(t.name == "str" for t in f.transform)
    return False


def _cursor_ms(cursor: dict[str, Any] | None) -> int | None:
    value = None if not cursor else cursor.get("replication_key_value")
    if not value:
        return None
    moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return to_ms(moment)


def check(
    runner: Runner,
    pipeline: str,
    *,
    repair: bool = False,
    deletes: str = "report",
    leaf_rows: int = LEAF_ROWS,
    widths: Sequence[int] = WIDTHS,
) -> DriftReport:
    """Compare a pipeline's synced range in the source and the hub; optionally :func:`repair`."""
    if deletes not in DELETE_POLICIES:
        raise ValueError(f"deletes must be one of {', '.join(DELETE_POLICIES)}, not {deletes!r}")
    started = time.perf_counter()
    spec = runner.project.pipeline(pipeline)
    report = DriftReport(pipeline=pipeline)
    mapping = runner.mapping(spec)
    if "source_modified_at" not in mapping.target_fields:
        report.status = "not_applicable"
        report.note = (
            f"mapping of {pipeline!r} does not fill source_modified_at from the source's modification "
            "time; drift detection buckets on it (add it to the mapping)"
        )
        return report
    with runner.engine.connect() as conn:
        cursor = runner.state.get(conn, spec.source.connection, spec.source.stream)
    end_ms = _cursor_ms(cursor)
    if end_ms is None:
        report.status = "never_synced"
        report.note = f"pipeline {pipeline!r} has no cursor yet: run it first"
        return report
    try:
        cmp = _Comparison(runner, spec)
    except DriftNotSupported as exc:
        report.status = "not_applicable"
        report.note = str(exc)
        return report
    report.range_end = from_ms(end_ms).isoformat()
    _compare(cmp, report, None, end_ms, leaf_rows, tuple(widths))
    report.hub_without_time = cmp.hub.without_time()
    report.source_requests = getattr(cmp.source, "requests", 0)
    report.status = "drift" if report.drifted else "in_sync"
    if report.drifted:
        log.warning(
            "%s: drift: %d missing, %d stale, %d deleted in %d bucket(s), first %s",
            pipeline,
            len(report.missing),
            len(report.stale),
            len(report.deleted),
            len(report.buckets),
            report.buckets[0].name if report.buckets else "-",
        )
    if repair and (report.drifted or report.quarantined):
        report.repaired = repair_report(cmp, report, deletes=deletes)
        if report.drifted:
            report.status = "repaired"
    report.duration_s = time.perf_counter() - started
    return report


def _compare(
    cmp: _Comparison,
    report: DriftReport,
    start_ms: int | None,
    end_ms: int,
    leaf_rows: int,
    widths: tuple[int, ...],
) -> None:
    """Coarse digests, descend into differing buckets, then compare ids in the leaves."""
    level = 0
    whole = [(start_ms, end_ms)]
    src = cmp.source_buckets(whole, widths[0])
    hub = cmp.hub.buckets(whole, widths[0])
    report.source_rows = sum(d.count for d in src.values())
    report.hub_rows = sum(d.count for d in hub.values())
    if src or hub:
        report.range_start = from_ms(min(src.keys() | hub.keys())).isoformat()
    leaves: list[DriftBucket] = []
    while True:
        width = widths[level]
        keys = sorted(src.keys() | hub.keys())
        report.buckets_compared += len(keys)
        empty = Digest()
        differing = [
            DriftBucket(k, width, src.get(k, empty), hub.get(k, empty))
            for k in keys
            if src.get(k, empty) != hub.get(k, empty)
        ]
        finer = level + 1 < len(widths)
        split = [b for b in differing if finer and max(b.source.count, b.hub.count) > leaf_rows]
        split_at = {b.start_ms for b in split}
        leaves += [b for b in differing if b.start_ms not in split_at]
        if not split:
            break
        level += 1
        # Every differing bucket of this level is re-read at the next width in one go per side.
        ranges = [_clip(b.start_ms, b.start_ms + width, start_ms, end_ms) for b in split]
        src = cmp.source_buckets(ranges, widths[level])
        hub = cmp.hub.buckets(ranges, widths[level])
    report.buckets = sorted(leaves, key=lambda b: b.start_ms)
    _classify(cmp, report, start_ms, end_ms)


def _clip(lo: int, hi: int, start: int | None, end: int) -> tuple[int | None, int]:
    return (lo if start is None else max(lo, start)), min(hi, end)


def _classify(cmp: _Comparison, report: DriftReport, start_ms: int | None, end_ms: int) -> None:
    """Id-level comparison inside the differing leaf buckets."""
    if not report.buckets:
        return
    ranges = [_clip(b.start_ms, b.start_ms + b.width_ms, start_ms, end_ms) for b in report.buckets]
    src = dict(cmp.source_rows(ranges))
    hub = dict(cmp.hub.rows(ranges))
    stale = {s for s in src.keys() & hub.keys() if src[s] != hub[s]}
    only_src = sorted(src.keys() - hub.keys())
    only_hub = sorted(hub.keys() - src.keys())
    # A source record absent from these hub buckets may sit elsewhere in the hub (older time, outside
    # the range), be soft-deleted there, or be quarantined.
    in_hub = cmp.hub.lookup(only_src)
    quarantined = _open_quarantine(cmp, only_src)
    missing: list[str] = []
    for sid in only_src:
        held = in_hub.get(sid)
        if held is not None and not held[1]:
            if held[0] != src[sid]:
                stale.add(sid)
        elif sid in quarantined:
            report.quarantined.append(sid)
        else:
            missing.append(sid)
    # A hub record absent from these source buckets may have moved (edited since, out of the range)
    # or be gone from the source: ask the source for exactly those ids.
    raw = {sid: cmp.raw_of.get(sid, sid) for sid in only_hub}
    now = cmp.source.lookup(list(raw.values())) if raw else {}
    now_by_sid = {cmp.sid_of(r): ms for r, ms in now.items()}
    for sid in only_hub:
        ms = now_by_sid.get(sid)
        if ms is None:
            report.deleted.append(sid)
        elif ms >= end_ms:
            report.pending.append(sid)
        elif ms != hub[sid]:
            stale.add(sid)
    report.missing = missing
    report.stale = sorted(stale)


def _open_quarantine(cmp: _Comparison, source_ids: list[str]) -> set[str]:
    from tongbu.state.models import QuarantinedRecord

    q = QuarantinedRecord.__table__
    found: set[str] = set()
    with cmp.runner.engine.connect() as conn:
        for i in range(0, len(source_ids), _BATCH):
            found.update(
                r[0]
                for r in conn.execute(
                    select(q.c.source_id).where(
                        q.c.tenant_id == cmp.runner.tenant,
                        q.c.pipeline == cmp.spec.name,
                        q.c.status == "open",
                        q.c.source_id.in_(source_ids[i : i + _BATCH]),
                    )
                )
            )
    return found


def repair_report(cmp: _Comparison, report: DriftReport, *, deletes: str = "report") -> dict[str, int]:
    """Re-read what a check found through the pipeline's mapping, quarantine and upsert."""
    runner, spec = cmp.runner, cmp.spec
    mapping, hub = cmp.mapping, runner.hub
    sids = [*report.missing, *report.stale, *report.quarantined]
    raw_ids = [cmp.raw_of.get(s, s) for s in sids]
    done = {"reread": 0, "written": 0, "quarantined": 0, "undeleted": 0, "soft_deleted": 0}
    lock = PipelineLock(runner.engine, spec.name, tenant=runner.tenant)
    lock.acquire()  # never interleave with a run of this pipeline
    resolver = _LazyHubResolver(hub, forked=False)
    mapping.set_resolver(resolver)
    try:
        landed: list[str] = []
        rows: list[dict[str, Any]] = []
        bad: list[dict[str, Any]] = []

        def flush() -> None:
            with runner.engine.begin() as conn:
                if rows:
                    batch = hub.prepare(mapping.target_object, rows, source_system=spec.source.connection)
                    cmp.hub.invalidate(conn, batch.source_ids)
                    res = hub.write(conn, batch)
                    done["written"] += res.written
                    ids = batch.source_ids
                    landed.extend(ids)
                    runner.quarantine.resolve_landed(conn, spec.name, ids)
                    done["undeleted"] += cmp.hub.undelete(conn, ids)
                if bad:
                    runner.quarantine.add_many(conn, bad)
                    done["quarantined"] += len(bad)
                lock.renew(conn)
            rows.clear()
            bad.clear()

        for record in _read(cmp, raw_ids):
            done["reread"] += 1
            try:
                rows.append(mapping.apply(record))
            except MappingError as exc:
                bad.append(runner._quarantine_row(spec, record, "mapping", f"drift repair: {exc}", None))
            if len(rows) + len(bad) >= _BATCH:
                flush()
        flush()
        if deletes == "soft-delete" and report.deleted:
            with runner.engine.begin() as conn:
                done["soft_deleted"] = hub.mark_deleted(
                    conn, mapping.target_object, report.deleted, source_system=spec.source.connection
                )
                lock.renew(conn)
    finally:
        resolver.close()
        lock.release()
    log.warning("%s: drift repair %s", spec.name, done)
    return done


def _read(cmp: _Comparison, raw_ids: list[Any]) -> Iterator[dict[str, Any]]:
    stream = cmp.stream
    post: Callable[..., Any] | None = getattr(stream, "post_process", None)
    for record in cmp.source.records(raw_ids):
        if post is not None:
            record = post(record, None)
            if record is None:
                continue
        yield record


def check_all(
    runner: Runner,
    pipelines: Sequence[str] | None = None,
    *,
    repair: bool = False,
    deletes: str = "report",
    on_error: Callable[[str, BaseException], None] | None = None,
) -> list[DriftReport]:
    """:func:`check` every named (default: every enabled) pipeline; one failure does not stop the
    others (it is reported with status ``error``)."""
    names = list(pipelines or [n for n, p in runner.project.pipelines.items() if p.enabled])
    out = []
    for name in names:
        try:
            out.append(check(runner, name, repair=repair, deletes=deletes))
        except Exception as exc:  # noqa: BLE001 - reported per pipeline, the others still run
            if on_error is not None:
                on_error(name, exc)
            out.append(DriftReport(pipeline=name, status="error", note=f"{type(exc).__name__}: {exc}"))
    return out


def _width_label(ms: int) -> str:
    for unit, size in (("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", SECOND)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


__all__ = ["DriftBucket", "DriftReport", "HubSide", "WIDTHS", "check", "check_all", "drift_source_for"]
