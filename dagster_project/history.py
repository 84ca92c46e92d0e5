"""Historical migration in Dagster: one time-window-partitioned asset per pipeline with ``history:``.

``history/<connection>/<stream>`` has one partition per window (daily, weekly or monthly, in UTC, over
the source's modification time) from ``history.start``. Materialising a partition runs
:func:`pipelines.history.backfill_window`: cleaned → transformed → loaded → verified by sampling
against the source; its metadata is the partition's report (also a ``history_partitions`` row). A
partition that does not verify fails, and is re-run like any failed partition.

The off-peak schedule ``history_<pipeline>_off_peak`` (``history.off_peak``, in ``history.timezone``)
launches the ``history.per_batch`` oldest partitions that are neither materialised nor running, one
run each, so years of history load over a few nights without touching business hours. It is off until
an operator turns it on (a one-shot migration is started on purpose); a whole range can equally be
launched as a Dagster backfill from the UI. Steps claim the system's pool like the live sync.
"""

import datetime as dt
from typing import Any

import dagster as dg

from dagster_project.resources import TongbuResource, pool_name
from pipelines.project import PipelineSpec, Project

_PARTITIONS = {
    "daily": dg.DailyPartitionsDefinition,
    "weekly": dg.WeeklyPartitionsDefinition,
    "monthly": dg.MonthlyPartitionsDefinition,
}


def history_key(spec: PipelineSpec) -> dg.AssetKey:
    """Asset key of a pipeline's history, e.g. ``history/kingdee/customers``."""
    return dg.AssetKey(["history", spec.source.connection, spec.source.stream])


def partitions_for(spec: PipelineSpec) -> dg.TimeWindowPartitionsDefinition:
    """The pipeline's history windows (UTC, the time the hub stores ``source_modified_at`` in)."""
    h = spec.history
    assert h is not None
    end = None if h.end is None else h.end.isoformat()
    return _PARTITIONS[h.partitions](start_date=h.start.isoformat(), end_date=end, timezone="UTC")


def _history_asset(spec: PipelineSpec, tenant: str) -> dg.AssetsDefinition:
    h = spec.history
    assert h is not None

    @dg.asset(
        key=history_key(spec),
        group_name="history",
        partitions_def=partitions_for(spec),
        pool=pool_name(tenant, spec.source.connection),
        kinds={spec.source.connection},
        tags={"tongbu/pipeline": spec.name},
        description=f"History of {spec.source.connection}/{spec.source.stream} → crm/{spec.target.object}, "
        f"one {h.partitions} window per partition, verified by a sample of {h.sample} records",
    )
    def _asset(context: dg.AssetExecutionContext, tongbu: TongbuResource) -> dg.MaterializeResult:
        from pipelines.history import backfill_window
        from tongbu.vault import redacting_errors

        window = context.partition_time_window
        with redacting_errors():
            report = backfill_window(
                tongbu.runner(), spec.name, context.partition_key, window.start, window.end, sample=h.sample
            )
        md: dict[str, Any] = report.as_metadata()
        md["details"] = dg.MetadataValue.json(md["details"])
        return dg.MaterializeResult(metadata=md)

    return _asset


def _off_peak_schedule(spec: PipelineSpec, job: Any) -> dg.ScheduleDefinition:
    h = spec.history
    assert h is not None
    key = history_key(spec)
    partitions = partitions_for(spec)

    @dg.schedule(
        name=f"history_{spec.name}_off_peak",
        job=job,
        cron_schedule=h.off_peak,
        execution_timezone=h.timezone,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Off-peak batches of {spec.name}'s history: {h.per_batch} partitions per tick",
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> Any:
        requests = next_batch(context.instance, key, partitions, job.name, h.per_batch)
        return requests or dg.SkipReason("every history partition is materialised or running")

    return _schedule


def next_batch(
    instance: dg.DagsterInstance,
    key: dg.AssetKey,
    partitions: dg.TimeWindowPartitionsDefinition,
    job_name: str,
    size: int,
    now: dt.datetime | None = None,
) -> list[dg.RunRequest]:
    """Run requests for the ``size`` oldest partitions neither materialised nor queued/running."""
    done = instance.get_materialized_partitions(key)
    busy = {
        r.tags.get("dagster/partition")
        for r in instance.get_runs(
            filters=dg.RunsFilter(
                job_name=job_name,
                statuses=[
                    dg.DagsterRunStatus.QUEUED,
                    dg.DagsterRunStatus.NOT_STARTED,
                    dg.DagsterRunStatus.STARTING,
                    dg.DagsterRunStatus.STARTED,
                ],
            )
        )
    }
    keys = partitions.get_partition_keys(current_time=now)
    todo = [k for k in keys if k not in done and k not in busy][:size]
    return [dg.RunRequest(partition_key=k, tags={"tongbu/history": "off-peak"}) for k in todo]


def history_definitions(project: Project) -> tuple[list[Any], list[Any], list[dg.ScheduleDefinition]]:
    """Assets, jobs and off-peak schedules of every enabled pipeline with ``history:``."""
    assets: list[Any] = []
    jobs: list[Any] = []
    schedules: list[dg.ScheduleDefinition] = []
    for spec in project.pipelines.values():
        if not spec.enabled or spec.history is None:
            continue
        assets.append(_history_asset(spec, project.tenant))
        job = dg.define_asset_job(
            f"history_{spec.name}",
            selection=dg.AssetSelection.assets(history_key(spec)),
            partitions_def=partitions_for(spec),
            tags={"tongbu/tenant": project.tenant},
        )
        jobs.append(job)
        schedules.append(_off_peak_schedule(spec, job))
    return assets, jobs, schedules


__all__ = ["history_definitions", "history_key", "next_batch", "partitions_for"]
