"""Dagster assets, checks and schedules generated from the project file.

* one asset per synced stream, keyed ``<connection>/<stream>`` and grouped by system; materialising it
  runs that pipeline (incrementally) through the same runner the CLI uses, and records what an
  operator needs: rows read / written / unchanged / quarantined, cursor before and after, duration;
* one asset per CRM hub object (``crm/<object>``) downstream of every stream that feeds it, whose
  materialisation records the hub's row counts per source system;
* an asset check per stream reconciling the source's record count with the hub's, and flagging open
  quarantine entries;
* a schedule per pipeline from its cron expression (default every 15 minutes).

No ``from __future__ import annotations`` here: Dagster inspects the real annotation of ``context``.
"""

import importlib
import os
import socket
from collections import defaultdict
from typing import Any

import dagster as dg
from sqlalchemy import func, select

from connectors import registry
from connectors.kit.dagster import DefinitionParts, asset_owners, default_status
from dagster_project.drift import CHECK_NAME, drift_definitions, supports_drift
from dagster_project.resources import TongbuResource, object_key, pool_name, stream_key
from pipelines.project import PipelineSpec, Project, load_project_cached


def connector_parts(project: Project, only: str | None = None) -> DefinitionParts:
    """The Dagster pieces of every connector the project uses that has a ``dagster`` hook."""
    parts = DefinitionParts()
    used = {conn.connector for conn in project.connections.values()}
    for name, module in registry.dagster_hooks().items():
        if name in used and (only is None or name == only):
            parts.extend(importlib.import_module(module).dagster_definitions(project))
    return parts


def standalone_definitions(project: Project, connector: str) -> dg.Definitions:
    """One connector's own pieces plus the ``crm/<object>`` assets they feed (a one-connector location)."""
    parts = connector_parts(project, only=connector)
    objects = [_object_asset(project, obj, keys) for obj, keys in parts.hub_feeds.items()]
    return dg.Definitions(
        assets=[*parts.assets, *objects],
        asset_checks=parts.asset_checks,
        schedules=parts.schedules,
        sensors=parts.sensors,
        jobs=parts.jobs,
        resources={"tongbu": TongbuResource()},
    )


def _json(value: Any) -> dg.MetadataValue:
    return dg.MetadataValue.json(value if value is not None else {})


def run_metadata(result: Any, *, has_lines: bool) -> dict[str, Any]:
    """Materialisation metadata of a sync run: only figures that mean something for this stream."""
    import time

    meta: dict[str, Any] = {
        "rows_read": result.rows_read,
        "rows_written": result.rows_written,
        "rows_unchanged": result.rows_unchanged,
        "rows_quarantined": result.rows_quarantined,
    }
    if has_lines:  # only a mapping with a lines section writes order lines
        meta["order_lines_written"] = result.lines_written
    meta.update(
        {
            "cursor_before": _json(result.cursor_before),
            "cursor_after": _json(result.cursor_after),
            "duration_s": round(result.duration_s, 3),
            "records_per_second": round(result.records_per_second, 1),
            "tongbu_run_id": result.run_id or 0,
        }
    )
    if result.rows_written:
        from dagster_project.freshness import source_lag_s

        lag = source_lag_s(result.cursor_after, time.time())
        if lag is not None:
            meta["source_to_hub_lag_s"] = lag
    return meta


def _sync_asset(project: Project, spec: PipelineSpec) -> dg.AssetsDefinition:
    connector_name = project.connection(spec.source.connection).connector

    @dg.asset(
        key=stream_key(spec),
        pool=pool_name(project.tenant, spec.source.connection),
        group_name=spec.source.connection,
        description=spec.description
        or f"{spec.source.connection} stream '{spec.source.stream}' synced into "
        f"crm/{spec.target.object} (pipeline {spec.name})",
        kinds={connector_name, "singer"},
        owners=asset_owners(project, spec.source.connection, spec.name),
        tags={"tongbu/pipeline": spec.name},
    )
    def _asset(context: dg.AssetExecutionContext, tongbu: TongbuResource) -> dg.MaterializeResult:
        def progress(r: Any) -> None:
            context.log.info(
                f"{spec.name}: read {r.rows_read} written {r.rows_written} quarantined {r.rows_quarantined}"
            )

        from tongbu.vault import redacting_errors

        runner = tongbu.runner(progress)
        # A failure's text becomes a Dagster event: mask any secret value that leaked into it.
        with redacting_errors():
            result = runner.run(spec.name)
        has_lines = runner.mapping(spec).lines is not None
        meta = run_metadata(result, has_lines=has_lines)
        # where the step ran and how it read: a Celery worker's pid, the thread reader there
        meta["worker"] = f"{socket.gethostname()}:{os.getpid()}"
        meta["reader"] = str(result.extra.get("reader", ""))
        meta["foreign_threads"] = int(result.extra.get("foreign_threads", 0))
        meta["daemonic"] = bool(result.extra.get("daemonic", False))
        return dg.MaterializeResult(metadata=meta)

    return _asset


