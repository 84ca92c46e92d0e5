"""What ``tongbu serve`` serves: its sources and options, from the project file or a dict, and the processor built from them."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Engine,
)

from connectors import registry
from connectors.kit.events import EventSource
from tongbu.config import DEFAULT_TENANT
from tongbu.serve.observers import DagsterObserver, EventObserver
from tongbu.serve.processor import EventProcessor

log = logging.getLogger("tongbu.serve")  # one logger for the whole command


@dataclass
class SourceSpec:
    """One webhook to serve: a connection name, its connector and its (resolved) config."""

    name: str
    connector: str
    config: dict[str, Any] = field(repr=False)


@dataclass
class ServeConfig:
    """Everything ``build_app`` needs; build it from a project file or a JSON/dict."""

    sources: list[SourceSpec]
    database_url: str | None = None
    tenant: str = DEFAULT_TENANT
    workers: int = 8
    coalesce_ms: float = 20.0
    max_attempts: int = 6
    max_body_bytes: int = 64 * 1024
    dagster: str = "auto"  # auto (when DAGSTER_HOME is set) | on | off
    dagster_interval_s: float = 2.0
    retention_hours: float = 24.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServeConfig:
        """``{"sources": [{"name", "connector", "config"}], ...}`` (e.g. a JSON file)."""
        d = dict(data)
        sources = [
            SourceSpec(s["name"], s.get("connector", s["name"]), dict(s.get("config") or {}))
            for s in d.pop("sources", [])
        ]
        known = set(cls.__dataclass_fields__) - {"sources"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown serve option(s): {', '.join(sorted(unknown))}")
        return cls(sources=sources, **d)

    @classmethod
    def from_project(
        cls, project: str | Path | None = None, *, connections: Sequence[str] | None = None, **options: Any
    ) -> ServeConfig:
        """One source per connection whose connector pushes events (vault/env references resolved)."""
        from pipelines.project import load_project
        from tongbu.vault.secrets import resolve_secrets

        proj = load_project(project)
        sources = []
        for name, conn in proj.connections.items():
            if conn.connector not in registry.event_sources() or (connections and name not in connections):
                continue
            cfg = resolve_secrets(proj.resolved_config(name), tenant=proj.tenant)
            sources.append(SourceSpec(name, conn.connector, cfg))
        if not sources:
            raise ValueError(
                "no connection in the project pushes events "
                f"(connectors with an event source: {', '.join(sorted(registry.event_sources()))})"
            )
        return cls(sources=sources, tenant=proj.tenant, **options)


def _make_observers(cfg: ServeConfig) -> list[EventObserver]:
    import os

    if cfg.dagster == "off" or (cfg.dagster == "auto" and not os.environ.get("DAGSTER_HOME")):
        return []
    try:
        return [DagsterObserver(interval=cfg.dagster_interval_s)]
    except Exception as exc:
        if cfg.dagster == "on":
            raise
        log.warning("Dagster reporting disabled: %s", exc)
        return []


def build_processor(
    cfg: ServeConfig, *, engine: Engine | None = None, observers: Sequence[EventObserver] | None = None
) -> EventProcessor:
    """The processor with one :class:`EventSource` per configured source (not started)."""
    from tongbu.db import get_engine

    engine = engine or get_engine(cfg.database_url)
    sources: dict[str, EventSource] = {}
    for spec in cfg.sources:
        cls = registry.load_event_source(spec.connector)
        sources[spec.name] = cls(spec.name, spec.config, engine=engine, tenant=cfg.tenant)
    return EventProcessor(
        engine,
        sources,
        tenant=cfg.tenant,
        workers=cfg.workers,
        coalesce_s=cfg.coalesce_ms / 1000.0,
        max_attempts=cfg.max_attempts,
        retention_s=cfg.retention_hours * 3600,
        observers=_make_observers(cfg) if observers is None else observers,
    )
