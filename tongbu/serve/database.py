"""The one database thread of ``tongbu serve``: inbox inserts and hub writes, group-committed."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    delete,
    select,
    update,
)

from connectors.kit.events import InboundEvent
from tongbu.inbox import DONE_STATUSES, event_inbox
from tongbu.serve.observers import AppliedChange

log = logging.getLogger("tongbu.serve")  # one logger for the whole command


class DbJob:
    __slots__ = ("kind", "data", "future")

    def __init__(self, kind: str, data: Any) -> None:
        self.kind = kind
        self.data = data
        self.future: Future[Any] = Future()


class Database:
    """One thread owns every write to the inbox and the hub: it commits queued jobs together."""

    def __init__(
        self,
        engine: Engine,
        tenant: str,
        *,
        max_batch: int = 256,
        on_commit: Callable[[list[AppliedChange]], None] | None = None,
    ) -> None:
        self.engine = engine
        self.tenant = tenant
        self.max_batch = max_batch
        self.on_commit = on_commit
        self._jobs: queue.SimpleQueue[DbJob | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="tongbu-serve-db", daemon=True)
        self._thread.start()
        self.commits = 0

    def submit(self, kind: str, data: Any) -> Future[Any]:
        job = DbJob(kind, data)
        self._jobs.put(job)
        return job.future

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(30)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch = [job]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[DbJob]) -> None:
        try:
            with self.engine.begin() as conn:
                results = [self._execute(conn, job) for job in batch]
                stamp = time.time()
                for job, res in zip(batch, results, strict=True):
                    if job.kind == "apply":
                        conn.execute(
                            update(event_inbox)
                            .where(event_inbox.c.id.in_(res["ids"]))
                            .values(
                                status=res["status"],
                                applied_at=stamp,
                                attempts=event_inbox.c.attempts + 1,
                                error=None,
                            )
                        )
            self.commits += 1
        except Exception as exc:
            if len(batch) > 1:
                # One bad job must not sink its neighbours: retry each on its own.
                for job in batch:
                    self._commit([job])
                return
            batch[0].future.set_exception(exc)
            return
        done = time.time()
        applied: list[AppliedChange] = []
        for job, res in zip(batch, results, strict=True):
            if job.kind == "apply":
                res["change"].applied_at = done
                applied.append(res["change"])
            job.future.set_result(res)
        if applied and self.on_commit is not None:
            self.on_commit(applied)

    def _execute(self, conn: Connection, job: DbJob) -> Any:
        if job.kind == "insert":
            return self._insert(conn, job.data)
        if job.kind == "apply":
            prepared, change, ids = job.data
            counts: dict[str, int] = {}
            if prepared.write is not None:
                with conn.begin_nested():  # a failing write rolls back alone, not the whole group
                    counts = dict(prepared.write(conn))
            change.counts = counts
            status = "quarantined" if counts.get("quarantined") else prepared.status
            change.status = status
            return {"ids": ids, "status": status, "change": change}
        if job.kind == "fail":
            ids, error = job.data
            conn.execute(
                update(event_inbox)
                .where(event_inbox.c.id.in_(ids))
                .values(status="failed", attempts=event_inbox.c.attempts + 1, error=error[:2000])
            )
            return None
        if job.kind == "purge":
            before = job.data
            return conn.execute(
                delete(event_inbox).where(
                    event_inbox.c.received_at < before, event_inbox.c.status.in_((*DONE_STATUSES, "failed"))
                )
            ).rowcount
        raise ValueError(job.kind)

    def _insert(self, conn: Connection, events: list[InboundEvent]) -> list[InboundEvent]:
        fresh: list[InboundEvent] = []
        for ev in events:
            exists = conn.execute(
                select(event_inbox.c.id).where(
                    event_inbox.c.tenant_id == self.tenant,
                    event_inbox.c.source == ev.source,
                    event_inbox.c.dedup_key == ev.dedup_key,
                )
            ).first()
            if exists is not None:
                continue  # a replay or a retry of something we already hold
            ev.id = int(
                conn.execute(
                    event_inbox.insert().values(
                        tenant_id=self.tenant,
                        source=ev.source,
                        dedup_key=ev.dedup_key,
                        record_key=ev.record_key,
                        kind=ev.kind,
                        payload=ev.payload,
                        received_at=ev.received_at,
                        status="pending",
                        attempts=0,
                    )
                ).inserted_primary_key[0]
            )
            fresh.append(ev)
        return fresh
