"""Operator commands: ``tongbu init``, ``connections list|test``, ``discover``, ``runs``, ``quarantine show``.

What Meltano (``config test``, ``state``), Airbyte ("test connection") and dlt users reach for first:

* ``tongbu init [DIR]`` — a commented ``tongbu.yaml``, the vault and its master key, and what to do next;
* ``tongbu connections test NAME`` — resolves the config (env and vault), logs in, reads one page of a
  stream, reports the latency; anything wrong is one line saying what to do;
* ``tongbu discover NAME`` — the streams of a connection with their keys, replication key and fields;
* ``tongbu runs [PIPELINE]`` — run history: when, how long, rows, status, error;
* ``tongbu quarantine show ID`` — one quarantined record: the whole reason and payload (secrets masked).

Mounted by :func:`mount` from ``tongbu/cli.py``; errors go through the CLI's one-line handler.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from tongbu.cli_output import explain

connections_app = typer.Typer(help="List connections or test that one works.", no_args_is_help=True)

ProjectOpt = Annotated[
    Path | None, typer.Option("--project", "-p", help="Project file (default: ./tongbu.yaml)")
]


def shorten(text: str | None, width: int) -> str:
    """``text`` on one line, at most ``width`` characters, cut at a word boundary with an ellipsis."""
    flat = " ".join((text or "").split())
    if len(flat) <= width:
        return flat
    cut = flat[: width - 1]
    space = cut.rfind(" ")
    # A word longer than a third of the width (a URL, a JSON blob) is cut where it is.
    if space > width * 2 // 3:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"


def demo_hint(what: str) -> str | None:
    """When the hub in use is empty but ``tongbu demo`` left data: where it is and how to look at it."""
    from tongbu.config import database_url, tongbu_home

    demo_db = tongbu_home() / "demo" / "hub.db"
    if not demo_db.exists() or str(demo_db) in database_url():
        return None
    return (
        f"no {what} in the hub at {database_url()}; `tongbu demo` keeps its own hub at {demo_db}: "
        f"look at it with TONGBU_DATABASE_URL=sqlite:///{demo_db} in front of this command"
    )


# -- connections ----------------------------------------------------------------------------------------
@connections_app.command("list")
def connections_list(project: ProjectOpt = None) -> None:
    """The project's connections: connector, secrets stored or missing, pipelines using them."""
    from rich.console import Console

    from connectors.kit.dagster import connection_configured
    from pipelines.project import load_project
    from tongbu.vault.refs import find_refs

    proj = load_project(project)
    table = Table(title=f"connections ({proj.root / 'tongbu.yaml'})")
    for col in ("name", "connector", "secrets", "pipelines"):
        table.add_column(col)
    for name, conn in proj.connections.items():
        refs = find_refs(conn.config)
        ok = connection_configured(proj, name)
        secrets = "none needed" if not refs else ("stored" if ok else f"missing ({len(refs)} named)")
        users = [p for p, spec in proj.pipelines.items() if spec.source.connection == name]
        table.add_row(name, conn.connector, secrets, ", ".join(users) or "-")
    Console().print(table)


def _tap(project: Path | None, name: str, overrides: dict[str, Any] | None = None) -> Any:
    from tongbu.db import get_engine

    engine = get_engine()
    from pipelines.project import load_project
    from pipelines.runner import Runner

    runner = Runner(load_project(project), engine, config_overrides={name: overrides} if overrides else None)
    runner.project.connection(name)  # unknown name: one line listing the known ones
    try:
        return runner.make_tap(name)
    except ValueError as exc:
        raise ValueError(f"connection {name!r} cannot be used: {explain(exc)}") from None


@connections_app.command("test")
def connections_test(
    name: Annotated[str, typer.Argument(help="Connection name in the project file")],
    stream: Annotated[
        str | None, typer.Option(help="Stream to read one page of (default: the first)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per request for this test")] = 15.0,
    project: ProjectOpt = None,
) -> None:
    """Log in and read one page of a stream; report latency, or what is wrong in one line."""
    # No retries and a short timeout: a test answers in seconds, it does not ride out an outage.
    tap = _tap(
        project, name, {"request_timeout": timeout, "max_retries": 0} if _retries_ok(project, name) else None
    )
    streams = dict(tap.streams)
    if not streams:
        raise ValueError(f"connection {name!r} has no streams")
    chosen = stream or next(iter(streams))
    if chosen not in streams:
        raise ValueError(
            f"connection {name!r} has no stream {chosen!r}; streams: {', '.join(sorted(streams))}"
        )
    started = time.perf_counter()
    records = streams[chosen].get_records(None)
    try:
        first = next(iter(records), None)
    except Exception as exc:  # noqa: BLE001 - the point of the command: say what is wrong
        raise ValueError(f"connection {name!r} failed: {explain(exc)}") from None
    finally:
        close = getattr(records, "close", None)
        if close is not None:
            close()
    latency = time.perf_counter() - started
    what = "read its first record" if first is not None else "the stream is empty"
    print(f"{name}: OK ({tap.name}) — logged in, {what} of {chosen} in {latency:.2f} s")


