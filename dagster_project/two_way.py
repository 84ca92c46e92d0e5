"""Dagster for the two-way syncs of a project (``syncs:`` in ``tongbu.yaml``): one asset per sync.

* asset ``sync/<name>`` (group ``two_way``): materialising it runs one cycle of the sync in both
  directions (config ``reconcile: true`` compares every record instead: drift), upstream of the
  ``crm/<object>`` asset it writes. Metadata per direction (``hub``, each system): created, updated,
  unchanged, conflicted, failed, write calls; plus conflicts opened, reverted, drift, write
  amplification, records read and errors;
* checks, evaluated with every materialisation: ``open_conflicts`` (WARN while the review queue of the
  sync holds any), ``drift`` (WARN when a reconciliation found out-of-band edits; it repaired them by
  policy), ``write_amplification`` (ERROR above 1.0: a record written twice, or an echo);
* job ``two_way_<name>`` and two schedules from the project file: ``<name>_two_way_schedule``
  (``schedule``, default every 15 minutes) and ``<name>_reconcile_schedule`` (``reconcile_schedule``,
  daily at 03:00, created STOPPED like the one-way drift schedule).

The engine is pipelines-level (not one connector's), so this lives here rather than in a connector's
``dagster`` hook. No ``from __future__ import annotations``: Dagster inspects the real annotations.
"""

from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from connectors.kit.dagster import default_status
from dagster_project.resources import TongbuResource
from pipelines.project import Project
from pipelines.sync.policy import HUB_ORIGIN

GROUP = "two_way"
CHECKS = ("open_conflicts", "drift", "write_amplification")
COUNTS = ("created", "updated", "unchanged", "conflicted", "deleted", "failed", "writes")


class SyncCycleConfig(dg.Config):
    """Run config of a two-way asset."""

    reconcile: bool = False


@dataclass
class TwoWayParts:
    """What :func:`two_way_definitions` adds to the project's Definitions."""

    assets: list[Any] = field(default_factory=list)
    jobs: list[Any] = field(default_factory=list)
    schedules: list[dg.ScheduleDefinition] = field(default_factory=list)
    #: crm object -> the two-way assets that write it
    hub_feeds: dict[str, list[dg.AssetKey]] = field(default_factory=dict)


def sync_key(name: str) -> dg.AssetKey:
    """Asset key of a two-way sync, e.g. ``sync/accounts_kingdee``."""
    return dg.AssetKey(["sync", name])


def _metadata(report: Any, open_conflicts: int, reconcile: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for system, counts in report.directions.items():
        values = {**counts.as_dict(), **counts.write_counts()}
        for name in COUNTS:
            meta[f"{system}_{name}"] = values[name]
    meta.update(
        {
            "mode": "reconcile" if reconcile else "incremental",
            "read": dg.MetadataValue.json(dict(report.read)),
            "conflicts_opened": report.conflicts_opened,
            "identity_reviews": report.identity_reviews,
            "open_conflicts": open_conflicts,
            "reverted": report.reverted,
            "stale_skipped": report.stale_skipped,
            "drift": report.drift,
            "write_amplification": round(report.write_amplification, 4),
            "errors": dg.MetadataValue.json(list(report.errors)),
            "duration_s": round(report.duration_s, 3),
            "sync_run_id": report.run_id,
        }
    )
    return meta


def _checks(name: str, report: Any, open_conflicts: int, reconcile: bool) -> list[dg.AssetCheckResult]:
    key = sync_key(name)
    results = [
        dg.AssetCheckResult(
            asset_key=key,
            check_name="open_conflicts",
            passed=open_conflicts == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"open_conflicts": open_conflicts, "opened_this_cycle": report.conflicts_opened},
            description=None if open_conflicts == 0 else "decide them: tongbu conflicts list",
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name="drift",
            passed=report.drift == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"drift": report.drift, "mode": "reconcile" if reconcile else "incremental"},
            description=(
                f"{report.drift} out-of-band edit(s) found and merged by policy"
                if report.drift
                else None
                if reconcile
                else "an incremental cycle; the reconcile schedule compares every record"
            ),
        ),
    ]
    amplification = report.write_amplification
    writes = sum(c.writes for s, c in report.directions.items() if s != "hub")
    results.append(
        dg.AssetCheckResult(
            asset_key=key,
            check_name="write_amplification",
            passed=amplification <= 1.0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "write_amplification": round(amplification, 4) if amplification != float("inf") else -1,
                "writes": writes,
                "echoes": sum(c.echoes for c in report.directions.values()),
            },
        )
    )
    return results


