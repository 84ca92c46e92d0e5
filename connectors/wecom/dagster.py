"""Dagster assets, checks and schedules for WeCom connections (connector ``wecom`` in the project file).

Loaded by ``dagster_project`` through the connector hook (:mod:`connectors.kit.dagster`).

Per WeCom connection ``<c>`` (usually ``wecom``):

* ``<c>/external_contacts`` — the **full rescan**: every contact read, mapped and upserted into
  ``crm/contacts`` (and ``crm/accounts`` for contacts with a verified company), unchanged contacts
  written as no-ops, and hub contacts no longer in WeCom soft-deleted — only after a complete scan
  (see :mod:`connectors.wecom.rescan`). Real-time changes arrive between rescans through
  ``tongbu serve``, which reports each applied event on this asset (observation) and on
  ``crm/contacts`` (runless materialisation);
* ``<c>/corp_tags`` and ``<c>/group_chats`` — source snapshots (counts, members) for operations;
* ``<c>/contact_grade_tags`` — the write-back: CRM grade → WeCom 客户等级 tag, downstream of the hub;
* checks: the hub holds exactly the contacts of the last complete scan; the event inbox has no stale
  backlog and no failed events;
* a rescan schedule, ``rescan_schedule`` in the connection config (default every 6 hours).

No ``from __future__ import annotations``: Dagster inspects the real annotation of ``context``.
"""

import time
from typing import Any

import dagster as dg
from sqlalchemy import func, select

from connectors.kit.dagster import RESOURCE_KEY, DefinitionParts, ProjectLike, TongbuLike, hub_key

DEFAULT_RESCAN_SCHEDULE = "0 */6 * * *"
BACKLOG_STALE_S = 60.0


def wecom_connections(project: ProjectLike) -> list[str]:
    """Names of the project's WeCom connections."""
    return [name for name, conn in project.connections.items() if conn.connector == "wecom"]


def _client(tongbu: TongbuLike, connection: str) -> Any:
    from connectors.wecom.client import client_from_config

    return client_from_config(
        tongbu.runner().connection_config(connection), connection=connection, tenant=tongbu.project().tenant
    )


def _writer(tongbu: TongbuLike, connection: str) -> Any:
    from connectors.wecom.hub import WeComHubWriter
    from tongbu.db import get_engine

    return WeComHubWriter(
        get_engine(),
        tenant=tongbu.project().tenant,
        source_system=connection,
        pipeline=f"{connection}_rescan",
    )


def _rescan_asset(connection: str) -> dg.AssetsDefinition:
    @dg.asset(
        required_resource_keys={RESOURCE_KEY},
        key=dg.AssetKey([connection, "external_contacts"]),
        group_name=connection,
        kinds={"wecom"},
        tags={"tongbu/pipeline": f"{connection}_rescan"},
        description="WeCom 外部联系人: full rescan into crm/contacts (+ crm/accounts); finds what "
        "callbacks missed and soft-deletes contacts no longer in WeCom after a complete scan.",
    )
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        tongbu = context.resources.tongbu
        from connectors.wecom.rescan import rescan_external_contacts

        client = _client(tongbu, connection)
        try:

            def progress(r: Any) -> None:
                context.log.info(f"{connection} rescan: {r.contacts_seen} contacts, {r.written} written")

            result = rescan_external_contacts(client, _writer(tongbu, connection), progress=progress)
        finally:
            client.close()
        if result.deletion_skipped:
            context.log.warning(f"deletion step skipped: {result.deletion_skipped}")
        return dg.MaterializeResult(
            metadata={
                "contacts_seen": result.contacts_seen,
                "rows_written": result.written,
                "rows_unchanged": result.unchanged,
                "rows_skipped_newer_event": result.skipped_newer,
                "rows_quarantined": result.quarantined,
                "accounts_written": result.accounts_written,
                "rows_deleted": result.deleted,
                "deletion_skipped": result.deletion_skipped or "",
                "scan_complete": result.complete,
                "follow_users": result.follow_users,
                "relations": result.relations,
                "api_calls": dg.MetadataValue.json(result.api_calls),
                "duration_s": round(result.duration_s, 3),
                "records_per_second": round(result.records_per_second, 1),
                "tongbu_run_id": result.run_id or 0,
            }
        )

    return _asset