def _retries_ok(project: Path | None, name: str) -> bool:
    # The shared HTTP settings (request_timeout, max_retries) only where the connector declares them:
    # unknown config keys are errors.
    from pipelines.project import connector_settings, load_project

    allowed = connector_settings(load_project(project).connection(name).connector)
    return allowed is None or {"request_timeout", "max_retries"} <= allowed


def discover(
    name: Annotated[str, typer.Argument(help="Connection name in the project file")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the Singer catalog as JSON")] = False,
    project: ProjectOpt = None,
) -> None:
    """The streams a connection offers: primary keys, replication key, fields."""
    from rich.console import Console

    tap = _tap(project, name)
    if as_json:
        print(json.dumps(tap.catalog_dict, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"streams of {name} ({tap.name})", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("stream", "primary key", "replication key", "fields"):
        table.add_column(col)
    for sname, s in sorted(tap.streams.items()):
        fields = list((s.schema or {}).get("properties") or {})
        shown = ", ".join(fields[:8]) + (f", … (+{len(fields) - 8})" if len(fields) > 8 else "")
        table.add_row(sname, ", ".join(s.primary_keys or []) or "-", s.replication_key or "- (full)", shown)
    Console().print(table)


# -- history --------------------------------------------------------------------------------------------
def runs(
    pipeline: Annotated[str | None, typer.Argument(help="Only this pipeline")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs, newest first")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    project: ProjectOpt = None,
) -> None:
    """Run history: when, how long, rows, status and error of each pipeline run."""
    from rich.console import Console
    from sqlalchemy import select

    from tongbu.db import get_engine
    from tongbu.state.models import SyncRun

    t = SyncRun.__table__
    q = select(t).where(t.c.tenant_id == _tenant(project)).order_by(t.c.id.desc()).limit(limit)
    if pipeline:
        q = q.where(t.c.pipeline == pipeline)
    with get_engine().connect() as conn:
        rows = [dict(r) for r in conn.execute(q).mappings()]
    if as_json:
        print(json.dumps(rows, default=str, ensure_ascii=False))
        return
    if not rows:
        hint = demo_hint("runs")
        print(hint or f"no runs yet{' of ' + pipeline if pipeline else ''}: start one with `tongbu run`")
        return
    table = Table(title="runs (newest first)", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("id", "pipeline", "started", "secs", "read", "wrote", "quar", "status"):
        table.add_column(
            col,
            justify="left" if col in ("pipeline", "started", "status") else "right",
            no_wrap=col in ("pipeline", "started", "status"),
        )
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["pipeline"],
            f"{r['started_at']:%m-%d %H:%M:%S}" if r["started_at"] else "-",
            f"{r['duration_s']:.2f}" if r["duration_s"] is not None else "-",
            f"{r['rows_read']:,}",
            f"{r['rows_written']:,}",
            f"{r['rows_quarantined']:,}",
            r["status"],
        )
    Console().print(table)
    # Errors below the table, whole and on their own lines (a table column cuts them to nothing).
    for r in rows:
        if r["error"]:
            print(f"run {r['id']} ({r['pipeline']}): {plain_error(r['error'])}")


def plain_error(text: str) -> str:
    """A stored run error without the exception class the runner prefixes (``KeyError: …``)."""
    from tongbu.vault import redact

    return redact(re.sub(r"^[A-Z]\w*(?:Error|Exception|Exit|Timeout|Refused|Locked)\w*: ", "", text.strip()))


# -- quarantine -----------------------------------------------------------------------------------------
def quarantine_show(
    record_id: Annotated[int, typer.Argument(metavar="ID", help="Quarantine id (from `quarantine list`)")],
    project: ProjectOpt = None,
) -> None:
    """One quarantined record: the whole reason and payload (secret values masked)."""
    from sqlalchemy import select

    from tongbu.db import get_engine
    from tongbu.state.models import QuarantinedRecord
    from tongbu.vault import redact, scrub_mapping

    t = QuarantinedRecord.__table__
    with get_engine().connect() as conn:
        row = (
            conn.execute(select(t).where(t.c.id == record_id, t.c.tenant_id == _tenant(project)))
            .mappings()
            .first()
        )
    if row is None:
        raise ValueError(
            f"no quarantined record {record_id}: `tongbu quarantine list --status all` lists them"
        )
    r = dict(row)
    for key in ("pipeline", "connection", "stream", "source_id", "stage", "status", "created_at"):
        if key in r:
            print(f"{key:>10}: {r[key]}")
    print(f"{'reason':>10}: {redact(r.get('reason') or '')}")
    print(f"{'payload':>10}:")
    # key names first (a password field the vault never saw), then every known secret value
    print(json.dumps(scrub_mapping(r.get("payload")), ensure_ascii=False, indent=2, default=str))


# -- init -----------------------------------------------------------------------------------------------
PROJECT_TEMPLATE = """\
# tongbu project file. Everything a sync needs except secrets: connections (an instance of a
# connector with its config) and pipelines (source stream -> mapping -> CRM hub object, on a schedule).
#
# Secrets are never written here: `vault:<connection>.<field>` names a secret in the encrypted vault,
# stored with `tongbu vault set <connection>.<field>` and resolved only inside a run.
# `${VAR:-default}` reads an environment variable.
version: 1
tenant: default
# owners shown on every Dagster asset (e-mail or team:<name>)
owners: [team:integrations]

connections:
  kingdee:
    connector: kingdee            # `tongbu discover kingdee` lists its streams
    config:
      # the local simulator (`tongbu simulate kingdee --port 8765`); your server's URL in production
      base_url: ${KINGDEE_BASE_URL:-http://127.0.0.1:8765}
      acct_id: ${KINGDEE_ACCT_ID:-65f1d7e2c3b4a59687706152}   # the simulator's demo account set
      username: ${KINGDEE_USERNAME:-demo}
      password: vault:kingdee.password                        # tongbu vault set kingdee.password
      lcid: 2052
      page_size: 2000
    # Dagster schedules of this connection start once its vault secrets are stored; force them with
    # `schedules: on` (or `off`) here or on a pipeline.
    # schedules: on

pipelines:
  kingdee_customers:
    description: Kingdee customers (BD_Customer) -> CRM accounts
    source: {connection: kingdee, stream: customers}
    mapping: mappings/library/kingdee_to_crm.yaml   # shipped with tongbu; copy it to customise
    target: {object: accounts}
    schedule: "*/15 * * * *"                        # cron, for Dagster; null = on demand only
"""


def init(
    directory: Annotated[Path, typer.Argument(help="Project folder (created if missing)")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing tongbu.yaml")] = False,
) -> None:
    """Start a project: a commented tongbu.yaml, the encrypted vault and its key, and the next steps."""
    from tongbu.vault import Vault

    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "tongbu.yaml"
    if target.exists() and not force:
        raise ValueError(f"{target} exists already: edit it, or pass --force to replace it")
    moved = directory.resolve() != Path.cwd().resolve()
    # The hub (and so the vault) lives in the project's .tongbu/ unless TONGBU_HOME says otherwise:
    # create it there, where the commands run from the project folder will look.
    os.chdir(directory)
    Path("tongbu.yaml").write_text(PROJECT_TEMPLATE, encoding="utf-8")
    print(f"wrote {target} (commented: connections, pipelines, schedules)")
    vault = Vault.default()
    if vault.is_initialized():
        print(f"the vault exists already in {vault.location}")
    else:
        from tongbu.vault_cli import init as vault_init

        vault_init()
    print("next:")
    if moved:
        print(f"  0. cd {directory}")
    print("  1. tongbu simulate kingdee --port 8765   (in another terminal; or edit base_url)")
    print("  2. tongbu vault set kingdee.password          (the simulator prints its password)")
    print("  3. tongbu connections test kingdee")
    print("  4. tongbu run kingdee_customers && tongbu runs")


#: the CLI's rule for the tenant of the project in use (``mount`` sets it: no import of tongbu.cli,
#: which imports this module)
_tenant: Any = None


def mount(app: typer.Typer, quarantine_app: typer.Typer, handled: Any, project_tenant: Any) -> None:
    """Add these commands to the ``tongbu`` CLI (``handled`` turns exceptions into one line;
    ``project_tenant(path)`` is the tenant of the project file in use)."""
    global _tenant
    _tenant = project_tenant
    app.add_typer(connections_app, name="connections")
    for cmd in connections_app.registered_commands:
        cmd.callback = handled(cmd.callback)
    app.command("discover")(handled(discover))
    app.command("runs")(handled(runs))
    app.command("init")(handled(init))
    quarantine_app.command("show")(handled(quarantine_show))
