"""The two-way syncs of a project file: ``syncs:`` in ``tongbu.yaml``, run by the CLI, Dagster and the demo.

::

    syncs:
      accounts_kingdee:
        declaration: mappings/library/sync/kingdee.yaml   # its `sync:` entry named accounts_kingdee
        connections: {kingdee: kingdee}                     # system of the declaration -> connection
        schedule: "*/15 * * * *"                            # a cycle (changes both ways)
        reconcile_schedule: "0 3 * * *"                     # a full compare (drift)

Each system's spoke is made by its connector (``make_spoke`` in ``connectors/<name>/spoke.py``, found by
the registry) from the connection's config with its ``${ENV}`` and vault references resolved, only
inside the run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, select

from connectors.registry import load_spoke_factory
from pipelines.project import Project, ProjectError, SyncProjectSpec, read_yaml_file
from pipelines.runner import Runner
from pipelines.sync.config import SyncConfigError, build_pairs
from pipelines.sync.engine import SyncEngine, SyncPair, SyncReport
from pipelines.sync.models import SyncConflict


def load_pair(project: Project, name: str) -> SyncPair:
    """The declaration of the project's sync ``name``, checked against the project's connections.

    Reads only the declaration file (no hub, no network): Dagster builds its definitions with it.
    """
    spec = project.sync(name)
    path, wanted = project.file_ref(spec.declaration)
    wanted = wanted or name
    data = read_yaml_file(path)
    raw = data.get("sync") if isinstance(data, dict) else None
    try:
        pairs = {p.name: p for p in build_pairs(raw, str(path))}
    except SyncConfigError as exc:
        raise ProjectError(str(exc)) from None
    if wanted not in pairs:
        known = ", ".join(sorted(pairs)) or "none"
        raise ProjectError(f"syncs.{name}: {path} declares no sync {wanted!r}; it declares: {known}")
    pair = pairs[wanted]
    for system in pair.policy.systems:
        connection_of(project, name, system)
    return pair


def connection_of(project: Project, name: str, system: str) -> str:
    """The connection through which the project's sync ``name`` reaches ``system``."""
    conn_name = project.sync(name).connections.get(system, system)
    if conn_name not in project.connections:
        raise ProjectError(
            f"syncs.{name}: no connection for system {system!r} "
            f"(add connections: {{{system}: <connection>}} or a connection named {system!r})"
        )
    return conn_name


class SyncRunner:
    """Builds and runs the two-way syncs a project declares."""

    def __init__(
        self,
        project: Project,
        engine: Engine | None = None,
        *,
        config_overrides: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        # The one-way runner resolves connection configs (env, then vault): reused, not rewritten.
        self._runner = Runner(project, engine, config_overrides=config_overrides)
        self.project = project
        self.engine = self._runner.engine
        self.tenant = project.tenant
        self._pairs: dict[str, SyncPair] = {}

    def names(self, *, enabled_only: bool = True) -> list[str]:
        """The project's syncs, in file order."""
        return [n for n, s in self.project.syncs.items() if s.enabled or not enabled_only]

    def spec(self, name: str) -> SyncProjectSpec:
        """The project file's entry of sync ``name``."""
        return self.project.sync(name)

    def pair(self, name: str) -> SyncPair:
        """The declaration of sync ``name`` (read once; errors name the file and the problem)."""
        if name not in self._pairs:
            self._pairs[name] = load_pair(self.project, name)
        return self._pairs[name]

    def connection_of(self, name: str, system: str) -> str:
        """The connection through which sync ``name`` reaches ``system``."""
        return connection_of(self.project, name, system)

    def by_pair_name(self, pair_name: str) -> str:
        """The project sync whose declaration is named ``pair_name`` (conflict rows carry that name)."""
        for name in self.project.syncs:
            if self.pair(name).name == pair_name:
                return name
        raise ProjectError(f"no sync of this project carries the pair {pair_name!r}")

    @contextlib.contextmanager
    def open(self, name: str, *, offline: bool = False) -> Iterator[SyncEngine]:
        """The engine of sync ``name`` with its spokes (``offline``: none, for the review queue)."""
        pair = self.pair(name)
        spokes = []
        try:
            if not offline:
                for system in pair.policy.systems:
                    conn_name = self.connection_of(name, system)
                    connector = self.project.connection(conn_name).connector
                    factory = load_spoke_factory(connector)
                    spokes.append(factory(self._runner.connection_config(conn_name), system=system))
            yield SyncEngine(self.engine, pair, spokes, tenant=self.tenant)
        finally:
            for spoke in spokes:
                close = getattr(spoke, "close", None)
                if close is not None:
                    close()

    def run(self, name: str, *, dry_run: bool = False, reconcile: bool = False) -> SyncReport:
        """One cycle of sync ``name`` (``reconcile``: a full compare instead of the change feeds)."""
        with self.open(name) as sync:
            return sync.run(dry_run=dry_run, reconcile=reconcile)

    # -- the review queue, across the project's syncs ---------------------------------------------------
    def conflicts(self, *, status: str = "open", sync: str | None = None) -> list[dict[str, Any]]:
        """Conflicts of the project's syncs (or of one), oldest first."""
        t = SyncConflict.__table__
        pairs = (
            [self.pair(sync).name] if sync else [self.pair(n).name for n in self.names(enabled_only=False)]
        )
        q = select(t).where(t.c.tenant_id == self.tenant, t.c.pair.in_(pairs))
        if status != "all":
            q = q.where(t.c.status == status)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q.order_by(t.c.id)).mappings()]

    def conflict(self, conflict_id: int) -> dict[str, Any]:
        """One conflict by id (LookupError when this tenant has none)."""
        t = SyncConflict.__table__
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(t).where(t.c.id == conflict_id, t.c.tenant_id == self.tenant))
                .mappings()
                .first()
            )
        if row is None:
            raise LookupError(f"no conflict {conflict_id}; see `tongbu conflicts list`")
        return dict(row)

    def resolve(self, conflict_id: int, choice: str, *, by: str, value: Any = None) -> Any:
        """Decide a conflict (see :meth:`SyncEngine.resolve`); needs no connection to any system."""
        row = self.conflict(conflict_id)
        with self.open(self.by_pair_name(row["pair"]), offline=True) as sync:
            return sync.resolve(conflict_id, choice, by=by, value=value)
