"""The project file (``tongbu.yaml``): connections, pipelines and their schedules.

A pipeline is *source stream → mapping → CRM object*. Connection configs may reference environment
variables (``${VAR}`` / ``${VAR:-default}``) and vault secrets (``vault:<connection>.<field>``); the
references are resolved only when a run starts, so resolved secrets never sit in the project object,
Dagster run config or logs.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tongbu.config import DEFAULT_TENANT

PROJECT_FILE = "tongbu.yaml"
#: A project file is hand-written configuration: anything larger is a mistake or an attack.
MAX_PROJECT_BYTES = 1_000_000
#: YAML nodes after alias expansion (``*ref`` copies): bounds "billion laughs" documents.
MAX_YAML_NODES = 200_000
MAX_YAML_DEPTH = 50
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


_OWNER = re.compile(r"(team:[\w.-]+|[^@\s]+@[^@\s]+\.[^@\s]+)")


def _check_owners(v: list[str] | None) -> list[str] | None:
    for owner in v or ():
        if not _OWNER.fullmatch(owner):
            raise ValueError(f"owner {owner!r} must be an e-mail address or team:<name>")
    return v


class ProjectError(ValueError):
    """The project file is missing or invalid; the message names the file and the problem."""


class Connection(BaseModel):
    """An instance of a connector with its (reference-bearing) config."""

    model_config = ConfigDict(extra="forbid")
    connector: str
    config: dict[str, Any] = Field(default_factory=dict)
    #: most steps calling this system at once, across all runs and workers (the Dagster pool
    #: ``tongbu.<tenant>.<connection>``); None leaves it to the instance's default pool limit
    concurrency: int | None = Field(default=None, ge=1, le=1000)
    #: ``on``/``off`` forces this connection's Dagster schedules and sensors on or off; unset (the
    #: default) starts them once every vault secret the config names is stored.
    schedules: bool | None = None
    #: who answers for this connection's assets in Dagster (e-mail or ``team:<name>``)
    owners: list[str] | None = None

    _owners = field_validator("owners")(classmethod(lambda cls, v: _check_owners(v)))


class SourceRef(BaseModel):
    """The stream a pipeline reads."""

    model_config = ConfigDict(extra="forbid")
    connection: str
    stream: str


class TargetRef(BaseModel):
    """The CRM object a pipeline writes."""

    model_config = ConfigDict(extra="forbid")
    object: str


class HistorySpec(BaseModel):
    """Historical migration of a pipeline: its past as time-window partitions, loaded off-peak.

    Each partition holds the records whose source modification time falls in its window; it is
    loaded, verified by sampling against the source and reported (``pipelines.history``).
    """

    model_config = ConfigDict(extra="forbid")
    #: first day of the oldest window
    start: dt.date
    #: day after the newest window (default: windows up to the last complete one)
    end: dt.date | None = None
    partitions: Literal["daily", "weekly", "monthly"] = "monthly"
    #: when off-peak batches start (cron, in ``timezone``)
    off_peak: str = "0 1 * * *"
    timezone: str = "Asia/Shanghai"
    #: partitions launched per off-peak tick (oldest missing first)
    per_batch: int = Field(default=4, ge=1, le=1000)
    #: records re-read from the source per partition to verify the hub
    sample: int = Field(default=50, ge=0, le=100_000)

    @field_validator("off_peak")
    @classmethod
    def _cron(cls, v: str) -> str:
        check_cron(v, "off_peak")
        return v


class PipelineSpec(BaseModel):
    """One pipeline: a source stream mapped into a CRM object, on a schedule."""

    model_config = ConfigDict(extra="forbid")
    name: str = ""
    source: SourceRef
    mapping: str  # path (relative to the project file), optionally "#<mapping name>"
    target: TargetRef
    schedule: str | None = "*/15 * * * *"
    #: ``on``/``off`` forces this pipeline's schedule on or off (over the connection's ``schedules``)
    schedules: bool | None = None
    #: who answers for this pipeline's assets (over the connection's and the project's owners)
    owners: list[str] | None = None
    enabled: bool = True
    batch_size: int = 5000
    description: str | None = None
    #: backfill of the pipeline's history (``dagster_project.history``); None: no history assets
    history: HistorySpec | None = None

    _owners = field_validator("owners")(classmethod(lambda cls, v: _check_owners(v)))

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            check_cron(v, "schedule")
        return v

    @property
    def asset_prefix(self) -> str:
        return self.source.connection


class SyncProjectSpec(BaseModel):
    """A two-way sync of the project: a ``sync:`` declaration of a mapping file, and the connection
    each of its systems is reached through (``pipelines/sync/project.py`` runs it)."""

    model_config = ConfigDict(extra="forbid")
    name: str = ""
    #: path of the mapping file holding the declaration, optionally "#<declaration name>"
    #: (default: the declaration named like this sync)
    declaration: str
    #: system of the declaration -> connection of this file (default: the connection of that name)
    connections: dict[str, str] = Field(default_factory=dict)
    schedule: str | None = "*/15 * * * *"
    #: the full compare that finds out-of-band edits (drift)
    reconcile_schedule: str | None = "0 3 * * *"
    enabled: bool = True
    description: str | None = None

    @field_validator("schedule", "reconcile_schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            check_cron(v, "schedule")
        return v


class AlertChannelSpec(BaseModel):
    """One alert channel (``alerts.channels.<name>``): its ``kind`` and that kind's options.

    The options are checked against the kind when the notifier builds the channel
    (:mod:`pipelines.notify`); values may reference ``${ENV}`` and ``vault:`` secrets.
    """

    model_config = ConfigDict(extra="allow")
    kind: str


class AlertsSpec(BaseModel):
    """Where alerts go (``alerts:``): named channels."""

    model_config = ConfigDict(extra="forbid")
    channels: dict[str, AlertChannelSpec] = Field(default_factory=dict)


class TendersSpec(BaseModel):
    """Tender feeds (``tenders:``): which connection reads notices, who "we" are in awards, where
    alerts go (``docs/connectors/tender.md``)."""

    model_config = ConfigDict(extra="forbid")
    connection: str = "tender"
    us: dict[str, Any] = Field(default_factory=dict)
    crm: bool = True
    schedule: str | None = "*/5 * * * *"
    #: seconds between alert sensor ticks (alerts go out within a minute of a notice being read)
    alert_interval: int = 20

    @field_validator("us")
    @classmethod
    def _us(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if key not in ("name", "names", "credit_code"):
                raise ValueError(f"tenders.us: unknown key {key!r} (known: name, names, credit_code)")
        return v

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            check_cron(v, "tenders.schedule")
        return v


class Project(BaseModel):
    """The parsed project file."""

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    tenant: str = DEFAULT_TENANT
    #: default owners of every asset (e-mail or ``team:<name>``), shown on Dagster's asset pages
    owners: list[str] = Field(default_factory=lambda: ["team:integrations"])
    connections: dict[str, Connection] = Field(default_factory=dict)
    pipelines: dict[str, PipelineSpec] = Field(default_factory=dict)
    syncs: dict[str, SyncProjectSpec] = Field(default_factory=dict)
    alerts: AlertsSpec = Field(default_factory=AlertsSpec)
    tenders: TendersSpec = Field(default_factory=TendersSpec)
    root: Path = Path(".")

    _owners = field_validator("owners")(classmethod(lambda cls, v: _check_owners(v)))

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

    def sync(self, name: str) -> SyncProjectSpec:
        """The two-way sync ``name`` (error lists the known ones)."""
        try:
            return self.syncs[name]
        except KeyError:
            known = ", ".join(sorted(self.syncs)) or "none (add a syncs: section to the project file)"
            raise ProjectError(f"no sync {name!r}; known: {known}") from None

    def mapping_path(self, pipeline: PipelineSpec) -> tuple[Path, str | None]:
        """File and optional mapping name a pipeline's ``mapping`` points at."""
        return self.file_ref(pipeline.mapping)

    def file_ref(self, ref: str) -> tuple[Path, str | None]:
        """``path#name`` relative to the project file (else to the package): the file and the name."""
        path, _, name = ref.partition("#")
        p = Path(path)
        if not p.is_absolute():
            p = (self.root / p) if (self.root / p).exists() else _package_root() / p
        return p, (name or None)

    def resolved_config(self, connection: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Connection config with ``${ENV}`` expanded (vault references are resolved by the runner)."""
        cfg: dict[str, Any] = _expand_env(self.connection(connection).config)
        if overrides:
            cfg.update(overrides)
        return cfg


def is_valid_cron(expression: str) -> bool:
    """Dagster's own test of a cron string (what its schedules accept: 5 fields, real dates)."""
    try:
        from dagster._utils.schedules import is_valid_cron_string
    except ImportError:  # pragma: no cover - Dagster moved it: the same rule through croniter
        from croniter import croniter

        return len(expression.split()) == 5 and bool(croniter.is_valid(expression))
    return bool(is_valid_cron_string(expression))


def check_cron(expression: str, what: str) -> None:
    """Raise ``ValueError`` (one line) unless ``expression`` is a cron string Dagster can schedule."""
    if not isinstance(expression, str) or not is_valid_cron(expression):
        raise ValueError(
            f"{what} {expression!r} is not a valid cron expression "
            "(5 fields: minute hour day-of-month month day-of-week, e.g. '*/15 * * * *')"
        )


def connector_settings(connector_name: str) -> set[str] | None:
    """The config keys a connector accepts (its tap's settings schema, or its target's), or None.

    None means the schema allows any key (``additionalProperties`` true). The keys singer-sdk adds to
    every plugin (``stream_maps``, ``flattening_enabled``, …) are included.
    """
    import copy

    from connectors.registry import connector, load_class

    info = connector(connector_name)
    path = info.tap or info.target
    if not path:
        return None
    cls = load_class(path)
    schema = copy.deepcopy(cls.config_jsonschema)
    cls.append_builtin_config(schema)
    if schema.get("additionalProperties") not in (None, False):
        return None
    return set(schema.get("properties") or {})


def check_connections(project: Project, where: str | Path = PROJECT_FILE) -> None:
    """Every connection names a known connector and only keys of that connector's settings schema.

    A misspelt key (``page_sise``) would otherwise be ignored and the default used, silently; the
    error names the connection, the key and the closest known key.
    """
    for name, conn in project.connections.items():
        try:
            allowed = connector_settings(conn.connector)
        except KeyError as exc:
            raise ProjectError(f"{where}: connections.{name}.connector: {exc.args[0]}") from None
        if allowed is None:
            continue
        problems = []
        for key in conn.config:
            if key in allowed:
                continue
            close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(allowed))}"
            problems.append(f"unknown key {key!r} for connector {conn.connector!r} ({hint})")
        if problems:
            raise ProjectError(f"{where}: connections.{name}.config: " + "; ".join(problems))
        for key, value in conn.config.items():
            # Cron strings in a connection config (e.g. WeCom's rescan_schedule) are Dagster schedules.
            if key.endswith("schedule") and isinstance(value, str) and "${" not in value:
                try:
                    check_cron(value, key)
                except ValueError as exc:
                    raise ProjectError(f"{where}: connections.{name}.config.{key}: {exc}") from None