def _tags_asset(connection: str) -> dg.AssetsDefinition:
    @dg.asset(
        required_resource_keys={RESOURCE_KEY},
        key=dg.AssetKey([connection, "corp_tags"]),
        group_name=connection,
        kinds={"wecom"},
        description="WeCom 企业客户标签 (corp tags by group).",
    )
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        tongbu = context.resources.tongbu
        from connectors.wecom.scan import scan_corp_tags

        client = _client(tongbu, connection)
        try:
            rows = list(scan_corp_tags(client))
        finally:
            client.close()
        groups: dict[str, int] = {}
        for r in rows:
            groups[r["group_name"]] = groups.get(r["group_name"], 0) + 1
        return dg.MaterializeResult(
            metadata={"tags": len(rows), "tags_by_group": dg.MetadataValue.json(groups)}
        )

    return _asset


def _chats_asset(connection: str) -> dg.AssetsDefinition:
    @dg.asset(
        required_resource_keys={RESOURCE_KEY},
        key=dg.AssetKey([connection, "group_chats"]),
        group_name=connection,
        kinds={"wecom"},
        description="WeCom 客户群 (customer group chats) with their members.",
    )
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        tongbu = context.resources.tongbu
        from connectors.wecom.scan import ScanReport, scan_group_chats

        client = _client(tongbu, connection)
        report = ScanReport("group_chats")
        chats = members = external = 0
        try:
            for chat in scan_group_chats(client, report):
                chats += 1
                members += chat["member_count"]
                external += chat["external_member_count"]
        finally:
            client.close()
        return dg.MaterializeResult(
            metadata={
                "group_chats": chats,
                "members": members,
                "external_members": external,
                "duration_s": round(report.duration_s, 3),
                "api_calls": dg.MetadataValue.json(dict(client.calls)),
            }
        )

    return _asset


def _writeback_asset(connection: str) -> dg.AssetsDefinition:
    @dg.asset(
        required_resource_keys={RESOURCE_KEY},
        key=dg.AssetKey([connection, "contact_grade_tags"]),
        group_name=connection,
        kinds={"wecom"},
        deps=[hub_key("contacts"), hub_key("accounts")],
        description="Write-back: each WeCom contact's company grade from the CRM becomes its "
        "客户等级 corp tag (mark_tag only where it differs).",
    )
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        tongbu = context.resources.tongbu
        from connectors.wecom.target import write_back_grades
        from tongbu.db import get_engine

        client = _client(tongbu, connection)
        try:
            stats = write_back_grades(
                get_engine(), client, tenant=tongbu.project().tenant, source_system=connection
            )
        finally:
            client.close()
        return dg.MaterializeResult(
            metadata={
                "contacts": stats.records,
                "relations_checked": stats.relations_checked,
                "mark_tag_calls": stats.mark_tag_calls,
                "unchanged": stats.unchanged,
                "contacts_gone": stats.contacts_gone,
                "failed": stats.failed,
            }
        )

    return _asset


def _hub_check(connection: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        required_resource_keys={RESOURCE_KEY},
        asset=dg.AssetKey([connection, "external_contacts"]),
        name="hub_matches_last_rescan",
        description="crm/contacts from this connection holds exactly the contacts the last "
        "complete rescan saw (changes applied by callbacks since then are allowed for).",
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        tongbu = context.resources.tongbu
        from tongbu.db import get_engine
        from tongbu.hub.store import HubStore
        from tongbu.state.models import SyncRun

        engine = get_engine()
        tenant = tongbu.project().tenant
        runs = SyncRun.__table__
        with engine.connect() as conn:
            last = conn.execute(
                select(runs.c.rows_read, runs.c.rows_quarantined, runs.c.finished_at)
                .where(
                    runs.c.tenant_id == tenant,
                    runs.c.pipeline == f"{connection}_rescan",
                    runs.c.status == "success",
                )
                .order_by(runs.c.id.desc())
                .limit(1)
            ).first()
            in_hub = HubStore(engine, tenant).count(conn, "contacts", source_system=connection)
        if last is None:
            return dg.AssetCheckResult(
                passed=True,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"hub_count": in_hub, "note": "no complete rescan yet"},
            )
        expected = int(last.rows_read) - int(last.rows_quarantined)
        meta = {
            "last_rescan_contacts": int(last.rows_read),
            "quarantined": int(last.rows_quarantined),
            "hub_count": in_hub,
            "difference": in_hub - expected,
        }
        if in_hub == expected:
            return dg.AssetCheckResult(passed=True, metadata=meta)
        # Callbacks add and delete contacts between rescans, so a gap is a warning until the next rescan.
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=meta,
            description="hub differs from the last rescan (callbacks since, or lost "
            "events): the next rescan reconciles it",
        )

    return _check