def _source_count(runner: Any, spec: PipelineSpec) -> int | None:
    tap = runner.make_tap(spec.source.connection)
    stream = tap.streams[spec.source.stream]
    counter = getattr(stream, "source_count", None)
    return None if counter is None else counter(None)


def _check(spec: PipelineSpec, tenant: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=stream_key(spec),
        # it counts the source's records through the system's API: the system's pool, like the sync
        pool=pool_name(tenant, spec.source.connection),
        name="hub_matches_source",
        description="The hub holds exactly the source's records (counted on both sides); open "
        "quarantine entries are reported as a warning.",
    )
    def _check_fn(tongbu: TongbuResource) -> dg.AssetCheckResult:
        from tongbu.db import get_engine
        from tongbu.hub.store import HubStore
        from tongbu.state.models import QuarantinedRecord

        engine = get_engine()
        project = tongbu.project()
        hub = HubStore(engine, project.tenant)
        runner = tongbu.runner()
        mapping = runner.mapping(spec)
        source = _source_count(runner, spec)
        q = QuarantinedRecord.__table__
        with engine.connect() as conn:
            in_hub = hub.count(conn, mapping.target_object, source_system=spec.source.connection)
            open_q = int(
                conn.execute(
                    select(func.count())
                    .select_from(q)
                    .where(q.c.tenant_id == project.tenant, q.c.pipeline == spec.name, q.c.status == "open")
                ).scalar_one()
            )
        meta = {
            "source_count": source if source is not None else -1,
            "hub_count": in_hub,
            "quarantined_open": open_q,
        }
        if source is None:
            return dg.AssetCheckResult(
                passed=True,
                metadata={**meta, "note": "source cannot count records"},
                severity=dg.AssetCheckSeverity.WARN,
            )
        missing = source - in_hub
        if missing == 0:
            return dg.AssetCheckResult(passed=True, metadata={**meta, "missing": 0})
        # Every gap explained by open quarantine entries is a warning (data is kept, needs a fix and a
        # replay); anything else is an error (lost or duplicated rows).
        explained = missing == open_q
        return dg.AssetCheckResult(
            passed=False,
            metadata={**meta, "missing": missing},
            severity=dg.AssetCheckSeverity.WARN if explained else dg.AssetCheckSeverity.ERROR,
            description="missing rows are quarantined: run `tongbu quarantine list`"
            if explained
            else "hub and source disagree: run a --full-refresh of this pipeline",
        )

    return _check_fn


def _object_asset(project: Project, obj: str, upstream: list[dg.AssetKey]) -> dg.AssetsDefinition:
    @dg.asset(
        key=object_key(obj),
        group_name="crm",
        deps=upstream,
        kinds={"sqlalchemy", "crm"},
        owners=asset_owners(project),
        description=f"CRM hub object '{obj}' (hub table {obj}), written by the streams upstream; "
        "materialising it records its row counts per source system. Every sync job refreshes it.",
    )
    def _asset(tongbu: TongbuResource) -> dg.MaterializeResult:
        from tongbu.db import get_engine
        from tongbu.hub.store import hub_table

        t = hub_table(obj)
        tenant = tongbu.project().tenant
        with get_engine().connect() as conn:
            rows = conn.execute(
                select(t.c.source_system, func.count(), func.count(t.c.deleted_at))
                .where(t.c.tenant_id == tenant)
                .group_by(t.c.source_system)
            ).all()
        per_system = {r[0]: int(r[1]) for r in rows}
        return dg.MaterializeResult(
            metadata={
                "rows_total": sum(per_system.values()),
                "rows_deleted": sum(int(r[2]) for r in rows),
                "rows_by_source_system": dg.MetadataValue.json(per_system),
            }
        )

    return _asset


def _sync_selection(project: Project, spec: PipelineSpec) -> dg.AssetSelection:
    selection = dg.AssetSelection.assets(stream_key(spec), object_key(spec.target.object))
    if supports_drift(project, spec):
        # The drift check reads the whole synced range: it runs on its own schedule, not every sync.
        selection -= dg.AssetSelection.checks(dg.AssetCheckKey(stream_key(spec), CHECK_NAME))
    return selection