def _asset(name: str, obj: str, description: str | None, systems: tuple[str, ...]) -> dg.AssetsDefinition:
    @dg.asset(
        key=sync_key(name),
        group_name=GROUP,
        description=description or f"Two-way sync {name}: crm/{obj} ⇄ {', '.join(systems)}",
        kinds={"tongbu", *systems},
        tags={"tongbu/sync": name},
        check_specs=[dg.AssetCheckSpec(c, asset=sync_key(name)) for c in CHECKS],
    )
    def _run(context: dg.AssetExecutionContext, config: SyncCycleConfig, tongbu: TongbuResource):
        from tongbu.vault import redacting_errors

        runner = tongbu.sync_runner()
        # A failure's text becomes a Dagster event: mask any secret value that leaked into it.
        with redacting_errors():
            report = runner.run(name, reconcile=config.reconcile)
        for problem in report.errors:
            context.log.warning(f"{name}: {problem}")
        open_conflicts = len(runner.conflicts(sync=name))
        return dg.MaterializeResult(
            metadata=_metadata(report, open_conflicts, config.reconcile),
            check_results=_checks(name, report, open_conflicts, config.reconcile),
        )

    return _run


def sync_connections(project: Project, name: str, systems: Any) -> list[str]:
    """The project connections a sync reaches its systems through (system name by default)."""
    spec = project.syncs[name]
    wanted = [spec.connections.get(system, system) for system in systems if system != HUB_ORIGIN]
    return [conn for conn in wanted if conn in project.connections]


def two_way_definitions(project: Project) -> TwoWayParts:
    """Assets, jobs and schedules of every enabled two-way sync of the project."""
    from pipelines.sync.project import load_pair

    parts = TwoWayParts()
    for name, spec in project.syncs.items():
        if not spec.enabled:
            continue
        pair = load_pair(project, name)  # the declaration only: no hub, no network
        parts.assets.append(_asset(name, pair.object, spec.description, tuple(pair.policy.systems)))
        parts.hub_feeds.setdefault(pair.object, []).append(sync_key(name))
        job = dg.define_asset_job(f"two_way_{name}", selection=dg.AssetSelection.assets(sync_key(name)))
        parts.jobs.append(job)
        if spec.schedule:
            parts.schedules.append(
                dg.ScheduleDefinition(
                    name=f"{name}_two_way_schedule",
                    job=job,
                    cron_schedule=spec.schedule,
                    # on only when every connection of the sync is configured (or `schedules: on`)
                    default_status=dg.DefaultScheduleStatus.RUNNING
                    if all(
                        default_status(project, conn) == dg.DefaultScheduleStatus.RUNNING
                        for conn in sync_connections(project, name, pair.policy.systems)
                    )
                    else dg.DefaultScheduleStatus.STOPPED,
                    description=f"A two-way cycle of {name} ({spec.schedule})",
                )
            )
        if spec.reconcile_schedule:
            parts.schedules.append(
                dg.ScheduleDefinition(
                    name=f"{name}_reconcile_schedule",
                    job=job,
                    cron_schedule=spec.reconcile_schedule,
                    run_config=dg.RunConfig(ops={"sync__" + name: SyncCycleConfig(reconcile=True)}),
                    default_status=dg.DefaultScheduleStatus.STOPPED,
                    description=f"Full compare of {name}: finds and repairs out-of-band edits",
                )
            )
    return parts
