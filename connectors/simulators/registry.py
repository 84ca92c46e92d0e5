"""The simulators ``tongbu simulate <system>`` can start, by name (imported lazily)."""

from __future__ import annotations

import importlib

from connectors.simulators.base import Simulator

SIMULATORS: dict[str, str] = {
    "kingdee": "connectors.kingdee.simulator:KingdeeSimulator",
    "wecom": "connectors.wecom.simulator:WeComSimulator",
}


def load_simulator(system: str) -> type[Simulator]:
    """Return the simulator class registered as ``system``."""
    try:
        target = SIMULATORS[system]
    except KeyError:
        known = ", ".join(sorted(SIMULATORS))
        raise KeyError(f"no simulator named {system!r}; known: {known}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
