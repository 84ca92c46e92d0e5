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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import dagster as dg

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