def _events_check(connection: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        required_resource_keys={RESOURCE_KEY},
        asset=dg.AssetKey([connection, "external_contacts"]),
        name="event_path_healthy",
        description="tongbu serve keeps up: no callback pending longer than 60 s and no event "
        "that failed after all retries in the last 24 h.",
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        tongbu = context.resources.tongbu
        from tongbu.db import get_engine
        from tongbu.inbox import ensure_inbox, event_inbox

        engine = get_engine()
        ensure_inbox(engine)
        tenant = tongbu.project().tenant
        now = time.time()
        t = event_inbox
        with engine.connect() as conn:
            base = (t.c.tenant_id == tenant, t.c.source == connection)
            stale = int(
                conn.execute(
                    select(func.count())
                    .select_from(t)
                    .where(*base, t.c.status == "pending", t.c.received_at < now - BACKLOG_STALE_S)
                ).scalar_one()
            )
            failed = int(
                conn.execute(
                    select(func.count())
                    .select_from(t)
                    .where(*base, t.c.status == "failed", t.c.received_at >= now - 86_400)
                ).scalar_one()
            )
            applied = int(
                conn.execute(
                    select(func.count())
                    .select_from(t)
                    .where(*base, t.c.status.in_(("applied", "quarantined")), t.c.received_at >= now - 86_400)
                ).scalar_one()
            )
        meta = {"pending_over_60s": stale, "failed_24h": failed, "applied_24h": applied}
        ok = stale == 0 and failed == 0
        return dg.AssetCheckResult(
            passed=ok,
            metadata=meta,
            severity=dg.AssetCheckSeverity.WARN,
            description=None
            if ok
            else "events are stuck or failed: check `tongbu serve` logs; the next "
            "rescan repairs the hub either way",
        )

    return _check


def dagster_definitions(project: ProjectLike, *, rescan_schedule: str | None = None) -> DefinitionParts:
    """Assets, checks, jobs and schedules for every WeCom connection of ``project``."""
    parts = DefinitionParts()
    for conn in wecom_connections(project):
        contacts = dg.AssetKey([conn, "external_contacts"])
        parts.assets += [_rescan_asset(conn), _tags_asset(conn), _chats_asset(conn), _writeback_asset(conn)]
        parts.asset_checks += [_hub_check(conn), _events_check(conn)]
        for obj in ("contacts", "accounts", "activities"):
            parts.hub_feeds.setdefault(obj, []).append(contacts)
        job = dg.define_asset_job(
            f"{conn}_rescan",
            selection=dg.AssetSelection.assets(
                contacts, dg.AssetKey([conn, "corp_tags"]), dg.AssetKey([conn, "group_chats"])
            ),
        )
        cron = (
            rescan_schedule
            or project.connections[conn].config.get("rescan_schedule")
            or DEFAULT_RESCAN_SCHEDULE
        )
        parts.jobs.append(job)
        parts.schedules.append(
            dg.ScheduleDefinition(
                name=f"{conn}_rescan_schedule",
                job=job,
                cron_schedule=cron,
                default_status=dg.DefaultScheduleStatus.RUNNING,
                description=f"Full WeCom rescan of {conn} ({cron}): repairs lost callbacks, finds deletions",
            )
        )
    return parts
