"""The project file (``tongbu.yaml``): connections, pipelines and their schedules.

A pipeline is *source stream → mapping → CRM object*. Connection configs may reference environment
variables (``${VAR}`` / ``${VAR:-default}``) and vault secrets (``vault:<connection>.<field>``); the
references are resolved only when a run starts, so resolved secrets never sit in the project object,
Dagster run config or logs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tongbu.config import DEFAULT_TENANT

PROJECT_FILE = "tongbu.yaml"
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ProjectError(ValueError):
    """The project file is missing or invalid; the message names the file and the problem."""


class Connection(BaseModel):
    """An instance of a connector with its (reference-bearing) config."""

    model_config = ConfigDict(extra="forbid")
    connector: str
    config: dict[str, Any] = Field(default_factory=dict)


class SourceRef(BaseModel):
    """The stream a pipeline reads."""

    model_config = ConfigDict(extra="forbid")
    connection: str
    stream: str


class TargetRef(BaseModel):
    """The CRM object a pipeline writes."""

    model_config = ConfigDict(extra="forbid")
    object: str


class PipelineSpec(BaseModel):
    """One pipeline: a source stream mapped into a CRM object, on a schedule."""

    model_config = ConfigDict(extra="forbid")
    name: str = ""
    source: SourceRef
    mapping: str  # path (relative to the project file), optionally "#<mapping name>"
    target: TargetRef
    schedule: str | None = "*/15 * * * *"
    enabled: bool = True
    batch_size: int = 5000
    description: str | None = None

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None and len(v.split()) != 5:
            raise ValueError(f"schedule {v!r} is not a 5-field cron expression (e.g. '*/15 * * * *')")
        return v

    @property
    def asset_prefix(self) -> str:
        return self.source.connection


class Project(BaseModel):
    """The parsed project file."""

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    tenant: str = DEFAULT_TENANT
    connections: dict[str, Connection] = Field(default_factory=dict)
    pipelines: dict[str, PipelineSpec] = Field(default_factory=dict)
    root: Path = Path(".")

    def pipeline(self, name: str) -> PipelineSpec:
        """The pipeline ``name`` (error lists the known ones)."""
        try:
            return self.pipelines[name]
        except KeyError:
            raise ProjectError(f"no pipeline {name!r}; known: {', '.join(sorted(self.pipelines))}") from None

    def connection(self, name: str) -> Connection:
        """The connection ``name`` (error lists the known ones)."""
        try:
            return self.connections[name]
        except KeyError:
            raise ProjectError(
                f"no connection {name!r}; known: {', '.join(sorted(self.connections))}"
            ) from None

    def mapping_path(self, pipeline: PipelineSpec) -> tuple[Path, str | None]:
        """File and optional mapping name a pipeline's ``mapping`` points at."""
        path, _, name = pipeline.mapping.partition("#")
        p = Path(path)
        if not p.is_absolute():
            p = (self.root / p) if (self.root / p).exists() else _package_root() / p
        return p, (name or None)

    def resolved_config(self, connection: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Connection config with ``${ENV}`` expanded (vault references are resolved by the runner)."""
        cfg = _expand_env(self.connection(connection).config)
        if overrides:
            cfg.update(overrides)
        return cfg


def _package_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _expand_env(value: Any) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            env = os.environ.get(m.group(1))
            if env is None and m.group(2) is None:
                raise ProjectError(
                    f"environment variable {m.group(1)} is not set (referenced in tongbu.yaml)"
                )
            return env if env is not None else m.group(2)

        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v) for v in value]
    return value


def find_project_file(start: Path | None = None) -> Path:
    """``TONGBU_PROJECT`` or the nearest ``tongbu.yaml`` from ``start`` upwards, else the packaged one."""
    env = os.environ.get("TONGBU_PROJECT")
    if env:
        return Path(env)
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / PROJECT_FILE).exists():
            return d / PROJECT_FILE
    return _package_root() / PROJECT_FILE


def load_project(path: str | Path | None = None) -> Project:
    """Load and validate a project file; errors name the file and the field."""
    p = Path(path) if path else find_project_file()
    if not p.exists():
        raise ProjectError(f"{p}: project file not found (create tongbu.yaml or set TONGBU_PROJECT)")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ProjectError(f"{p}: not valid YAML: {exc}") from None
    try:
        project = Project.model_validate({**data, "root": p.resolve().parent})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ProjectError(f"{p}: {problems}") from None
    for name, spec in project.pipelines.items():
        spec.name = name
        if spec.source.connection not in project.connections:
            raise ProjectError(
                f"{p}: pipelines.{name}.source.connection: no connection {spec.source.connection!r}"
            )
    return project
