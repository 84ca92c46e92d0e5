"""The simulators ``tongbu simulate <system>`` can start, contributed by the connectors themselves.

Nothing here names a connector. A simulator is found, lazily, in one of three ways:

1. a connector package ``connectors/<name>/`` with a ``simulator`` module (or package) that sets
   ``SIMULATOR = <its Simulator subclass>``: ``tongbu simulate <name>``;
2. an installed distribution's entry point in the group ``tongbu.simulators``
   (``name = "package.module:Class"``), for connectors that live outside this repository;
3. :func:`register` at run time (tests, generated connectors).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import pkgutil
from importlib import metadata

from connectors.kit.simulator.base import Simulator

__all__ = ["ENTRY_POINT_GROUP", "load_simulator", "register", "simulator_names"]

ENTRY_POINT_GROUP = "tongbu.simulators"
_REGISTERED: dict[str, type[Simulator]] = {}


def register(cls: type[Simulator]) -> type[Simulator]:
    """Register ``cls`` under ``cls.system`` (usable as a class decorator)."""
    if not cls.system:
        raise ValueError(f"{cls.__name__} has no `system` name")
    _REGISTERED[cls.system] = cls
    return cls


def _connector_modules() -> dict[str, str]:
    import connectors

    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(connectors.__path__):
        if not info.ispkg or info.name.startswith("_") or info.name == "kit":
            continue
        module = f"connectors.{info.name}.simulator"
        if importlib.util.find_spec(module) is not None:
            found[info.name] = module
    return found


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def simulator_names() -> list[str]:
    """Every simulator name that can be loaded."""
    return sorted({*_REGISTERED, *_connector_modules(), *_entry_points()})


def load_simulator(system: str) -> type[Simulator]:
    """Return the simulator class of ``system``; KeyError (with the known names) when there is none."""
    if system in _REGISTERED:
        return _REGISTERED[system]
    modules = _connector_modules()
    if system in modules:
        cls = getattr(importlib.import_module(modules[system]), "SIMULATOR", None)
        if not (isinstance(cls, type) and issubclass(cls, Simulator)):
            raise KeyError(f"{modules[system]} does not set SIMULATOR to a Simulator subclass")
        return cls
    eps = _entry_points()
    if system in eps:
        loaded = eps[system].load()
        if not (isinstance(loaded, type) and issubclass(loaded, Simulator)):
            raise KeyError(f"entry point {system!r} ({eps[system].value}) is not a Simulator subclass")
        return loaded
    known = simulator_names()
    close = difflib.get_close_matches(system, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise KeyError(f"no simulator named {system!r}{hint} (known: {', '.join(known) or 'none'})")
