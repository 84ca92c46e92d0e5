"""Freshness per synced stream, from its schedule: an asset stale beyond two intervals is red.

One asset check ``fresh`` per scheduled pipeline: the age of its last successful run (``sync_runs``)
against twice the interval of its cron. Stale → a failed ERROR check (the alert sensor tells people);
never synced → a failed WARN check. Metadata: last success, age, allowed age, and the source-to-hub
lag of the last run that wrote rows (newest source change written → that run's end).

The checks are evaluated by the job ``freshness_checks`` on ``freshness_schedule`` (every 5 minutes),
which reads only the hub. It follows the one rule (:mod:`connectors.kit.dagster`): on when any
pipeline's schedule is on, so a fresh clone starts nothing.
"""

import datetime as dt
from typing import Any

import dagster as dg
from sqlalchemy import select

from connectors.kit.dagster import schedules_on
from connectors.kit.dagster import stream_key as kit_stream_key
from pipelines.project import PipelineSpec, Project

CHECK_NAME = "fresh"
SCHEDULE = "*/5 * * * *"
#: stale beyond this many schedule intervals
INTERVALS = 2


def schedule_interval_s(cron: str, now: dt.datetime | None = None) -> float:
    """The longest gap between consecutive fires of ``cron`` over the 35 days before ``now``.

    The longest, not the last: ``0 9 * * 1-5`` has a 3-day weekend gap that must not read as stale,
    and a monthly cron needs a month of fires. Frequent crons stop after 3,000 fires (two days of a
    once-a-minute schedule), which already shows their gap.
    """
    # Dagster's own cron iterator: the same fire times its schedules use (UTC, as they run here).
    from dagster._utils.schedules import cron_string_iterator

    now = now or dt.datetime.now(dt.UTC)
    fires = cron_string_iterator((now - dt.timedelta(days=35)).timestamp(), cron, "UTC")
    prev = next(fires)
    longest = 0.0
    for _ in range(3_000):
        if prev >= now:
            break
        nxt = next(fires)
        longest = max(longest, (nxt - prev).total_seconds())
        prev = nxt
    return longest or 35 * 86_400.0


def source_lag_s(cursor: dict[str, Any] | None, finished: float) -> float | None:
    """Seconds from the newest source change a run wrote to the moment the run finished.

    Only for cursors whose value is a timestamp with an offset (a naive time would be a guess about
    the source's time zone); None otherwise.
    """
    import datetime as dt

    value = (cursor or {}).get("replication_key_value")
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return max(round(finished - moment.timestamp(), 3), 0.0)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)  # SQLite returns naive UTC


def evaluate(
    engine: Any, tenant: str, spec: PipelineSpec, now: dt.datetime | None = None
) -> dg.AssetCheckResult:
    """The freshness check result of ``spec`` from the hub's run history."""
    from tongbu.state.models import SyncRun

    now = now or dt.datetime.now(dt.UTC)
    runs = SyncRun.__table__
    base = (runs.c.tenant_id == tenant, runs.c.pipeline == spec.name, runs.c.status == "success")
    with engine.connect() as conn:
        last = conn.execute(
            select(runs.c.finished_at).where(*base).order_by(runs.c.id.desc()).limit(1)
        ).first()
        wrote = conn.execute(
            select(runs.c.finished_at, runs.c.cursor_after)
            .where(*base, runs.c.rows_written > 0)
            .order_by(runs.c.id.desc())
            .limit(1)
        ).first()
    allowed = INTERVALS * schedule_interval_s(spec.schedule or "0 0 * * *", now)
    meta: dict[str, Any] = {"allowed_age_s": round(allowed, 1), "schedule": spec.schedule or ""}
    if wrote is not None and wrote.finished_at is not None:
        lag = source_lag_s(wrote.cursor_after, _aware(wrote.finished_at).timestamp())
        if lag is not None:
            meta["source_to_hub_lag_s"] = lag
    if last is None or last.finished_at is None:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=meta,
            description=f"{spec.name} has never synced: run `tongbu run {spec.name}` or materialise it",
        )
    finished = _aware(last.finished_at)
    age = (now - finished).total_seconds()
    meta.update({"last_success": finished.isoformat(timespec="seconds"), "age_s": round(age, 1)})
    if age <= allowed:
        return dg.AssetCheckResult(passed=True, metadata=meta)
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=meta,
        description=f"stale: last successful sync {age / 60:.0f} min ago, more than {INTERVALS} schedule "
        f"intervals ({allowed / 60:.0f} min); is its schedule on and are its runs failing (`tongbu runs "
        f"{spec.name}`)?",
    )


def _check(spec: PipelineSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=kit_stream_key(spec.source.connection, spec.source.stream),
        name=CHECK_NAME,
        required_resource_keys={"tongbu"},
        description=f"Synced within {INTERVALS} intervals of its schedule ({spec.schedule}); the "
        "metadata shows the age and the source-to-hub lag.",
    )
    def _fn(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        from tongbu.db import get_engine

        return evaluate(get_engine(), context.resources.tongbu.project().tenant, spec)

    return _fn


def freshness_definitions(project: Project) -> tuple[list[Any], list[Any], list[Any]]:
    """``(checks, jobs, schedules)`` for every enabled, scheduled pipeline of ``project``."""
    specs = [s for s in project.pipelines.values() if s.enabled and s.schedule]
    if not specs:
        return [], [], []
    checks = [_check(s) for s in specs]
    job = dg.define_asset_job(
        "freshness_checks",
        selection=dg.AssetSelection.checks(
            *[
                dg.AssetCheckKey(kit_stream_key(s.source.connection, s.source.stream), CHECK_NAME)
                for s in specs
            ]
        ),
        description="Freshness of every scheduled stream (reads only the hub)",
    )
    on = any(schedules_on(project, s.source.connection, s.name) for s in specs)
    schedule = dg.ScheduleDefinition(
        name="freshness_schedule",
        job=job,
        cron_schedule=SCHEDULE,
        default_status=dg.DefaultScheduleStatus.RUNNING if on else dg.DefaultScheduleStatus.STOPPED,
        description="Evaluates the freshness checks (on once any pipeline's schedule is on)",
    )
    return checks, [job], [schedule]


__all__ = ["CHECK_NAME", "evaluate", "freshness_definitions", "schedule_interval_s", "source_lag_s"]
