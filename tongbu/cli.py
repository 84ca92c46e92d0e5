"""The ``tongbu`` command line: run pipelines, inspect state and quarantine, start simulators, demo.

Every command has ``--help``. Errors print one actionable line (no traceback, no secret values, never
wrapped whatever the terminal width) and exit non-zero:

* 0 — success;
* 1 — an error (bad project file or config, a failed pipeline, …);
* 2 — the hub database is not a valid tongbu hub (empty, not SQLite, truncated or corrupt);
* 3 — a pipeline is already running (its lock is held elsewhere);
* 4 — a run read records but every one of them was quarantined.

``tongbu run`` runs every pipeline it was asked for even when some fail, prints one line per problem
and exits with the most serious code of the lot (1, then 4, then 3).

Every command that touches tenant data (``run``, ``state``, ``quarantine``, ``vault``) uses the tenant
of the project file: ``--project``, else ``TONGBU_PROJECT``, else the nearest ``tongbu.yaml``.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
import yaml
from rich.console import Console
from rich.table import Table

from tongbu.api.cli import app as api_app
from tongbu.cli_output import (
    EXIT_ALL_QUARANTINED,
    EXIT_BAD_HUB,
    EXIT_FAILED,
    EXIT_LOCKED,
    error_line,
    exit_code,
    fail,
    handled,
    one_line,
    project_tenant,
)
from tongbu.drift_cli import app as drift_app
from tongbu.iot_cli import app as iot_app
from tongbu.scaffold import app as new_app
from tongbu.suggest_cli import app as suggest_app
from tongbu.tenders_cli import app as tenders_app
from tongbu.vault_cli import app as vault_app

# Plain help (click's formatter): flags shown as flags (not `<bool>`), paragraphs re-wrapped, and at
# most 80 columns, where Typer's rich panels cut option help mid-word in a narrow terminal.
typer.core.HAS_RICH = False

app = typer.Typer(
    help="tongbu (同步): keep your CRM in sync with ERP, WeCom, shops, tender feeds and devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
state_app = typer.Typer(help="Show or reset pipeline cursors.", no_args_is_help=True)
quarantine_app = typer.Typer(
    help="List or replay records that failed validation or mapping.", no_args_is_help=True
)
app.add_typer(state_app, name="state")
app.add_typer(quarantine_app, name="quarantine")

console = Console()


# Sub-commands with a module of their own (imported by name, so the layers contract sees them).
app.add_typer(vault_app, name="vault")
app.add_typer(suggest_app, name="mappings")
app.add_typer(new_app, name="new")
app.add_typer(tenders_app, name="tenders")
app.add_typer(api_app, name="api")
app.add_typer(iot_app, name="iot")


def _mount_serve() -> None:
    from tongbu.serve.cli import serve_command

    app.command("serve", help="Run the webhook receiver of the real-time path (WeCom callbacks, …).")(
        serve_command
    )


_mount_serve()


app.add_typer(drift_app, name="drift")


def _mount_sync() -> None:
    from tongbu.sync_cli import conflicts_app, sync_command

    app.command("sync")(sync_command)
    app.add_typer(conflicts_app, name="conflicts")


_mount_sync()


class _RunCommand(typer.core.TyperCommand):
    """``tongbu run --help`` ends with the pipelines of the project file in use."""

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        super().format_epilog(ctx, formatter)
        try:
            from pipelines.project import find_project_file, load_project

            path = find_project_file()
            specs = load_project(path, strict=False).pipelines
        except Exception:  # noqa: BLE001 - help must print whatever the project file's state
            return
        with formatter.section(f"Pipelines in {path}"):
            formatter.write_dl(
                [
                    (name, (s.description or "") + ("" if s.enabled else " (disabled)"))
                    for name, s in specs.items()
                ]
                or [("(none)", "add one under pipelines:")]
            )


ProjectOpt = Annotated[
    Path | None, typer.Option("--project", "-p", help="Project file (default: ./tongbu.yaml)")
]


#: every exception of a command becomes one line on stderr and its exit code, never a traceback
_handled = handled(exit_code)


_exit_code = exit_code
_project_tenant = project_tenant


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        from tongbu.vault import install_redaction
    except ImportError:  # pragma: no cover
        return
    install_redaction()


def _runner(project: Path | None, overrides: dict[str, dict[str, Any]] | None = None):
    # The hub first: a damaged hub is reported before anything else, and a fresh hub's schema is in
    # place before the slower imports below (connector classes, Dagster's cron rules).
    from tongbu.db import get_engine

    engine = get_engine()
    from pipelines.project import load_project
    from pipelines.runner import Runner

    return Runner(load_project(project), engine, config_overrides=overrides)


# Vault commands whose ``--tenant`` defaults to the project's tenant.
_VAULT_TENANT_COMMANDS = ("set", "get", "list", "delete", "audit")


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging")] = False,
) -> None:
    _setup_logging(verbose)
    if ctx.invoked_subcommand == "vault" and not ctx.resilient_parsing:
        # `tongbu vault set kingdee.password` must store the secret where the project's runs look for
        # it: the project's tenant (an explicit --tenant still wins). A project file that does not
        # load leaves the default; the run reports that file's problem itself.
        try:
            tenant = _project_tenant(None)
        except Exception:  # noqa: BLE001 - see above
            return
        ctx.default_map = {
            **(ctx.default_map or {}),
            "vault": {cmd: {"tenant": tenant} for cmd in _VAULT_TENANT_COMMANDS},
        }


@app.command(cls=_RunCommand)
def run(
    pipeline: Annotated[
        list[str] | None, typer.Argument(help="Pipeline name(s); default: all enabled")
    ] = None,
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Ignore the cursor and re-read everything")
    ] = False,
    mode: Annotated[
        str, typer.Option(help="inprocess (fast) or pipe (tap | target subprocesses)")
    ] = "inprocess",
    project: ProjectOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON")] = False,
) -> None:
    """Run pipelines now, from the stored cursor (everything with --full-refresh).

    Every named (or enabled) pipeline runs even when another fails or is locked; each problem is one
    line on stderr. Exit code: 0 all succeeded, 1 one failed, 4 one quarantined every record it read,
    3 one was already running (the most serious wins).
    """
    try:
        runner = _runner(project)
    except Exception as exc:  # noqa: BLE001 - one actionable line
        message, code = _exit_code(exc)
        fail(message, code)
    names = pipeline or [n for n, p in runner.project.pipelines.items() if p.enabled]
    if not names:
        error_line("the project has no enabled pipelines: nothing to run", "warning")
    results: list[Any] = []
    outcomes: list[dict[str, Any]] = []
    codes: set[int] = set()
    for name in names:
        try:
            with console.status(f"running {name} …") as status:
                runner.progress = lambda r, s=status, n=name: s.update(
                    f"{n}: read {r.rows_read:,}  written {r.rows_written:,}  quarantined {r.rows_quarantined:,}"
                )
                result = runner.run(name, full_refresh=full_refresh, mode=mode)
        except Exception as exc:  # noqa: BLE001 - reported, and the next pipeline still runs
            message, code = _exit_code(exc)
            if code == EXIT_BAD_HUB:
                fail(message, code)  # no other pipeline can run on a damaged hub either
            codes.add(code)
            state = "locked" if code == EXIT_LOCKED else "failed"
            outcomes.append({"pipeline": name, "status": state, "error": message})
            error_line(f"pipeline {name} {'is locked' if state == 'locked' else 'failed'}: {message}")
            continue
        results.append(result)
        outcomes.append(result.as_dict())
        for warning in result.extra.get("warnings", ()):
            error_line(f"pipeline {name}: {warning}", "warning")
        if result.rows_read and result.rows_quarantined >= result.rows_read:
            codes.add(EXIT_ALL_QUARANTINED)
            outcomes[-1]["status"] = "quarantined"
            error_line(
                f"pipeline {name}: all {result.rows_read:,} records read were quarantined, none written; "
                f"see `tongbu quarantine list --pipeline {name}` for the reasons"
            )
    if as_json:
        print(json.dumps(outcomes, default=str, ensure_ascii=False))
    elif results:
        print_results(results)
    for code in (EXIT_FAILED, EXIT_ALL_QUARANTINED, EXIT_LOCKED):
        if code in codes:
            raise typer.Exit(code)


def print_results(results: list) -> None:
    """A table of run results (rows per stream, cursor, quarantined, time)."""
    table = Table(title="sync results")
    for col in ("pipeline", "read", "written", "unchanged", "quarantined", "cursor", "seconds", "rec/s"):
        table.add_column(col, justify="right" if col not in ("pipeline", "cursor") else "left")
    for r in results:
        cur = r.cursor_after or {}
        cursor = ", ".join(f"{k}={v}" for k, v in cur.items() if k != "replication_key") or "-"
        table.add_row(
            r.pipeline,
            f"{r.rows_read:,}",
            f"{r.rows_written:,}",
            f"{r.rows_unchanged:,}",
            f"{r.rows_quarantined:,}",
            cursor,
            f"{r.duration_s:.2f}",
            f"{r.records_per_second:,.0f}",
        )
    console.print(table)


@app.command("dagster-pools")
@_handled
def dagster_pools(
    project: ProjectOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print the limits")] = False,
) -> None:
    """Set each connection's ``concurrency`` as the slots of its Dagster pool (instance of $DAGSTER_HOME)."""
    from dagster_project.pools import pool_limits
    from pipelines.project import load_project

    loaded = load_project(project)
    limits = pool_limits(loaded)
    if not dry_run and limits:
        import dagster as dg

        from dagster_project.pools import apply_pool_limits

        apply_pool_limits(dg.DagsterInstance.get(), loaded)
    for pool, slots in limits.items():
        console.print(f"{pool}: {slots} slot(s){' (dry run)' if dry_run else ''}")
    if not limits:
        console.print("no connection sets `concurrency`: every pool takes the instance's default_limit")


