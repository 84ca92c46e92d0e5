"""A full scan of WeCom's external contacts: the only way to read them, since WeCom has no
"modified since" filter.

``batch/get_by_user`` returns one item per (employee, contact) *relation*, grouped by employee, so a
contact followed by three sales reps arrives three times, possibly hundreds of pages apart. The scan
merges those into one record per contact. To keep memory flat at 100,000+ contacts the relations are
spilled into a private temporary SQLite file and read back grouped, in first-seen order.

A :class:`ScanReport` says whether the scan *completed*: every follow user's pages read to the empty
``next_cursor``. Only a complete scan may be used to conclude that a contact is gone (the rescan's
deletion step); a scan that stopped early — an exception, a consumer that broke off — never is.
"""

from __future__ import annotations

import marshal
import os
import queue
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from connectors.wecom.client import WeComClient, WeComError
from connectors.wecom.records import contact_record, follow_from_batch, group_chat_record, tag_rows

MAX_USERS_PER_BATCH = 100


@dataclass
class ScanReport:
    """What a full scan saw; ``complete`` is set only after the last record was handed out."""

    kind: str
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    complete: bool = False
    follow_users: int = 0
    relations: int = 0
    records: int = 0
    pages: int = 0
    tag_refreshes: int = 0

    @property
    def duration_s(self) -> float:
        """Seconds from start to finish (or to now while running)."""
        return (self.finished_at or time.time()) - self.started_at


class TagNames:
    """tag_id → (group name, tag name), refreshed when an id not seen before turns up mid-scan."""

    def __init__(self, client: WeComClient, *, max_refreshes: int = 5) -> None:
        self._client = client
        self._names: dict[str, tuple[str, str]] = {}
        self._missing: set[str] = set()
        self._lock = threading.Lock()
        self.refreshes = 0
        self.max_refreshes = max_refreshes
        self.rows: list[dict[str, Any]] = []
        self.refresh()

    def refresh(self) -> None:
        """Re-read ``get_corp_tag_list``."""
        rows = tag_rows(self._client.get_corp_tag_list())
        with self._lock:
            self.rows = rows
            self._names = {r["tag_id"]: (r["group_name"] or "", r["tag_name"] or "") for r in rows}
            self._missing.clear()

    def __call__(self, tag_id: str) -> tuple[str, str] | None:
        found = self._names.get(tag_id)
        if found is None and tag_id not in self._missing and self.refreshes < self.max_refreshes:
            # A tag created after the list was read: one refresh finds it; a deleted one stays missing.
            self.refreshes += 1
            self.refresh()
            found = self._names.get(tag_id)
            if found is None:
                with self._lock:
                    self._missing.add(tag_id)
        return found