def _package_root() -> Path:
    return Path(__file__).resolve().parent.parent


def expand_env(value: Any) -> Any:
    """``value`` with ``${VAR}`` / ``${VAR:-default}`` expanded (ProjectError for an unset variable)."""
    return _expand_env(value)


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


def read_yaml_file(p: Path) -> Any:
    """A hand-written YAML file (project or declaration), bounded like the project file."""
    return _read_yaml(p)


def _read_yaml(p: Path) -> Any:
    """Parse a project file: bounded in size, depth and alias expansion, safe constructors only."""
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ProjectError(f"{p}: cannot read the project file ({exc.strerror})") from None
    if size > MAX_PROJECT_BYTES:
        raise ProjectError(
            f"{p}: the project file is {size:,} bytes, more than the {MAX_PROJECT_BYTES:,} allowed"
        )
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ProjectError(f"{p}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ProjectError(f"{p}: cannot read the project file ({exc.strerror})") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}
        _check_node_budget(p, node)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1})" if mark else ""
        reason = " ".join(x for x in (exc.context, exc.problem) if x)
        raise ProjectError(f"{p}: not valid YAML{where}: {reason}") from None
    except yaml.YAMLError as exc:
        raise ProjectError(f"{p}: not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ProjectError(f"{p}: the YAML is nested too deeply") from None
    finally:
        loader.dispose()


def _check_node_budget(p: Path, root: yaml.Node) -> None:
    # Count the nodes the document stands for once every alias is expanded, without expanding it:
    # an alias is the same node object, so a node's expanded size is computed once (iteratively,
    # children first). A "billion laughs" file is refused before anything is built from it.
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    on_path: set[int] = set()
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[key] > MAX_YAML_NODES:
                raise ProjectError(
                    f"{p}: the YAML expands to more than {MAX_YAML_NODES:,} values (aliases nested too much)"
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise ProjectError(f"{p}: the YAML refers to itself (recursive alias)")
        if depth > MAX_YAML_DEPTH:
            raise ProjectError(f"{p}: the YAML is nested more than {MAX_YAML_DEPTH} levels deep")
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in _children(node) if id(c) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_project(path: str | Path | None = None, *, strict: bool = True) -> Project:
    """Load and validate a project file; errors name the file and the field (one line).

    ``strict`` (default) also checks every connection config against its connector's settings
    schema and every cron string with Dagster's rules; commands that only need the tenant skip it.
    """
    p = Path(path) if path else find_project_file()
    if not p.exists():
        raise ProjectError(f"{p}: project file not found (create tongbu.yaml or set TONGBU_PROJECT)")
    data = _read_yaml(p)
    if not isinstance(data, dict):
        raise ProjectError(f"{p}: the project file must be a mapping (connections:, pipelines:, …)")
    try:
        project = Project.model_validate({**data, "root": p.resolve().parent})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        )
        raise ProjectError(f"{p}: {problems}") from None
    for name, spec in project.pipelines.items():
        spec.name = name
        if spec.source.connection not in project.connections:
            raise ProjectError(
                f"{p}: pipelines.{name}.source.connection: no connection {spec.source.connection!r}"
            )
    for name, sync in project.syncs.items():
        sync.name = name
        for system, conn_name in sync.connections.items():
            if conn_name not in project.connections:
                raise ProjectError(f"{p}: syncs.{name}.connections.{system}: no connection {conn_name!r}")
    if strict:
        check_connections(project, p)
    return project


_CACHE: dict[tuple[str, bool], tuple[tuple[int, int], Project]] = {}


def load_project_cached(path: str | Path | None = None, *, strict: bool = True) -> Project:
    """:func:`load_project`, parsed once per process while the file is unchanged (size and mtime).

    Dagster asks for the project in every asset, check and sensor evaluation; parsing and checking it
    (which imports each connector's tap for its settings schema) each time was a large part of a
    short run. Callers must treat the result as read-only: it is shared.
    """
    p = Path(path) if path else find_project_file()
    try:
        st = p.stat()
    except OSError:
        return load_project(p, strict=strict)  # the same one-line error as an uncached load
    key = (str(p.resolve()), strict)
    stamp = (st.st_mtime_ns, st.st_size)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    project = load_project(p, strict=strict)
    _CACHE[key] = (stamp, project)
    return project
