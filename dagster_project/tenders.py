"""Dagster pieces of the tender feed (``tenders:`` in the project file), added by ``build_definitions``.

* asset ``<connection>/tender_feed`` — one poll of :class:`pipelines.tenders.TenderFeed`: new notices
  into the history, subscriptions matched, projects folded into ``crm/opportunities`` and
  ``crm/leads``; with two checks: **parsed vs listed** (every notice the search listed had its
  detail page read: ``listed == parsed + withdrawn``) and **anti-bot backoffs** (a warning when the
  site served its anti-bot page more than ``ANTIBOT_WARN`` times in one poll: slow down with
  ``request_interval``);
* schedule ``<connection>_tender_feed_schedule`` on ``tenders.schedule`` (default every 5 minutes);
  running when ``tenders.schedule`` is set, stopped when it is ``null``;
* sensor ``<connection>_tender_alerts`` every ``tenders.alert_interval`` seconds (default 20): polls
  the feed and sends queued alerts itself, so a new notice reaches its subscribers within a minute
  of the site publishing it (a run per tick would add the run launcher's start-up time).

The feed is orchestration (history, CRM, notifier) in ``pipelines.tenders``, so its Dagster pieces sit
with the other pipeline-level features here (like ``two_way.py`` and ``history.py``), not in the
connector's hook: connectors sit below pipelines.

No ``from __future__ import annotations``: Dagster inspects the real annotation of ``context``.
"""

from typing import TYPE_CHECKING, Any

import dagster as dg

from connectors.kit.dagster import RESOURCE_KEY, DefinitionParts, default_sensor_status, default_status

if TYPE_CHECKING:
    from pipelines.project import Project

ANTIBOT_WARN = 20


def _feed(tongbu: Any) -> Any:
    from pipelines.tenders import TenderFeed

    runner = tongbu.runner()
    return TenderFeed(tongbu.project(), runner.engine)


def _feed_asset(connection: str) -> dg.AssetsDefinition:
    key = dg.AssetKey([connection, "tender_feed"])

    @dg.asset(
        required_resource_keys={RESOURCE_KEY},
        key=key,
        group_name=connection,
        kinds={"python"},
        tags={"tongbu/pipeline": f"{connection}_tender_feed"},
        description="标讯: new procurement notices into the searchable history; subscriptions matched; "
        "each project (项目编号) an opportunity on its buyer's account, or a lead.",
        check_specs=[
            dg.AssetCheckSpec("parsed_vs_listed", asset=key, description="every listed notice was parsed"),
            dg.AssetCheckSpec("antibot_backoffs", asset=key, description="anti-bot pages met in the poll"),
        ],
    )
    def _asset(context: dg.AssetExecutionContext) -> Any:
        result = _feed(context.resources.tongbu).poll()
        figures = result.as_dict()
        figures.pop("cursor", None)
        yield dg.MaterializeResult(metadata={k: v for k, v in figures.items() if isinstance(v, int)})
        complete = result.listed == result.parsed + result.missing
        yield dg.AssetCheckResult(
            check_name="parsed_vs_listed",
            passed=complete,
            metadata={"listed": result.listed, "parsed": result.parsed, "withdrawn": result.missing},
            description=None
            if complete
            else "some listed notices were not read; the next poll re-reads them",
        )
        yield dg.AssetCheckResult(
            check_name="antibot_backoffs",
            passed=result.antibot <= ANTIBOT_WARN,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"antibot_pages": result.antibot},
        )

    return _asset


def _alerts_sensor(project: "Project", connection: str, interval: int) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{connection}_tender_alerts",
        minimum_interval_seconds=max(5, interval),
        required_resource_keys={RESOURCE_KEY},
        # quiet until the connection is configured (its secrets stored) or `schedules: on`
        default_status=default_sensor_status(project, connection),
        description="Polls the tender feed and pushes alerts for new matching notices (WeCom, e-mail)",
    )
    def _sensor(context: dg.SensorEvaluationContext, tongbu: Any) -> dg.SkipReason:
        # Dagster hands a sensor its required resources as keyword arguments.
        feed = _feed(tongbu)
        polled = feed.poll()
        sent = feed.send_alerts()
        for line in sent.errors[:5]:
            context.log.warning(line)
        return dg.SkipReason(
            f"{polled.new} new notice(s), {polled.matched} match(es); alerts: {sent.sent} sent, "
            f"{sent.failed} failed, {sent.already_sent} already sent"
        )

    return _sensor


def tenders_definitions(project: "Project") -> DefinitionParts:
    """The tender feed's asset, checks, schedule and alert sensor (when ``tenders.connection`` exists)."""
    parts = DefinitionParts()
    spec = project.tenders
    connection = spec.connection
    if connection not in project.connections or project.connections[connection].connector != "tender":
        return parts
    key = dg.AssetKey([connection, "tender_feed"])
    parts.assets.append(_feed_asset(connection))
    for obj in ("opportunities", "leads"):
        parts.hub_feeds.setdefault(obj, []).append(key)
    job = dg.define_asset_job(f"{connection}_tender_feed", selection=dg.AssetSelection.assets(key))
    parts.jobs.append(job)
    parts.schedules.append(
        dg.ScheduleDefinition(
            name=f"{connection}_tender_feed_schedule",
            job=job,
            cron_schedule=spec.schedule or "*/5 * * * *",
            default_status=default_status(project, connection)
            if spec.schedule
            else dg.DefaultScheduleStatus.STOPPED,
            description="Reads new tender notices into the history and the CRM",
        )
    )
    parts.sensors.append(_alerts_sensor(project, connection, spec.alert_interval))
    return parts
