"""Connectors tongbu knows by name: the Singer tap/target classes and their executables.

Nothing here lists a connector. A connector is found, lazily, in one of two ways:

1. a package ``connectors/<name>/`` with a ``tap`` and/or ``target`` module, each defining one
   singer-sdk ``Tap`` / ``Target`` subclass (``tongbu new connector NAME`` creates one);
2. an installed distribution's entry point in the group ``tongbu.connectors``
   (``name = "package"``: a package with the same ``tap`` / ``target`` modules), for connectors that
   live outside this repository.

The executables are ``tap-<name>`` / ``target-<name>`` (console scripts in ``pyproject.toml``).
Modules are not imported until a class is loaded, so loading the project file imports no connector.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import pkgutil
from dataclasses import dataclass
from importlib import metadata
from typing import Any

ENTRY_POINT_GROUP = "tongbu.connectors"
#: packages under connectors/ that are not connectors
_NOT_CONNECTORS = {"kit"}


@dataclass(frozen=True)
class ConnectorInfo:
    """Where a connector's tap and target live."""

    name: str
    tap: str | None = None  # "module" (its one singer_sdk.Tap) or "module:Class"
    target: str | None = None  # "module" (its one singer_sdk.Target) or "module:Class"
    tap_executable: str | None = None
    target_executable: str | None = None


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _info(name: str, package: str) -> ConnectorInfo | None:
    tap, target = f"{package}.tap", f"{package}.target"
    has_tap, has_target = _has_module(tap), _has_module(target)
    if not (has_tap or has_target):
        return None
    return ConnectorInfo(
        name,
        tap=tap if has_tap else None,
        target=target if has_target else None,
        tap_executable=f"tap-{name}" if has_tap else None,
        target_executable=f"target-{name}" if has_target else None,
    )


def _packages() -> dict[str, str]:
    """name -> package of every connector candidate (entry points first, the repository's win)."""
    import connectors

    found = {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    for mod in pkgutil.iter_modules(connectors.__path__):
        if mod.ispkg and not mod.name.startswith("_") and mod.name not in _NOT_CONNECTORS:
            found[mod.name] = f"connectors.{mod.name}"
    return found


def connectors() -> dict[str, ConnectorInfo]:
    """Every connector found (see the module docstring)."""
    out = {}
    for name, package in sorted(_packages().items()):
        info = _info(name, package)
        if info is not None:
            out[name] = info
    return out


def connector(name: str) -> ConnectorInfo:
    """The connector ``name`` (KeyError with a did-you-mean and the known ones)."""
    package = _packages().get(name)
    info = _info(name, package) if package else None
    if info is None:
        known = sorted(connectors())
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise KeyError(f"unknown connector {name!r}; {hint}known: {', '.join(known)}")
    return info


def load_class(path: str) -> Any:
    """Import ``module:Class``, or the one singer-sdk Tap/Target class ``module`` defines."""
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    if attr:
        return getattr(module, attr)
    from singer_sdk.plugin_base import PluginBase

    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, PluginBase)
        and obj.__module__ == module_name
        and not inspect.isabstract(obj)
    ]
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found) or "none"
        raise ImportError(
            f"{module_name} must define exactly one singer-sdk Tap or Target class (found {names})"
        )
    return found[0]


def event_sources() -> dict[str, str]:
    """connector name -> module of its event source (``connectors/<name>/events.py``)."""
    out = {}
    for name, package in sorted(_packages().items()):
        if _has_module(f"{package}.events"):
            out[name] = f"{package}.events"
    return out


def load_event_source(name: str) -> Any:
    """The one :class:`connectors.kit.events.EventSource` subclass of connector ``name``.

    KeyError (listing the connectors that have one) when ``name`` receives no pushed events.
    """
    from connectors.kit.events import EventSource

    module_name = event_sources().get(name)
    if module_name is None:
        raise KeyError(f"connector {name!r} pushes no events; known: {', '.join(event_sources()) or 'none'}")
    module = importlib.import_module(module_name)
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, EventSource)
        and obj.__module__ == module_name
        and not inspect.isabstract(obj)
    ]
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found) or "none"
        raise ImportError(f"{module_name} must define exactly one EventSource class (found {names})")
    return found[0]


def dagster_hooks() -> dict[str, str]:
    """connector name -> its ``connectors/<name>/dagster.py`` module (see :mod:`connectors.kit.dagster`)."""
    return {
        name: f"{pkg}.dagster" for name, pkg in sorted(_packages().items()) if _has_module(f"{pkg}.dagster")
    }


def spokes() -> dict[str, str]:
    """connector name -> its ``connectors/<name>/spoke.py`` module (two-way sync, ``connectors.kit.spoke``)."""
    return {name: f"{pkg}.spoke" for name, pkg in sorted(_packages().items()) if _has_module(f"{pkg}.spoke")}


def load_spoke_factory(name: str) -> Any:
    """The ``make_spoke`` function of connector ``name`` (KeyError listing those that have one)."""
    module_name = spokes().get(name)
    factory = getattr(importlib.import_module(module_name), "make_spoke", None) if module_name else None
    if factory is None:
        known = ", ".join(n for n, m in spokes().items() if hasattr(importlib.import_module(m), "make_spoke"))
        raise KeyError(f"connector {name!r} cannot take part in a two-way sync; known: {known or 'none'}")
    return factory


def __getattr__(name: str) -> Any:
    # ``CONNECTORS`` was a hand-kept dict; it is now what discovery finds (read-only snapshot).
    if name == "CONNECTORS":
        return connectors()
    raise AttributeError(name)