@state_app.command("show")
@_handled
def state_show(
    connection: Annotated[str | None, typer.Argument(help="Only this connection")] = None,
    project: ProjectOpt = None,
) -> None:
    """Print every stored cursor."""
    from tongbu.db import get_engine
    from tongbu.ops_cli import demo_hint
    from tongbu.state.store import StateStore

    rows = StateStore(get_engine(), _project_tenant(project)).all(connection)
    if not rows:
        hint = demo_hint("cursors")
        console.print(hint or "no cursors yet: `tongbu run` stores one per stream", soft_wrap=True)
        return
    table = Table(title="cursors")
    for col in ("tenant", "connection", "stream", "partition", "cursor", "updated"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["tenant_id"],
            r["connection"],
            r["stream"],
            r["partition"] or "-",
            json.dumps(r["cursor"], ensure_ascii=False),
            str(r["updated_at"]),
        )
    console.print(table)


@state_app.command("reset")
@_handled
def state_reset(
    connection: Annotated[str, typer.Argument(help="Connection whose cursors to forget")],
    stream: Annotated[str | None, typer.Option(help="Only this stream")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask")] = False,
    project: ProjectOpt = None,
) -> None:
    """Forget cursors so the next run re-reads from the beginning (the upsert keeps it idempotent)."""
    from tongbu.db import get_engine
    from tongbu.state.store import StateStore

    tenant = _project_tenant(project)
    if not yes:
        typer.confirm(
            f"reset cursors of {connection}{'/' + stream if stream else ''} (tenant {tenant})?", abort=True
        )
    n = StateStore(get_engine(), tenant).reset(connection, stream)
    console.print(f"removed {n} cursor(s) of tenant {tenant}", soft_wrap=True)


@quarantine_app.command("list")
@_handled
def quarantine_list(
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline")] = None,
    status: Annotated[str, typer.Option(help="open | replayed | dropped | all")] = "open",
    limit: Annotated[int, typer.Option(help="At most this many")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    project: ProjectOpt = None,
) -> None:
    """List quarantined records with the reason they were set aside."""
    from tongbu.db import get_engine
    from tongbu.ops_cli import demo_hint, shorten
    from tongbu.state.store import Quarantine

    if status not in ("open", "replayed", "dropped", "all"):
        raise ValueError(f"unknown status {status!r}: open | replayed | dropped | all")
    rows = Quarantine(get_engine(), _project_tenant(project)).list(
        pipeline, None if status == "all" else status, limit
    )
    if as_json:
        print(json.dumps(rows, default=str, ensure_ascii=False))
        return
    if not rows:
        hint = demo_hint("quarantined records")
        console.print(
            hint or f"no {'' if status == 'all' else status + ' '}quarantined records", soft_wrap=True
        )
        return
    table = Table(title=f"quarantine ({len(rows)} shown; `tongbu quarantine show ID` for one in full)")
    for col in ("id", "pipeline", "source id", "stage", "reason", "status", "when"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["pipeline"],
            str(r["source_id"] or "-"),
            r["stage"],
            shorten(r["reason"], 100),
            r["status"],
            str(r["created_at"])[:19],
        )
    console.print(table)


@quarantine_app.command("replay")
@_handled
def quarantine_replay(
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline")] = None,
    ids: Annotated[list[int] | None, typer.Option("--id", help="Only these quarantine ids")] = None,
    project: ProjectOpt = None,
) -> None:
    """Re-apply the current mapping to quarantined records (e.g. after fixing the mapping)."""
    from pipelines.replay import replay

    res = replay(_runner(project), pipeline=pipeline, ids=ids)
    console.print(f"replayed {res['replayed']}, still failing {res['failed']}", soft_wrap=True)


@app.command()
def simulate(
    system: Annotated[str, typer.Argument(help="Which system to simulate (kingdee, wecom, …)")],
    host: Annotated[str, typer.Option(help="Interface to listen on (keep it loopback)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 = any free port)")] = 0,
    records: Annotated[int, typer.Option(help="How many records to seed")] = 1000,
    faults: Annotated[
        str | None, typer.Option(help="Faults, e.g. 'throttle=0.05,session_expiry=50,http_5xx=0.02'")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed for the generated data")] = 7,
    opt: Annotated[
        list[str] | None,
        typer.Option("--opt", help="A simulator's own option, KEY=VALUE (repeatable), e.g. iot: rate=500"),
    ] = None,
) -> None:
    """Start a simulator of an external system in the foreground; prints its URL and demo credentials."""
    from connectors.kit.simulator import load_simulator

    try:
        cls = load_simulator(system)
    except KeyError as exc:
        fail(str(exc.args[0]))
    extra: dict[str, Any] = {}
    for item in opt or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--opt {item!r}: expected KEY=VALUE")
        extra[key.strip().replace("-", "_")] = yaml.safe_load(value) if value else ""
    try:
        sim = cls(records=records, faults=faults, seed=seed, **extra)
    except TypeError as exc:  # an option this simulator does not take
        fail(f"{system} simulator: {str(exc).split('() ', 1)[-1]}")
    except ValueError as exc:  # an unknown or malformed fault switch: one line, with a did-you-mean
        fail(str(exc))
    try:
        url = sim.start(host, port)
    except (RuntimeError, OSError) as exc:  # a port in use, a broker that is not there
        fail(one_line(exc))
    # Plain prints (no wrapping, no markup): scripts and tests read these two lines.
    print(
        f"{system} simulator listening on {url} with {records:,} records"
        + (f", faults: {faults}" if faults else "")
    )
    print("demo credentials: " + json.dumps(sim.credentials(), ensure_ascii=False))
    sys.stdout.flush()
    try:
        sim.wait()
    finally:
        sim.stop()


@app.command()
def demo(
    records: Annotated[int, typer.Option(help="Customers in the simulated ERP")] = 2000,
    change: Annotated[int, typer.Option(help="Records to modify before the incremental run")] = 50,
    faults: Annotated[str | None, typer.Option(help="Faults to inject in the simulator")] = None,
    two_way: Annotated[
        bool,
        typer.Option("--two-way", help="CRM ⇄ ERP: merged edits, a reviewed conflict, no echo, an order"),
    ] = False,
    fxiaoke: Annotated[
        bool, typer.Option("--fxiaoke", help="Run the two-way Fxiaoke CRM ⇄ Kingdee ERP demo instead")
    ] = False,
    shops: Annotated[
        bool,
        typer.Option(
            "--shops", help="The shops demo instead: Shopify + Youzan → CRM, buyers matched, real time"
        ),
    ] = False,
) -> None:
    """End-to-end demo: simulated Kingdee ERP → CRM hub, full sync, edits, incremental sync, summary.

    With --two-way: the two-way engine (CRM ⇄ Kingdee) on 20 customers, in seconds.
    """
    try:
        if two_way:
            from tongbu.demo_two_way import run_two_way_demo

            run_two_way_demo(console=console)
            return
        if fxiaoke:
            from tongbu.demo_fxiaoke import run_fxiaoke_demo

            run_fxiaoke_demo(records=min(records, 200), console=console)
            return
        if shops:
            from tongbu.demo_shops import run_shops_demo

            run_shops_demo(records=min(records, 5000), console=console)
            return
        from tongbu.demo import run_demo

        run_demo(records=records, change=change, faults=faults, console=console)
    except Exception as exc:  # noqa: BLE001 - one actionable line
        message, code = _exit_code(exc)
        fail(message, code)


def _mount_ops() -> None:
    from tongbu.ops_cli import mount

    mount(app, quarantine_app, _handled, _project_tenant)


_mount_ops()


def main() -> None:
    """Console-script entry point (a last guard: whatever escapes a command is one line, not a traceback)."""
    try:
        app()
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - the outermost CLI boundary
        message, code = _exit_code(exc)
        error_line(message)
        raise SystemExit(code) from None


if __name__ == "__main__":
    main()
