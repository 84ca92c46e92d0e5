"""Alerts: a sensor that tells people about failed runs, failed checks and open conflicts.

``tongbu_alerts`` (every 60 s) reads what happened since its cursor — Dagster runs that failed, and
asset checks of finished runs that failed with severity ERROR (freshness, reconciliation), from the
instance; open two-way sync conflicts from the hub — and sends each through the shared notifier (:mod:`pipelines.notify`) on
every channel of ``alerts.channels`` (WeCom app message, WeCom group robot, e-mail). Each event has
its own dedup key (``run-failed:<run>``, ``check-failed:<run>:<asset>:<check>``, ``conflict:<id>``): the
notifier's ledger delivers it once per recipient across sensor restarts, and a failed delivery is
tried again on the next tick. Texts pass through the vault's redaction, so no secret value leaves.

The sensor starts running only when the project has alert channels (it launches no runs either way).
"""

import dataclasses
import json
from typing import Any

import dagster as dg
from sqlalchemy import select

from connectors.kit.notify import Notification
from dagster_project.resources import TongbuResource

#: events read per tick (the rest on the next tick: the cursor only moves past what was handled)
BATCH = 200
#: undelivered alerts kept in the sensor cursor for the next tick
MAX_RETRY = 50


def _redact(text: str) -> str:
    from tongbu.vault import redact

    return redact(" ".join(str(text).split()))


def _run_failure(instance: Any, run_id: str) -> Notification:
    run = instance.get_run_by_id(run_id)
    job = run.job_name if run else "?"
    # The first failed step says why; the run failure event itself only says "steps failed".
    reasons = [
        r.event_log_entry.dagster_event.event_specific_data.error.message
        for r in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
        if r.event_log_entry.dagster_event is not None
        and getattr(r.event_log_entry.dagster_event.event_specific_data, "error", None)
    ]
    why = reasons[0] if reasons else "the run failed (see its page in Dagster)"
    return Notification(
        subject=_redact(f"tongbu: run of {job} failed"),
        body=_redact(f"Dagster run {run_id} of job {job} failed: {why.strip()}"),
        key=f"run-failed:{run_id}",
        severity="critical",
    )


def _check_failures(instance: Any, run_id: str) -> list[Notification]:
    out = []
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if evaluation is None or evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR:
            continue  # warnings stay on the asset page
        asset = evaluation.asset_key.to_user_string()
        meta = {k: getattr(v, "value", v) for k, v in (evaluation.metadata or {}).items()}
        out.append(
            Notification(
                subject=_redact(f"tongbu: check {evaluation.check_name} failed on {asset}"),
                body=_redact(
                    f"Asset check {evaluation.check_name} on {asset} failed (run {run_id}). "
                    f"{evaluation.description or ''} "
                    f"Figures: {json.dumps(meta, ensure_ascii=False, default=str)}"
                ),
                key=f"check-failed:{run_id}:{asset}:{evaluation.check_name}",
                severity="warning",
            )
        )
    return out


def open_conflicts(engine: Any, tenant: str, after_id: int) -> list[Notification]:
    """A notification per two-way sync conflict opened after ``after_id`` and still open."""
    from pipelines.sync.models import SyncConflict

    t = SyncConflict.__table__
    with engine.connect() as conn:
        rows = conn.execute(
            select(t)
            .where(t.c.tenant_id == tenant, t.c.status == "open", t.c.id > after_id)
            .order_by(t.c.id)
            .limit(BATCH)
        ).mappings()
        out = []
        for r in rows:
            what = f"field {r['field']}" if r["field"] else f"{r['kind']} match"
            out.append(
                Notification(
                    subject=_redact(f"tongbu: sync conflict on {r['object']} ({r['pair']})"),
                    body=_redact(
                        f"Conflict {r['id']} on {r['object']} {r['hub_id']} ({what}): the hub has "
                        f"{json.dumps(r['hub_value'], ensure_ascii=False, default=str)}, {r['system']} has "
                        f"{json.dumps(r['system_value'], ensure_ascii=False, default=str)}. Decide it with "
                        "`tongbu conflicts`."
                    ),
                    key=f"conflict:{r['id']}",
                    severity="warning",
                )
            )
    return out


