"""The pieces every module of the code location shares: the ``tongbu`` resource and the asset keys.

Apart from :mod:`dagster_project.assets` so that :mod:`dagster_project.drift` can use them without an
import cycle (``assets`` builds the definitions and so imports ``drift``).

No ``from __future__ import annotations`` here: Dagster inspects the real annotations.
"""

from typing import Any

import dagster as dg

from connectors.kit.dagster import hub_key
from connectors.kit.dagster import stream_key as kit_stream_key
from pipelines.project import PipelineSpec, Project, load_project


class TongbuResource(dg.ConfigurableResource):
    """Access to the tongbu project and hub. Holds no secrets: connection configs name vault
    references, which the runner resolves inside the run, so nothing secret reaches run config."""

    project_file: str | None = None

    def project(self) -> Project:
        """The parsed project file."""
        return load_project(self.project_file or None)

    def runner(self, progress: Any = None):
        """A runner bound to the hub database (``TONGBU_DATABASE_URL`` or the local SQLite)."""
        from pipelines.runner import Runner

        return Runner(self.project(), progress=progress)

    def sync_runner(self):
        """The project's two-way syncs bound to the hub database (``pipelines/sync/project.py``)."""
        from pipelines.sync.project import SyncRunner

        return SyncRunner(self.project())


def stream_key(spec: PipelineSpec) -> dg.AssetKey:
    """Asset key of a synced stream, e.g. ``kingdee/customers``."""
    return kit_stream_key(spec.source.connection, spec.source.stream)


#: asset key of a hub object, e.g. ``crm/accounts``
object_key = hub_key


def pool_name(tenant: str, connection: str) -> str:
    """The Dagster pool of one external system of one tenant: ``tongbu.<tenant>.<connection>``.

    Every step that calls that system claims a slot of this pool, in every run, on every worker and
    machine that shares the Dagster instance, so parallel runs stay within the system's API limit
    (the limit is the connection's ``concurrency``; :func:`dagster_project.pools.apply_pool_limits`).
    """
    return f"tongbu.{tenant}.{connection}"
