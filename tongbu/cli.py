"""The ``tongbu`` command line: run pipelines, inspect state and quarantine, start simulators, demo.

Every command has ``--help``. Errors print one actionable line (no traceback, no secret values)
and exit non-zero.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

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
err = Console(stderr=True)

# Feature sub-commands live with their packages; mount those present in this build.
for _module, _name in (("tongbu.vault.cli", "vault"), ("mappings.suggest.cli", "mappings")):
    try:
        app.add_typer(importlib.import_module(_module).app, name=_name)
    except ModuleNotFoundError as _exc:  # pragma: no cover - package not built yet
        if not str(_exc.name).startswith(_module.split(".")[0]):
            raise


def _mount_serve() -> None:
    from tongbu.serve_cli import serve_command

    app.command("serve", help="Run the webhook receiver of the real-time path (WeCom callbacks, …).")(
        serve_command
    )


_mount_serve()


def _mount_drift() -> None:
    from tongbu.drift_cli import app as drift_app

    app.add_typer(drift_app, name="drift")


_mount_drift()

ProjectOpt = Annotated[
    Path | None, typer.Option("--project", "-p", help="Project file (default: ./tongbu.yaml)")
]


def _one_line(exc: BaseException) -> str:
    """``Type: message`` with secret values masked (the text may come from a source's error)."""
    text = (
        str(exc) if isinstance(exc, ValueError | KeyError | RuntimeError) else f"{type(exc).__name__}: {exc}"
    )
    try:
        from tongbu.vault import redact
    except ImportError:  # pragma: no cover
        return text
    return redact(text)


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


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
    from pipelines.project import load_project
    from pipelines.runner import Runner

    return Runner(load_project(project), config_overrides=overrides)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging")] = False) -> None:
    _setup_logging(verbose)


@app.command()
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
    """Run pipelines now (incremental from the stored cursor unless --full-refresh)."""
    from pipelines.state import PipelineLocked

    try:
        runner = _runner(project)
        names = pipeline or [n for n, p in runner.project.pipelines.items() if p.enabled]
        results = []
        for name in names:
            with console.status(f"running {name} …") as status:
                runner.progress = lambda r, s=status, n=name: s.update(
                    f"{n}: read {r.rows_read:,}  written {r.rows_written:,}  quarantined {r.rows_quarantined:,}"
                )
                results.append(runner.run(name, full_refresh=full_refresh, mode=mode))
    except PipelineLocked as exc:
        _fail(str(exc), 3)
    except Exception as exc:  # noqa: BLE001 - any failure is one actionable line, never a traceback
        _fail(_one_line(exc))
    if as_json:
        print(json.dumps([r.as_dict() for r in results], default=str, ensure_ascii=False))
    else:
        print_results(results)


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


@state_app.command("show")
def state_show(
    connection: Annotated[str | None, typer.Argument(help="Only this connection")] = None,
    project: ProjectOpt = None,
) -> None:
    """Print every stored cursor."""
    from pipelines.project import load_project
    from pipelines.state import StateStore
    from tongbu.db import get_engine

    tenant = load_project(project).tenant if (project or Path("tongbu.yaml").exists()) else "default"
    rows = StateStore(get_engine(), tenant).all(connection)
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
def state_reset(
    connection: Annotated[str, typer.Argument(help="Connection whose cursors to forget")],
    stream: Annotated[str | None, typer.Option(help="Only this stream")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask")] = False,
) -> None:
    """Forget cursors so the next run re-reads from the beginning (the upsert keeps it idempotent)."""
    from pipelines.state import StateStore
    from tongbu.db import get_engine

    if not yes:
        typer.confirm(f"reset cursors of {connection}{'/' + stream if stream else ''}?", abort=True)
    n = StateStore(get_engine()).reset(connection, stream)
    console.print(f"removed {n} cursor(s)")


@quarantine_app.command("list")
def quarantine_list(
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline")] = None,
    status: Annotated[str, typer.Option(help="open | replayed | dropped | all")] = "open",
    limit: Annotated[int, typer.Option(help="At most this many")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """List quarantined records with the reason they were set aside."""
    from pipelines.state import Quarantine
    from tongbu.db import get_engine

    rows = Quarantine(get_engine()).list(pipeline, None if status == "all" else status, limit)
    if as_json:
        print(json.dumps(rows, default=str, ensure_ascii=False))
        return
    table = Table(title=f"quarantine ({len(rows)} shown)")
    for col in ("id", "pipeline", "source id", "stage", "reason", "status", "when"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["pipeline"],
            str(r["source_id"] or "-"),
            r["stage"],
            r["reason"][:100],
            r["status"],
            str(r["created_at"])[:19],
        )
    console.print(table)


@quarantine_app.command("replay")
def quarantine_replay(
    pipeline: Annotated[str | None, typer.Option(help="Only this pipeline")] = None,
    ids: Annotated[list[int] | None, typer.Option("--id", help="Only these quarantine ids")] = None,
    project: ProjectOpt = None,
) -> None:
    """Re-apply the current mapping to quarantined records (e.g. after fixing the mapping)."""
    from pipelines.replay import replay

    try:
        res = replay(_runner(project), pipeline=pipeline, ids=ids)
    except Exception as exc:  # noqa: BLE001 - one actionable line
        _fail(_one_line(exc))
    console.print(f"replayed {res['replayed']}, still failing {res['failed']}")


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
) -> None:
    """Start a simulator of an external system in the foreground; prints its URL and demo credentials."""
    from connectors.kit.simulator import load_simulator

    try:
        cls = load_simulator(system)
    except KeyError as exc:
        _fail(str(exc.args[0]))
    try:
        sim = cls(records=records, faults=faults, seed=seed)
    except ValueError as exc:  # an unknown or malformed fault switch: one line, with a did-you-mean
        _fail(str(exc))
    url = sim.start(host, port)
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
) -> None:
    """End-to-end demo: simulated Kingdee ERP → CRM hub, full sync, edits, incremental sync, summary."""
    from tongbu.demo import run_demo

    try:
        run_demo(records=records, change=change, faults=faults, console=console)
    except Exception as exc:  # noqa: BLE001 - one actionable line
        _fail(_one_line(exc))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