def collect(
    instance: Any, engine: Any, tenant: str, cursor: dict[str, Any]
) -> tuple[list[Notification], dict]:
    """Everything to tell since ``cursor`` and the next cursor.

    Runs that ended since the cursor (Dagster's run status change records, which every event log
    storage answers, run-sharded SQLite included): a failed run, and every check of a finished run
    that failed with severity ERROR. Then two-way sync conflicts opened since and still open.
    """
    notes: list[Notification] = []
    for event_type, name in (
        (dg.DagsterEventType.RUN_FAILURE, "failure"),
        (dg.DagsterEventType.RUN_SUCCESS, "success"),
    ):
        result = instance.fetch_run_status_changes(
            event_type, limit=BATCH, cursor=cursor.get(name), ascending=True
        )
        for record in result.records:
            run_id = record.event_log_entry.run_id
            if event_type == dg.DagsterEventType.RUN_FAILURE:
                notes.append(_run_failure(instance, run_id))
            notes += _check_failures(instance, run_id)
        if result.cursor:
            cursor[name] = result.cursor
    conflicts = open_conflicts(engine, tenant, int(cursor.get("conflict", 0)))
    for note in conflicts:
        cursor["conflict"] = max(int(cursor.get("conflict", 0)), int(note.key.split(":")[1]))
    return notes + conflicts, cursor


def alerts_sensor(project: Any) -> dg.SensorDefinition:
    """The alert sensor of ``project`` (running by default only when alert channels are configured)."""

    @dg.sensor(
        name="tongbu_alerts",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING
        if project.alerts.channels
        else dg.DefaultSensorStatus.STOPPED,
        description="Sends failed runs, failed checks (severity ERROR) and open sync conflicts to the "
        "alert channels of tongbu.yaml, once per event.",
    )
    def _sensor(context: dg.SensorEvaluationContext, tongbu: TongbuResource) -> dg.SkipReason:
        from pipelines.notify import Notifier
        from tongbu.db import get_engine

        proj = tongbu.project()
        if not proj.alerts.channels:
            return dg.SkipReason("no alert channels in tongbu.yaml (alerts.channels)")
        engine = get_engine()
        cursor = json.loads(context.cursor) if context.cursor else {}
        retry = [
            Notification(**{**n, "recipients": tuple(n.get("recipients") or ())})
            for n in cursor.pop("retry", [])
        ]
        notes, cursor = collect(context.instance, engine, proj.tenant, cursor)
        notes = retry + notes
        notifier = Notifier(proj, engine)
        sent = failed = 0
        again: list[dict[str, Any]] = []
        try:
            for note in notes:
                note_failed = False
                for name in notifier.channels():
                    try:
                        deliveries = notifier.send(name, note)
                    except Exception as exc:  # noqa: BLE001 - a broken channel must not stop the others
                        context.log.warning(f"alert channel {name}: {_redact(str(exc))}")
                        failed += 1
                        note_failed = True
                        continue
                    sent += sum(d.status == "sent" for d in deliveries)
                    bad = sum(d.status == "failed" for d in deliveries)
                    failed += bad
                    note_failed = note_failed or bad > 0
                if note_failed:
                    # The ledger sends again only what was not delivered; the cursor keeps the event.
                    again.append(dataclasses.asdict(note))
        finally:
            notifier.close()
        if len(again) > MAX_RETRY:
            context.log.warning(f"{len(again) - MAX_RETRY} undelivered alert(s) dropped from the retry list")
        cursor["retry"] = again[-MAX_RETRY:]
        context.update_cursor(json.dumps(cursor))
        return dg.SkipReason(f"{len(notes)} event(s): {sent} delivered, {failed} failed (retried next tick)")

    return _sensor


__all__ = ["alerts_sensor", "collect", "open_conflicts"]
