"""The simulator kit: one base class, one fault catalogue, one control API, one registry.

See ``docs/writing-a-connector.md`` (section "The simulator") for how a connector uses it.
"""

from connectors.kit.simulator.base import CONTROL_ROUTES, Simulator
from connectors.kit.simulator.faults import (
    API_FAULTS,
    COMMON_FAULTS,
    FaultConfig,
    FaultError,
    FaultSpec,
    pick_rows,
    share_one_time,
)
from connectors.kit.simulator.registry import load_simulator, register, simulator_names

__all__ = [
    "API_FAULTS",
    "COMMON_FAULTS",
    "CONTROL_ROUTES",
    "FaultConfig",
    "FaultError",
    "FaultSpec",
    "Simulator",
    "load_simulator",
    "pick_rows",
    "share_one_time",
    "register",
    "simulator_names",
]
