"""Historical migration: backfill one time window of a source's history into the hub, then verify it.

Years of history are loaded as time-window partitions of the source's **modification time** (a record
is in exactly one window: the one of its current modification time), each in its own run, in
off-peak batches (``dagster_project.history``). :func:`backfill_window` does one partition:

1. **extract**: the ids and modification times in ``[start, end)``, from the connector's drift
   interface (:class:`connectors.kit.drift.DriftSource`; Kingdee: two columns, paged), then the full
   records by id, through the stream's own read, as a sync reads them;
2. **clean**: a record listed twice is read once; a record whose modification time left the window
   between listing and reading (edited meanwhile) is skipped, since it now belongs to a later window
   (or the live sync); a record the mapping rejects is quarantined with the reason;
3. **transform and load**: the pipeline's mapping and the hub's idempotent upsert, in batches of one
   transaction each (rows and quarantine together), under the pipeline's own lock, so it never
   interleaves with the live incremental sync. The live cursor is never read or moved;
4. **verify**: the window's source count against the hub's (live rows with ``source_modified_at`` in
   the window, plus the quarantined), and a seeded random sample of ``sample`` records re-read from
   the source, mapped again and compared by row hash with what the hub holds;
5. **report**: one ``history_partitions`` row per partition (replaced when it is re-run), also
   returned for the Dagster materialisation's metadata.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select

from connectors.kit.drift import to_ms
from mappings.engine import MappingError
from pipelines.drift import _BATCH, _Comparison, _read
from pipelines.history_models import HistoryPartition
from pipelines.runner import Runner, _LazyHubResolver
from tongbu.hub.store import hub_table, row_hash
from tongbu.state.store import PipelineLock, PipelineLocked

log = logging.getLogger("tongbu.history")
_REPORTS = HistoryPartition.__table__
#: records re-read from the source per partition to verify the hub against it
DEFAULT_SAMPLE = 50


class HistoryMismatch(RuntimeError):
    """A backfilled partition does not match its source (the report row says how)."""


@dataclass
class PartitionReport:
    """What backfilling one partition did and found."""

    pipeline: str
    partition_key: str
    window_start: dt.datetime
    window_end: dt.datetime
    status: str = "failed"
    source_rows: int = 0
    rows_read: int = 0
    rows_written: int = 0
    rows_unchanged: int = 0
    rows_quarantined: int = 0
    rows_cleaned: int = 0
    hub_rows: int = 0
    sampled: int = 0
    sample_mismatches: int = 0
    duration_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        """Counts agree and every sampled record matches."""
        return self.status == "verified"

    def as_metadata(self) -> dict[str, Any]:
        """Plain values for Dagster metadata."""
        d = asdict(self)
        d["window_start"] = self.window_start.isoformat()
        d["window_end"] = self.window_end.isoformat()
        d["duration_s"] = round(self.duration_s, 3)
        return d


def _acquire(lock: PipelineLock, wait_s: float) -> None:
    # Off-peak partitions queue behind a running live sync of the same pipeline instead of failing.
    deadline = time.monotonic() + wait_s
    delay = 0.2
    while True:
        try:
            lock.acquire()
            return
        except PipelineLocked:
            if time.monotonic() >= deadline:
                raise
            time.sleep(delay)  # polling an external lock: no event to wait on across processes
            delay = min(delay * 2, 5.0)


def backfill_window(
    runner: Runner,
    pipeline: str,
    partition_key: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    sample: int = DEFAULT_SAMPLE,
    lock_wait_s: float = 900.0,
    verify_only: bool = False,
) -> PartitionReport:
    """Backfill and verify the records modified in ``[start, end)``; raise :class:`HistoryMismatch`
    (after writing the report row) when the hub does not match the source.

    ``verify_only`` re-checks a loaded partition against the source without writing any hub row.
    """
    spec = runner.project.pipeline(pipeline)
    report = PartitionReport(pipeline, partition_key, start, end)
    started = time.perf_counter()
    cmp = _Comparison(runner, spec)
    mapping, hub = cmp.mapping, runner.hub
    lo, hi = to_ms(start), to_ms(end)
    lock = PipelineLock(runner.engine, spec.name, tenant=runner.tenant)
    _acquire(lock, lock_wait_s)
    resolver = _LazyHubResolver(hub, forked=False)
    mapping.set_resolver(resolver)
    try:
        listed = dict(cmp.source.rows([(lo, hi)]))  # raw id -> modified ms (a repeat is read once)
        report.source_rows = len(listed)
        if verify_only:
            report.details["verify_only"] = True
            report.rows_quarantined = _quarantined_in(runner, report.pipeline, cmp, listed)
        else:
            report.rows_cleaned = _load(cmp, runner, report, listed, lo, hi, lock)
        _verify(cmp, runner, report, listed, lo, hi, sample)
    except BaseException as exc:
        report.status = "failed"
        report.details["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        resolver.close()
        lock.release()
        report.duration_s = time.perf_counter() - started
        _save(runner, report)
    if not report.verified:
        raise HistoryMismatch(
            f"{pipeline} partition {partition_key}: source has {report.source_rows} records, the hub "
            f"{report.hub_rows} (+{report.rows_quarantined} quarantined), {report.sample_mismatches} of "
            f"{report.sampled} sampled records differ; re-run the partition"
        )
    return report


def _load(
    cmp: _Comparison,
    runner: Runner,
    report: PartitionReport,
    listed: dict[Any, int],
    lo: int,
    hi: int,
    lock: PipelineLock,
) -> int:
    spec, mapping, hub = cmp.spec, cmp.mapping, runner.hub
    obj, system = mapping.target_object, spec.source.connection
    id_key = cmp.source.id_key
    cleaned = 0
    rows: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []

    def flush() -> None:
        with runner.engine.begin() as conn:
            if rows:
                res = hub.write(conn, hub.prepare(obj, rows, source_system=system))
                report.rows_written += res.written
                report.rows_unchanged += res.unchanged
            if bad:
                runner.quarantine.add_many(conn, bad)
                report.rows_quarantined += len(bad)
            lock.renew(conn)
        rows.clear()
        bad.clear()

    seen: set[Any] = set()
    for record in _read(cmp, list(listed)):
        report.rows_read += 1
        raw = record.get(id_key)
        if raw in seen:  # clean: the source answered a record twice (paging over a moving set)
            cleaned += 1
            continue
        seen.add(raw)
        try:
            row = mapping.apply(record)
        except MappingError as exc:
            bad.append(
                runner._quarantine_row(
                    spec, record, "mapping", f"history {report.partition_key}: {exc}", None
                )
            )
        else:
            modified = row.get("source_modified_at")
            ms = to_ms(modified) if isinstance(modified, dt.datetime) else None
            if ms is not None and not lo <= ms < hi:
                cleaned += 1  # clean: edited since it was listed; its new window (or the live sync) has it
                report.details.setdefault("moved_out", 0)
                report.details["moved_out"] += 1
                continue
            rows.append(row)
        if len(rows) + len(bad) >= _BATCH:
            flush()
    flush()
    return cleaned


def _quarantined_in(runner: Runner, pipeline: str, cmp: _Comparison, listed: dict[Any, int]) -> int:
    open_ids = {str(r.get("source_id")) for r in runner.quarantine.list(pipeline, limit=100_000)}
    return sum(1 for raw in listed if cmp.sid_of(raw) in open_ids)


def _verify(
    cmp: _Comparison,
    runner: Runner,
    report: PartitionReport,
    listed: dict[Any, int],
    lo: int,
    hi: int,
    sample: int,
) -> None:
    hub_rows = dict(cmp.hub.rows([(lo, hi)]))
    report.hub_rows = len(hub_rows)
    moved = int(report.details.get("moved_out", 0))
    expected = report.source_rows - report.rows_quarantined - moved
    # Sample: seeded by the partition, so a re-run checks the same records (and a report can be redone).
    rng = random.Random(f"{runner.tenant}/{report.pipeline}/{report.partition_key}")
    ids = sorted(listed, key=str)
    picked = rng.sample(ids, min(sample, len(ids)))
    table = hub_table(cmp.mapping.target_object)
    mismatches: list[str] = []
    stored: dict[str, str] = {}
    sids = {cmp.sid_of(raw): raw for raw in picked}
    with runner.engine.connect() as conn:
        for i in range(0, len(sids), _BATCH):
            chunk = list(sids)[i : i + _BATCH]
            q = select(table.c.source_id, table.c.row_hash).where(
                table.c.tenant_id == runner.tenant,
                table.c.source_system == cmp.spec.source.connection,
                table.c.source_id.in_(chunk),
                table.c.deleted_at.is_(None),
            )
            stored.update(dict(conn.execute(q).all()))
    quarantined = {str(r.get("source_id")) for r in runner.quarantine.list(report.pipeline, limit=100_000)}
    checked = 0
    for record in _read(cmp, picked):
        try:
            row = cmp.mapping.apply(record)
        except MappingError:
            continue  # rejected again: it must be in the quarantine (checked by the counts)
        sid = str(row["source_id"])
        modified = row.get("source_modified_at")
        if isinstance(modified, dt.datetime) and not lo <= to_ms(modified) < hi:
            continue  # edited since the load: no longer this window's
        checked += 1
        if sid in quarantined and sid not in stored:
            continue
        if stored.get(sid) != row_hash(row, table=table):
            mismatches.append(sid)
    report.sampled = checked
    report.sample_mismatches = len(mismatches)
    if mismatches:
        report.details["mismatched_ids"] = mismatches[:20]
    report.status = "verified" if report.hub_rows == expected and not mismatches else "mismatch"


def _save(runner: Runner, report: PartitionReport) -> None:
    values = {k: v for k, v in report.as_metadata().items() if k in _REPORTS.c and k != "duration_s"}
    values.update(
        tenant_id=runner.tenant,
        window_start=report.window_start,
        window_end=report.window_end,
        details={**report.details, "duration_s": round(report.duration_s, 3)},
    )
    key = (
        _REPORTS.c.tenant_id == runner.tenant,
        _REPORTS.c.pipeline == report.pipeline,
        _REPORTS.c.partition_key == report.partition_key,
    )
    with runner.engine.begin() as conn:
        conn.execute(delete(_REPORTS).where(*key))
        conn.execute(insert(_REPORTS).values(**values))


def reports(runner: Runner, pipeline: str | None = None) -> list[dict[str, Any]]:
    """The stored partition reports of this runner's tenant, oldest window first."""
    q = select(_REPORTS).where(_REPORTS.c.tenant_id == runner.tenant).order_by(_REPORTS.c.window_start)
    if pipeline:
        q = q.where(_REPORTS.c.pipeline == pipeline)
    with runner.engine.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


__all__ = ["DEFAULT_SAMPLE", "HistoryMismatch", "PartitionReport", "backfill_window", "reports"]