class _RelationSpill:
    """Relations on disk, read back grouped by contact.

    Append-only (no index while writing, so inserts stay cheap); grouping is one ``ORDER BY`` at the
    end. Each contact comes back once with all its follow users, whatever pages they were on.
    """

    def __init__(self, directory: str | None = None) -> None:
        self._dir = tempfile.mkdtemp(prefix="tongbu-wecom-scan-", dir=directory)
        os.chmod(self._dir, 0o700)
        self._db = sqlite3.connect(os.path.join(self._dir, "relations.db"), check_same_thread=False)
        self._db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA temp_store=FILE;"
            "CREATE TABLE relation (ext TEXT NOT NULL, body BLOB NOT NULL);"
        )

    def add(self, items: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
        # marshal: the fastest round trip for plain dicts/lists/str/int, on a file only this process reads.
        self._db.executemany(
            "INSERT INTO relation VALUES (?, ?)", [(ext, marshal.dumps((c, f))) for ext, c, f in items]
        )

    def contacts(self) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
        self._db.commit()
        rows = self._db.execute("SELECT ext, body FROM relation ORDER BY ext, rowid")
        current: str | None = None
        contact: dict[str, Any] = {}
        follows: dict[str, dict[str, Any]] = {}
        for ext, body in rows:
            c, f = marshal.loads(body)
            if ext != current:
                if current is not None:
                    yield contact, list(follows.values())
                current, contact, follows = ext, c, {}
            follows[f["userid"]] = f  # one relation per employee, even if a page repeated it
        if current is not None:
            yield contact, list(follows.values())

    def close(self) -> None:
        self._db.close()
        for name in os.listdir(self._dir):
            os.unlink(os.path.join(self._dir, name))
        os.rmdir(self._dir)


def _prefetched_pages(
    client: WeComClient, users: list[str], batch_limit: int, depth: int = 4
) -> Iterator[list[dict[str, Any]]]:
    """``batch/get_by_user`` pages of every block of 100 employees, fetched one page ahead on a thread.

    Pages are sequential (each cursor comes from the previous answer), so the most that can overlap
    is fetching page n+1 while page n is merged and spilled — which hides WeCom's response time.
    """
    pages: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def fetch() -> None:
        try:
            for start in range(0, len(users), MAX_USERS_PER_BATCH):
                for page in client.iter_batch_by_user(
                    users[start : start + MAX_USERS_PER_BATCH], limit=batch_limit
                ):
                    while not stop.is_set():
                        try:
                            pages.put(page, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
            pages.put(done)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            pages.put(exc)

    worker = threading.Thread(target=fetch, name="wecom-scan-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = pages.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(30)


def scan_external_contacts(
    client: WeComClient,
    report: ScanReport | None = None,
    *,
    batch_limit: int = 100,
    follow_users: list[str] | None = None,
    tags: TagNames | None = None,
    spill_dir: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Every external contact once, with all its follow users (see :mod:`connectors.wecom.records`).

    API calls: 1 ``get_follow_user_list`` + 1 ``get_corp_tag_list`` + one ``batch/get_by_user`` per
    page of up to ``batch_limit`` relations across blocks of 100 employees — the fewest the page sizes
    allow, within one page per block of 100 employees.
    """
    report = report if report is not None else ScanReport("external_contacts")
    names = tags or TagNames(client)
    users = list(dict.fromkeys(follow_users if follow_users is not None else client.get_follow_user_list()))
    report.follow_users = len(users)
    spill = _RelationSpill(spill_dir)
    try:
        for page in _prefetched_pages(client, users, batch_limit):
            report.pages += 1
            items = []
            for item in page:
                contact = item.get("external_contact") or {}
                ext = contact.get("external_userid")
                if not ext:
                    continue
                items.append((ext, contact, follow_from_batch(item.get("follow_info") or {}, names)))
            report.relations += len(items)
            spill.add(items)
        report.tag_refreshes = names.refreshes
        for contact, follows in spill.contacts():
            report.records += 1
            yield contact_record(contact, follows)
        report.complete = True
    finally:
        report.finished_at = time.time()
        spill.close()


def scan_group_chats(
    client: WeComClient,
    report: ScanReport | None = None,
    *,
    list_limit: int = 1000,
    workers: int = 4,
    chunk: int = 200,
) -> Iterator[dict[str, Any]]:
    """Every customer group chat with members: ``groupchat/list`` pages, then ``groupchat/get`` per chat
    (``workers`` at a time — the client's concurrency bound keeps that under WeCom's 45033 limit)."""
    report = report if report is not None else ScanReport("group_chats")

    def detail(entry: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return group_chat_record(client.get_group_chat(entry["chat_id"]), entry.get("status"))
        except WeComError as exc:
            if exc.errcode == 86001:  # dismissed between list and get
                return None
            raise

    try:
        pending: list[dict[str, Any]] = []
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="wecom-chat") as pool:

            def flush() -> Iterator[dict[str, Any]]:
                for rec in pool.map(detail, pending):
                    if rec is not None:
                        report.records += 1
                        yield rec
                pending.clear()

            for entry in client.iter_group_chats(limit=list_limit):
                pending.append(entry)
                if len(pending) >= chunk:
                    yield from flush()
            yield from flush()
        report.complete = True
    finally:
        report.finished_at = time.time()


def scan_corp_tags(client: WeComClient, report: ScanReport | None = None) -> Iterator[dict[str, Any]]:
    """Every corp tag, one record per tag with its group."""
    report = report if report is not None else ScanReport("corp_tags")
    try:
        for row in tag_rows(client.get_corp_tag_list()):
            report.records += 1
            yield row
        report.complete = True
    finally:
        report.finished_at = time.time()
