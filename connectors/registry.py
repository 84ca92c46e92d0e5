"""Connectors tongbu knows by name: the Singer tap/target classes and their executables.

The registry is the one place a new connector is declared (see docs/writing-a-connector.md). Classes
are imported lazily so that loading the project file does not import every connector.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ConnectorInfo:
    """Where a connector's tap and target live."""

    name: str
    tap: str | None = None  # "module:Class" of a singer_sdk.Tap
    target: str | None = None  # "module:Class" of a singer_sdk.Target
    tap_executable: str | None = None
    target_executable: str | None = None


CONNECTORS: dict[str, ConnectorInfo] = {
    "kingdee": ConnectorInfo(
        "kingdee", tap="connectors.kingdee.tap:TapKingdee", tap_executable="tap-kingdee"
    ),
    "crm": ConnectorInfo(
        "crm",
        tap="connectors.crm.tap:TapCRM",
        target="connectors.crm.target:TargetCRM",
        tap_executable="tap-crm",
        target_executable="target-crm",
    ),
    "synthetic": ConnectorInfo(
        "synthetic", tap="connectors.synthetic.tap:TapSynthetic", tap_executable="tap-synthetic"
    ),
    "wecom": ConnectorInfo(
        "wecom",
        tap="connectors.wecom.tap:TapWeCom",
        target="connectors.wecom.target:TargetWeCom",
        tap_executable="tap-wecom",
        target_executable="target-wecom",
    ),
}


def connector(name: str) -> ConnectorInfo:
    """The registered connector ``name`` (clear error listing the known ones)."""
    try:
        return CONNECTORS[name]
    except KeyError:
        raise KeyError(f"unknown connector {name!r}; known: {', '.join(sorted(CONNECTORS))}") from None


def load_class(path: str) -> Any:
    """Import ``module:Class``."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)
