"""The tender feed: read new notices, keep the history, match subscriptions, fold into the CRM, alert.

One :meth:`TenderFeed.poll` reads the ``notices`` stream of the ``tenders.connection`` after its
cursor (a cursor of its own, partition ``history``, next to the activities pipeline's), and per batch,
in one transaction, adds the notices to the history and moves the cursor — so the cursor never
passes a notice that is not stored. After each batch the new notices are matched against every
subscription (queued in ``tender_alerts``, once per pair) and their projects folded into the CRM
(:mod:`connectors.tender.crm`). :meth:`TenderFeed.send_alerts` sends the queue through the shared
notifier (:mod:`pipelines.notify`): the key is ``tender:<subscriber>:<notice id>``, so a subscriber
hears of a notice once per channel and recipient, across restarts and however many of their
subscriptions match it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine

from connectors.kit.notify import Notification
from connectors.tender.crm import Us, fold
from connectors.tender.history import TenderHistory
from pipelines.notify import Notifier
from pipelines.project import Project, ProjectError
from pipelines.runner import Runner
from tongbu.state.store import StateStore

STREAM = "notices"
PARTITION = "history"
CST = dt.timezone(dt.timedelta(hours=8))


@dataclass
class PollResult:
    """What one poll did (the Dagster asset reports it, the checks read it)."""

    read: int = 0
    new: int = 0
    updated: int = 0
    listed: int = 0
    parsed: int = 0
    missing: int = 0
    antibot: int = 0
    matched: int = 0
    projects: int = 0
    crm_written: int = 0
    cursor: dict[str, Any] | None = None
    new_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able figures (no ids)."""
        out = asdict(self)
        out.pop("new_ids")
        return out


@dataclass
class AlertResult:
    """What one round of alert sending did."""

    pending: int = 0
    sent: int = 0
    already_sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class TenderFeed:
    """The tender feed of one project (its ``tenders:`` section and connection)."""

    def __init__(self, project: Project, engine: Engine | None = None, *, batch_size: int = 200) -> None:
        if engine is None:
            from tongbu.db import get_engine

            engine = get_engine()
        self.project = project
        self.engine = engine
        self.spec = project.tenders
        self.connection = self.spec.connection
        if self.connection not in project.connections:
            raise ProjectError(
                f"tenders.connection: {self.connection!r} is not a connection of tongbu.yaml "
                f"(known: {', '.join(sorted(project.connections)) or 'none'})"
            )
        self.history = TenderHistory(engine, project.tenant)
        self.state = StateStore(engine, project.tenant)
        self.us = Us.from_config(self.spec.us)
        self.batch_size = batch_size

    def cursor(self) -> dict[str, Any] | None:
        """Where the next poll starts."""
        with self.engine.connect() as c:
            return self.state.get(c, self.connection, STREAM, PARTITION)

    def poll(self, *, full_refresh: bool = False) -> PollResult:
        """Read what is new, store it, match it, fold it into the CRM."""
        result = PollResult()
        runner = Runner(self.project, self.engine)
        tap = runner.make_tap(self.connection)
        stream = tap.streams[STREAM]
        stream.start_cursor_from(None if full_refresh else self.cursor())
        batch: list[dict[str, Any]] = []

        def commit() -> None:
            if not batch:
                return
            with self.engine.begin() as conn:
                added = self.history.add(batch, conn=conn)
                result.cursor = stream.cursor_for_record(batch[-1])
                self.state.put(conn, self.connection, STREAM, result.cursor, PARTITION)
            result.read += len(batch)
            result.new += len(added.new)
            result.updated += added.updated
            result.new_ids += added.new
            # Matching and the CRM come after the commit: both are idempotent and re-derived from
            # the history, so a crash here is finished by the next poll's re-read (lookback) or fold.
            result.matched += self.history.match(added.new)
            if self.spec.crm:
                projects = [str(r["project_no"]) for r in batch if r.get("project_no")]
                folded = fold(self.engine, self.history, projects, self.us)
                result.projects += folded.projects
                result.crm_written += folded.written
            batch.clear()

        try:
            for record in stream.get_records(None):
                batch.append(record)
                if len(batch) >= self.batch_size:
                    commit()
            commit()
        finally:
            result.listed, result.parsed, result.missing = stream.listed, stream.parsed, stream.missing
            result.antibot = tap.client.antibot_pages if "client" in tap.__dict__ else 0
        return result

    # -- alerts ------------------------------------------------------------------------------------
    def notification(self, alert: dict[str, Any], record: dict[str, Any]) -> Notification:
        """The alert for one (subscriber, notice)."""
        published = dt.datetime.fromisoformat(str(record["publish_time"])).astimezone(CST)
        lines = [
            f"订阅：{alert['name']}",
            f"类型：{record.get('notice_type') or ''}　地区：{record.get('region') or ''}",
            f"采购人：{record.get('buyer') or ''}",
            f"发布时间：{published:%Y-%m-%d %H:%M}",
            f"项目编号：{record.get('project_no') or ''}　公告编号：{record['id']}",
        ]
        if record.get("budget"):
            lines.append(f"预算：{record['budget']} 元")
        for lot in record.get("lots") or []:
            lines.append(f"包{lot.get('lot_no')}：{lot.get('supplier')} {lot.get('amount') or ''} 元")
        return Notification(
            subject=f"[标讯] {record.get('title') or record.get('project_name') or record['id']}",
            body="\n".join(lines),
            key=f"tender:{alert['subscriber']}:{record['id']}",
            url=record.get("url"),
        )

    def send_alerts(self, notifier: Notifier | None = None, *, limit: int = 500) -> AlertResult:
        """Send every queued alert on its subscription's channels; failures stay queued."""
        own = notifier is None
        notifier = notifier or Notifier(self.project, self.engine)
        result = AlertResult()
        try:
            pending = self.history.pending_alerts(limit)
            result.pending = len(pending)
            records = {r["id"]: r for r in self.history.records({a["notice_id"] for a in pending})}
            for alert in pending:
                record = records.get(alert["notice_id"])
                if record is None:
                    self.history.mark_sent(alert["id"], error="notice no longer in the history")
                    continue
                channels: dict[str, list[str]] = alert["channels"] or {}
                base = self.notification(alert, record)
                errors: list[str] = []
                for channel, recipients in channels.items():
                    n = Notification(
                        subject=base.subject, body=base.body, key=base.key, url=base.url,
                        recipients=tuple(recipients or ()),
                    )  # fmt: skip
                    try:
                        deliveries = notifier.send(channel, n)
                    except ProjectError as exc:
                        errors.append(str(exc))
                        continue
                    for d in deliveries:
                        if d.status == "sent":
                            result.sent += 1
                        elif d.status == "already_sent":
                            result.already_sent += 1
                        elif d.status == "failed":
                            result.failed += 1
                            errors.append(f"{channel}: {d.error}")
                        else:  # in_progress: another sender has it; ask again next round
                            errors.append(f"{channel}: in progress elsewhere")
                self.history.mark_sent(alert["id"], error="; ".join(errors) if errors else None)
                result.errors += errors
        finally:
            if own:
                notifier.close()
        return result
