"""Per-system limits: one Dagster pool per external system of a tenant, its limit from the project.

Every sync step that calls a connection's system claims a slot of the pool
``tongbu.<tenant>.<connection>`` (:func:`dagster_project.resources.pool_name`). Dagster keeps the slots in
the instance's storage (PostgreSQL in production), so the limit holds across runs, Celery workers,
Kubernetes pods and machines: with ``concurrency: 2`` on a connection, a third step waits for a free
slot instead of calling the ERP. The limits are set on the instance (they are the operator's, not the
code's) by ``tongbu dagster-pools`` or :func:`apply_pool_limits` at deploy time; a pool without a limit
takes the instance's ``concurrency.pools.default_limit`` (``deploy/dagster.yaml``).
"""

from __future__ import annotations

import dagster as dg

from dagster_project.resources import pool_name
from pipelines.project import Project


def pool_limits(project: Project) -> dict[str, int]:
    """Pool -> slots for every connection of the project that sets ``concurrency``."""
    return {
        pool_name(project.tenant, name): conn.concurrency
        for name, conn in sorted(project.connections.items())
        if conn.concurrency is not None
    }


def apply_pool_limits(instance: dg.DagsterInstance, project: Project) -> dict[str, int]:
    """Set each pool's slot count on the instance (idempotent); returns what was set."""
    limits = pool_limits(project)
    for pool, slots in limits.items():
        instance.event_log_storage.set_concurrency_slots(pool, slots)
    return limits


__all__ = ["apply_pool_limits", "pool_limits"]
