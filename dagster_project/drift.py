"""Dagster drift checks: ``hub_in_sync_with_source`` per synced stream, a job and a schedule for them.

Beside ``hub_matches_source`` (total counts) on each stream asset whose connector answers drift
queries (``connectors/<connector>/drift.py``; today Kingdee), a check runs
:func:`pipelines.drift.check` over the range the pipeline has synced: it fails (ERROR) when records
are missing, stale or deleted and lists the differing buckets and ids in its metadata.

The check only reports unless the code location runs with ``TONGBU_DRIFT_REPAIR=1``; then it also
re-reads what it found (and with ``TONGBU_DRIFT_DELETES=soft-delete`` soft-deletes what the source
deleted) and passes with a WARN when the repair brought the hub back in line.

The ``drift_check`` job runs every drift check; the ``drift_check_schedule`` (daily at 03:00, cron in
``TONGBU_DRIFT_SCHEDULE``) is created STOPPED: switch it on in the UI, or set
``TONGBU_DRIFT_SCHEDULE_ON=1``.

No ``from __future__ import annotations``: Dagster inspects the real annotations.
"""

import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from dagster_project.resources import TongbuResource, stream_key
from pipelines.project import PipelineSpec, Project

CHECK_NAME = "hub_in_sync_with_source"
DEFAULT_SCHEDULE = "0 3 * * *"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


@dataclass
class DriftDefinitionParts:
    """What :func:`drift_definitions` adds to the project's Definitions."""

    asset_checks: list[Any] = field(default_factory=list)
    jobs: list[Any] = field(default_factory=list)
    schedules: list[dg.ScheduleDefinition] = field(default_factory=list)


def _flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={value!r}: use 1/true/yes/on or 0/false/no/off")


def supports_drift(project: Project, spec: PipelineSpec) -> bool:
    """Whether the pipeline's connector ships drift queries (``connectors/<name>/drift.py``)."""
    name = project.connection(spec.source.connection).connector
    try:
        return importlib.util.find_spec(f"connectors.{name}.drift") is not None
    except ModuleNotFoundError:
        return False


def _drift_check(spec: PipelineSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=stream_key(spec),
        name=CHECK_NAME,
        description="Count and hash of (id, source modification time) per time bucket agree between "
        "the source and the hub over the synced range: no back-dated edit, late commit or source "
        "delete was missed. Repairs when TONGBU_DRIFT_REPAIR=1.",
    )
    def _check_fn(tongbu: TongbuResource) -> dg.AssetCheckResult:
        from pipelines.drift import check
        from tongbu.vault import redacting_errors

        repair = _flag("TONGBU_DRIFT_REPAIR")
        deletes = os.environ.get("TONGBU_DRIFT_DELETES", "report").strip() or "report"
        with redacting_errors():
            report = check(tongbu.runner(), spec.name, repair=repair, deletes=deletes)
        d = report.as_dict(limit=50)
        meta = {
            "status": report.status,
            "source_rows": report.source_rows,
            "hub_rows": report.hub_rows,
            **{k: v for k, v in d["counts"].items()},
            "buckets": dg.MetadataValue.json(d["buckets"]),
            "ids": dg.MetadataValue.json({k: d[k] for k in ("missing", "stale", "deleted")}),
            "range": dg.MetadataValue.json(d["range"]),
            "buckets_compared": report.buckets_compared,
            "duration_s": d["duration_s"],
        }
        if report.repaired is not None:
            meta["repaired"] = dg.MetadataValue.json(report.repaired)
        if report.status in ("not_applicable", "never_synced"):
            return dg.AssetCheckResult(
                passed=True,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={**meta, "note": report.note or ""},
            )
        if report.status == "in_sync":
            return dg.AssetCheckResult(passed=True, metadata=meta)
        if report.status == "repaired":
            left = report.deleted if deletes == "report" else []
            return dg.AssetCheckResult(
                passed=not left,
                severity=dg.AssetCheckSeverity.WARN,
                metadata=meta,
                description=f"drift found and re-read: {report.repaired}"
                + (f"; {len(left)} record(s) deleted in the source are reported only" if left else ""),
            )
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=meta,
            description=f"{len(report.missing)} missing, {len(report.stale)} stale, {len(report.deleted)} "
            f"deleted in {len(report.buckets)} bucket(s): run `tongbu drift check {spec.name} --repair`",
        )

    return _check_fn


def drift_definitions(project: Project) -> DriftDefinitionParts:
    """Drift checks for every enabled pipeline that supports them, plus their job and schedule."""
    parts = DriftDefinitionParts()
    specs = [s for s in project.pipelines.values() if s.enabled and supports_drift(project, s)]
    if not specs:
        return parts
    parts.asset_checks = [_drift_check(s) for s in specs]
    job = dg.define_asset_job(
        "drift_check",
        selection=dg.AssetSelection.checks(*[dg.AssetCheckKey(stream_key(s), CHECK_NAME) for s in specs]),
        description="Drift check (count and hash per time bucket) of every synced stream",
    )
    parts.jobs = [job]
    parts.schedules = [
        dg.ScheduleDefinition(
            name="drift_check_schedule",
            job=job,
            cron_schedule=os.environ.get("TONGBU_DRIFT_SCHEDULE") or DEFAULT_SCHEDULE,
            default_status=dg.DefaultScheduleStatus.RUNNING
            if _flag("TONGBU_DRIFT_SCHEDULE_ON")
            else dg.DefaultScheduleStatus.STOPPED,
            description="Finds records the incremental syncs missed (back-dated edits, deletes)",
        )
    ]
    return parts


__all__ = ["CHECK_NAME", "DriftDefinitionParts", "drift_definitions", "supports_drift"]
