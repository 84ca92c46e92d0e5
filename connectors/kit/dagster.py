"""The one hook through which a connector adds its own Dagster pieces to the project's code location.

A connector that needs more than the generic per-pipeline sync assets (a rescan, a write-back, a
sensor, checks of its own) defines, in ``connectors/<name>/dagster.py``::

    def dagster_definitions(project) -> DefinitionParts: ...

``dagster_project`` calls it for every connector the project file uses (found by
:func:`connectors.registry.dagster_hooks`; nothing is listed centrally) and merges the parts into its
``Definitions``. ``hub_feeds`` names, per hub object, the connector's assets that write it, so the
generic ``crm/<object>`` asset lists them upstream.

Assets and checks reach tongbu through the resource ``tongbu`` (``required_resource_keys={RESOURCE_KEY}``
and ``context.resources.tongbu``), which offers ``project()`` and ``runner()`` (:class:`TongbuLike`);
connectors never import ``dagster_project`` (it sits above them).

Schedules and sensors start **stopped** unless the connection they belong to is configured (every
``vault:`` secret its config names is stored) or the project file switches them on (``schedules: on``
on the pipeline or the connection). One rule for the generic per-pipeline schedules and for every
connector's own: build them with :func:`default_status` / :func:`default_sensor_status`, so ``dagster
dev`` on a fresh clone starts no run and calls no real external host until the user has said so.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import dagster as dg

log = logging.getLogger(__name__)

#: key of the resource that gives assets the project and a runner
RESOURCE_KEY = "tongbu"


class ConnectionLike(Protocol):
    """What a connector's Dagster pieces read of one connection of the project file."""

    @property
    def connector(self) -> str:
        """The connector the connection uses (``wecom``, ``kingdee``, …)."""


class ProjectLike(Protocol):
    """What a connector's Dagster pieces read of the project file.

    ``pipelines.project.Project`` satisfies it; connectors name this protocol instead, because
    ``pipelines`` sits above them (the layers contract in ``pyproject.toml`` checks it).
    """

    @property
    def tenant(self) -> str:
        """The tenant the project's pipelines write for."""

    @property
    def connections(self) -> Mapping[str, ConnectionLike]:
        """Connections by name."""


class TongbuLike(Protocol):
    """What the ``tongbu`` resource offers a connector's assets."""

    def project(self) -> ProjectLike:
        """The parsed project file (a ``pipelines.project.Project``)."""

    def runner(self, progress: Any = None) -> Any:
        """A runner bound to the hub database (``pipelines.runner.Runner``)."""


@dataclass
class DefinitionParts:
    """What one connector contributes to the project's ``Definitions``."""

    assets: list[Any] = field(default_factory=list)
    asset_checks: list[Any] = field(default_factory=list)
    schedules: list[dg.ScheduleDefinition] = field(default_factory=list)
    sensors: list[dg.SensorDefinition] = field(default_factory=list)
    jobs: list[Any] = field(default_factory=list)
    #: hub object -> the connector's assets that write it (upstream of ``crm/<object>``)
    hub_feeds: dict[str, list[dg.AssetKey]] = field(default_factory=dict)

    def extend(self, other: DefinitionParts) -> None:
        """Add ``other``'s pieces to these."""
        self.assets += other.assets
        self.asset_checks += other.asset_checks
        self.schedules += other.schedules
        self.sensors += other.sensors
        self.jobs += other.jobs
        for obj, keys in other.hub_feeds.items():
            self.hub_feeds.setdefault(obj, []).extend(keys)


def hub_key(obj: str) -> dg.AssetKey:
    """Asset key of a hub object, e.g. ``crm/accounts``."""
    return dg.AssetKey(["crm", obj])


def stream_key(connection: str, stream: str) -> dg.AssetKey:
    """Asset key of a synced stream, e.g. ``kingdee/customers``."""
    return dg.AssetKey([connection, stream])


def connection_configured(project: Any, connection: str) -> bool:
    """True when every ``vault:`` secret named by ``connection``'s config is stored in the vault.

    Reads only the secrets' metadata (no master key, nothing decrypted). A vault that is not
    initialised, a hub database without the vault tables, or any database error counts as "not
    configured": the answer only decides whether schedules start, and "off" is the safe side.
    """
    from tongbu.vault.refs import find_refs, parse_ref

    try:
        refs = find_refs(project.connection(connection).config)
    except Exception:  # a malformed reference: the run reports it; here it means "not configured"
        return False
    if not refs:
        return True
    try:
        from tongbu.vault.store import Vault

        vault = Vault.default()
        if not vault.is_initialized():
            return False
        tenant = project.tenant
        return all(vault.exists(".".join(parse_ref(ref)), tenant=tenant) for _, ref in refs)
    except Exception as exc:  # noqa: BLE001 - no database, no tables: not configured
        log.debug("connection %s counted as not configured: %s", connection, type(exc).__name__)
        return False


def schedules_on(project: Any, connection: str, pipeline: str | None = None) -> bool:
    """Whether the schedules and sensors of ``connection`` (or of one of its pipelines) start running.

    ``schedules: on|off`` on the pipeline wins, then ``schedules: on|off`` on the connection; without
    either, they run once the connection is configured (:func:`connection_configured`).
    """
    spec = project.pipelines.get(pipeline) if pipeline else None
    if spec is not None and getattr(spec, "schedules", None) is not None:
        return bool(spec.schedules)
    conn = project.connection(connection)
    if getattr(conn, "schedules", None) is not None:
        return bool(conn.schedules)
    return connection_configured(project, connection)


def default_status(project: Any, connection: str, pipeline: str | None = None) -> dg.DefaultScheduleStatus:
    """``default_status`` of a schedule belonging to ``connection`` (see :func:`schedules_on`)."""
    on = schedules_on(project, connection, pipeline)
    return dg.DefaultScheduleStatus.RUNNING if on else dg.DefaultScheduleStatus.STOPPED


def default_sensor_status(
    project: Any, connection: str, pipeline: str | None = None
) -> dg.DefaultSensorStatus:
    """``default_status`` of a sensor belonging to ``connection`` (see :func:`schedules_on`)."""
    on = schedules_on(project, connection, pipeline)
    return dg.DefaultSensorStatus.RUNNING if on else dg.DefaultSensorStatus.STOPPED


def asset_owners(project: Any, connection: str | None = None, pipeline: str | None = None) -> list[str]:
    """Owners of an asset: the pipeline's ``owners``, else the connection's, else the project's."""
    spec = project.pipelines.get(pipeline) if pipeline else None
    if spec is not None and getattr(spec, "owners", None):
        return list(spec.owners)
    conn = project.connections.get(connection) if connection else None
    if conn is not None and getattr(conn, "owners", None):
        return list(conn.owners)
    return list(getattr(project, "owners", None) or [])
