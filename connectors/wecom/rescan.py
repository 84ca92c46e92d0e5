"""The periodic full rescan: repairs whatever the callbacks missed, and finds deletions.

WeCom has no "modified since" filter and its callbacks are best-effort (a receiver that was down loses
them, and some edits — remark mobiles only, a customer renaming themself — never send one). So on a
schedule we read every contact (:func:`connectors.wecom.scan.scan_external_contacts`), map and upsert
it (the hub's content hash makes unchanged contacts cost one index probe and no write), and then
soft-delete hub contacts that the scan did not see.

The deletion step is where a bug destroys data, so it is guarded:

* it runs only after a **complete** scan (every follow user paged to the end, no error);
* rows the event path wrote *during* the scan are left alone (they are newer than the scan), and the
  scan does not overwrite them either; the check is repeated inside the deleting UPDATE itself, so a
  callback applied between choosing the candidates and deleting them also wins;
* if it would delete more than ``max_delete_fraction`` of the hub's WeCom contacts (default 50 %), it
  refuses and says so — a wrong secret or a permission change looks exactly like "everyone left".
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from connectors.wecom.client import WeComClient
from connectors.wecom.hub import WeComHubWriter, WriteResult
from connectors.wecom.scan import ScanReport, scan_external_contacts
from tongbu.hub.store import hub_table
from tongbu.state.models import SyncRun
from tongbu.state.store import PipelineLock, RunHistory

log = logging.getLogger("tongbu.wecom.rescan")
_RUNS = SyncRun.__table__
# The event path may run in another process; allow for a little clock difference between the two.
_CLOCK_SLACK_S = 2.0


@dataclass
class RescanResult:
    """What a rescan did (Dagster metadata and the CLI show these)."""

    pipeline: str
    status: str = "running"
    contacts_seen: int = 0
    written: int = 0
    unchanged: int = 0
    skipped_newer: int = 0
    quarantined: int = 0
    accounts_written: int = 0
    deleted: int = 0
    delete_candidates: int = 0
    deletion_skipped: str | None = None
    complete: bool = False
    relations: int = 0
    follow_users: int = 0
    pages: int = 0
    api_calls: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    run_id: int | None = None
    error: str | None = None

    @property
    def records_per_second(self) -> float:
        """Contacts read per second."""
        return self.contacts_seen / self.duration_s if self.duration_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        d = asdict(self)
        d["records_per_second"] = round(self.records_per_second, 1)
        return d


def rescan_external_contacts(
    client: WeComClient,
    writer: WeComHubWriter,
    *,
    batch_size: int = 2000,
    batch_limit: int = 100,
    delete_missing: bool = True,
    max_delete_fraction: float = 0.5,
    progress: Callable[[RescanResult], None] | None = None,
) -> RescanResult:
    """Full scan → hub, then the guarded deletion step. Raises after recording a failed run."""
    engine: Engine = writer.engine
    pipeline = f"{writer.source_system}_rescan"
    result = RescanResult(pipeline=pipeline)
    lock = PipelineLock(engine, pipeline, tenant=writer.tenant)
    lock.acquire()
    started = time.perf_counter()
    calls_before = dict(client.calls)
    seen: set[str] = set()
    try:
        result.run_id = _start_run(engine, writer.tenant, pipeline)
        scan_start = time.time() - _CLOCK_SLACK_S
        with engine.connect() as conn:
            db_scan_start = writer.hub.db_now(conn)
        report = ScanReport("external_contacts")
        batch: list[dict[str, Any]] = []

        def flush() -> None:
            mapped = writer.map(batch, run_id=result.run_id)
            seen.update(mapped.seen)
            with engine.begin() as conn:
                # A callback applied while we scanned is newer than what we read: keep it.
                newer = writer.touched_by_events(conn, [r["source_id"] for r in mapped.contacts], scan_start)
                if newer:
                    mapped.contacts = [r for r in mapped.contacts if r["source_id"] not in newer]
                    result.skipped_newer += len(newer)
                res: WriteResult = writer.write(conn, mapped)
                lock.renew(conn)
            result.written += res.contacts.written
            result.unchanged += res.contacts.unchanged
            result.accounts_written += res.accounts.written
            result.quarantined += res.quarantined
            result.contacts_seen += len(mapped.seen)
            batch.clear()
            if progress is not None:
                progress(result)

        for record in scan_external_contacts(client, report, batch_limit=batch_limit):
            batch.append(record)
            if len(batch) >= batch_size:
                flush()
        flush()
        result.complete = report.complete
        result.relations, result.follow_users, result.pages = (
            report.relations,
            report.follow_users,
            report.pages,
        )
        if delete_missing:
            _delete_unseen(writer, seen, scan_start, db_scan_start, result, max_delete_fraction, lock)
        result.status = "success"
    except BaseException as exc:
        result.status = "failed"
        result.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        result.duration_s = time.perf_counter() - started
        result.api_calls = {
            k: v - calls_before.get(k, 0) for k, v in client.calls.items() if v - calls_before.get(k, 0)
        }
        try:
            _finish_run(engine, result)
        finally:
            lock.release()
    return result


def _delete_unseen(
    writer: WeComHubWriter,
    seen: set[str],
    scan_start: float,
    db_scan_start: dt.datetime,
    result: RescanResult,
    max_fraction: float,
    lock: PipelineLock,
) -> None:
    if not result.complete:
        result.deletion_skipped = "scan incomplete"
        return
    table = hub_table("contacts")
    with writer.engine.connect() as conn:
        live = (
            conn.execute(
                select(table.c.source_id).where(
                    table.c.tenant_id == writer.tenant,
                    table.c.source_system == writer.source_system,
                    # Rows written after the scan began (by anyone) are newer than what the scan read.
                    table.c.deleted_at.is_(None),
                    table.c.updated_at < db_scan_start,
                )
            )
            .scalars()
            .all()
        )
        total = writer.hub.count(conn, "contacts", source_system=writer.source_system)
        gone = [sid for sid in live if sid not in seen]
        # Contacts a callback added or changed while we scanned exist even if the scan missed them.
        gone = sorted(set(gone) - writer.touched_by_events(conn, gone, scan_start))
    result.delete_candidates = len(gone)
    if not gone:
        return
    if total >= 20 and len(gone) > max_fraction * total:
        result.deletion_skipped = (
            f"refused to delete {len(gone)} of {total} contacts (> {max_fraction:.0%}); check the WeCom "
            "secret and its visible range, then rerun with a higher max_delete_fraction if it is real"
        )
        log.warning("wecom rescan: %s", result.deletion_skipped)
        return
    with writer.engine.begin() as conn:
        # The candidates were read on another connection; a callback may have changed one since.
        # The same guards as the read, re-checked inside the one UPDATE, keep such a contact.
        result.deleted = writer.delete(
            conn, gone, unchanged_since=db_scan_start, no_events_since=scan_start
        ).deleted
        lock.renew(conn)


def _start_run(engine: Engine, tenant: str, pipeline: str) -> int:
    return RunHistory(engine, tenant).start(pipeline, full_refresh=True)


def _finish_run(engine: Engine, result: RescanResult) -> None:
    RunHistory(engine).finish(  # finish addresses the run by its id
        result.run_id,
        status=result.status,
        error=result.error,
        rows_read=result.contacts_seen,
        rows_written=result.written,
        rows_unchanged=result.unchanged,
        rows_quarantined=result.quarantined,
        duration_s=result.duration_s,
        cursor_after={"complete": result.complete, "deleted": result.deleted},
    )