def build_definitions(
    project: Project | None = None,
    *,
    executor: dg.ExecutorDefinition | None = None,
    project_file: str | None = None,
) -> dg.Definitions:
    """All assets, checks, jobs and schedules of a project.

    ``executor`` runs every job and ad-hoc materialisation (default: Dagster's in-process executor;
    :mod:`dagster_project.production` passes the multiprocess, Celery or Kubernetes one). A sync is one
    step that does its own batching; the multiprocess executor started a fresh Python per step (stream
    asset, hub asset, each check), each importing Dagster and tongbu again, which is where most of a
    local run's 20 s went (``benchmarks/dagster_overhead.py``).
    """
    executor = executor or dg.in_process_executor
    # The file the steps load the project from (in whatever process or worker runs them).
    project_file = project_file or os.environ.get("TONGBU_PROJECT")
    project = project or load_project_cached(project_file or None)
    assets: list[Any] = []
    checks: list[Any] = []
    schedules: list[dg.ScheduleDefinition] = []
    jobs: list[Any] = []
    feeds: dict[str, list[dg.AssetKey]] = defaultdict(list)
    for spec in project.pipelines.values():
        if not spec.enabled:
            continue
        assets.append(_sync_asset(project, spec))
        checks.append(_check(spec, project.tenant))
        feeds[spec.target.object].append(stream_key(spec))
        # The job exists with or without a schedule: a pipeline whose schedule is switched off
        # (``schedule: null``) is still run on demand from the UI or ``dagster job launch``.
        job = dg.define_asset_job(
            f"sync_{spec.name}",
            selection=_sync_selection(project, spec),
            # the run queue limits runs per tenant on this tag (deploy/dagster.yaml)
            tags={"tongbu/tenant": project.tenant},
            executor_def=executor,
            description=f"Incremental sync of {spec.name}: {stream_key(spec).to_user_string()} and "
            f"the hub object {object_key(spec.target.object).to_user_string()} it feeds",
        )
        jobs.append(job)
        if spec.schedule:
            schedules.append(
                dg.ScheduleDefinition(
                    name=f"{spec.name}_schedule",
                    job=job,
                    cron_schedule=spec.schedule,
                    # Off until the connection is configured or the project file says `schedules: on`.
                    default_status=default_status(project, spec.source.connection, spec.name),
                    description=f"Incremental sync of {spec.name} ({spec.schedule})",
                )
            )
    # Connectors with pieces of their own (WeCom's rescan and write-back, …) add their assets, checks,
    # schedules and sensors through their ``dagster`` hook, and feed the same crm/<object> assets.
    pushed = connector_parts(project)
    # The tender feed (``tenders:``): poll, subscriptions, alerts; pipelines-level, so not a connector hook.
    from dagster_project.tenders import tenders_definitions

    pushed.extend(tenders_definitions(project))
    assets += pushed.assets
    checks += pushed.asset_checks
    schedules += pushed.schedules
    for obj, keys in pushed.hub_feeds.items():
        feeds[obj].extend(keys)
    # Drift checks (count and hash per time bucket) on the streams whose connector supports them.
    drift = drift_definitions(project)
    checks += drift.asset_checks
    schedules += drift.schedules
    jobs += drift.jobs
    # Two-way syncs (syncs: in the project file): one asset each, upstream of the object it writes.
    from dagster_project.two_way import two_way_definitions

    two_way = two_way_definitions(project)
    assets += two_way.assets
    schedules += two_way.schedules
    jobs += two_way.jobs
    for obj, keys in two_way.hub_feeds.items():
        feeds[obj].extend(keys)
    # Historical migration: time-window partitions of the pipelines with ``history:``.
    from dagster_project.history import history_definitions

    h_assets, h_jobs, h_schedules = history_definitions(project)
    assets += h_assets
    jobs += h_jobs
    schedules += h_schedules
    # Freshness per scheduled stream, and the sensor that alerts on failures, failed checks, conflicts.
    from dagster_project.alerts import alerts_sensor
    from dagster_project.freshness import freshness_definitions

    fresh_checks, fresh_jobs, fresh_schedules = freshness_definitions(project)
    checks += fresh_checks
    jobs += fresh_jobs
    schedules += fresh_schedules
    for obj, upstream in feeds.items():
        assets.append(_object_asset(project, obj, upstream))
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        schedules=schedules,
        sensors=[*pushed.sensors, alerts_sensor(project)],
        jobs=[
            *jobs,
            *pushed.jobs,
            dg.define_asset_job(
                "sync_all",
                # history partitions are loaded by their own jobs and schedules, never with the live sync
                selection=dg.AssetSelection.all() - dg.AssetSelection.groups("history"),
                tags={"tongbu/tenant": project.tenant},
                executor_def=executor,
            ),
        ],
        resources={"tongbu": TongbuResource(project_file=project_file)},
        executor=executor,
    )


__all__ = [
    "build_definitions",
    "connector_parts",
    "pool_name",
    "standalone_definitions",
]
