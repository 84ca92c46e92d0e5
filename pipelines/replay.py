"""Replay quarantined records through the pipeline's *current* mapping (e.g. after a fix)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from mappings.engine import MappingError
from pipelines.runner import Runner
from tongbu.state.models import QuarantinedRecord

_QUAR = QuarantinedRecord.__table__


def replay(runner: Runner, *, pipeline: str | None = None, ids: list[int] | None = None) -> dict[str, int]:
    """Re-map open quarantine rows; those that now pass are upserted and closed in one transaction."""
    q = select(_QUAR).where(_QUAR.c.tenant_id == runner.tenant, _QUAR.c.status == "open")
    if pipeline:
        q = q.where(_QUAR.c.pipeline == pipeline)
    if ids:
        q = q.where(_QUAR.c.id.in_(ids))
    with runner.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(q.order_by(_QUAR.c.id)).mappings()]
    replayed = failed = 0
    by_pipeline: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_pipeline.setdefault(r["pipeline"], []).append(r)
    for name, items in by_pipeline.items():
        spec = runner.project.pipeline(name)
        mapping = runner.mapping(spec)
        with runner.engine.begin() as conn:
            good: list[dict[str, Any]] = []
            good_ids: list[int] = []
            for item in items:
                try:
                    good.append(mapping.apply(item["payload"] or {}))
                    good_ids.append(item["id"])
                except MappingError as exc:
                    failed += 1
                    conn.execute(
                        update(_QUAR)
                        .where(_QUAR.c.id == item["id"])
                        .values(reason=str(exc), attempts=item["attempts"] + 1)
                    )
            if good:
                runner.hub.upsert(conn, mapping.target_object, good, source_system=spec.source.connection)
                runner.quarantine.mark(conn, good_ids, "replayed")
                replayed += len(good)
    return {"replayed": replayed, "failed": failed}
