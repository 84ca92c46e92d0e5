"""``tongbu drift check``: find (and with ``--repair`` re-read) records the incremental sync missed.

Mounted by ``tongbu.cli``; the work is done by :mod:`pipelines.drift`.

Exit codes: 0 every checked pipeline is in sync (or was repaired), 2 drift found and not repaired,
1 a check failed (one line per pipeline, the others still run), 3 a pipeline is locked by a run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tongbu.cli_output import err, fail, one_line

app = typer.Typer(help="Compare synced streams with their source and repair drift.", no_args_is_help=True)
console = Console()


@app.command("check")
def check_command(
    pipeline: Annotated[
        list[str] | None, typer.Argument(help="Pipeline name(s); default: all enabled")
    ] = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Re-read missing and stale records through the pipeline")
    ] = False,
    deletes: Annotated[
        str,
        typer.Option(
            help="Records deleted in the source: report (default) or soft-delete (set deleted_at in the hub)"
        ),
    ] = "report",
    project: Annotated[
        Path | None, typer.Option("--project", "-p", help="Project file (default: ./tongbu.yaml)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON")] = False,
    show: Annotated[int, typer.Option(help="Ids and buckets listed per kind (table output)")] = 10,
) -> None:
    """Count-and-hash reconciliation of each pipeline's synced range, per time bucket."""
    from pipelines.drift import DELETE_POLICIES, check_all
    from pipelines.project import load_project
    from pipelines.runner import Runner
    from tongbu.state.store import PipelineLocked

    if deletes not in DELETE_POLICIES:
        fail(f"--deletes must be one of {', '.join(DELETE_POLICIES)}, not {deletes!r}")
    failures: dict[str, BaseException] = {}
    try:
        runner = Runner(load_project(project))
        for name in pipeline or []:
            runner.project.pipeline(name)  # unknown names fail before any work
        with console.status("checking drift …"):
            reports = check_all(
                runner,
                pipeline,
                repair=repair,
                deletes=deletes,
                on_error=lambda n, e: failures.__setitem__(n, e),
            )
    except Exception as exc:  # noqa: BLE001 - one actionable line, never a traceback
        fail(one_line(exc))
    for name, exc in failures.items():
        err.print(f"[bold red]error:[/] {name}: {one_line(exc)}", highlight=False)
    if as_json:
        print(json.dumps([r.as_dict() for r in reports], default=str, ensure_ascii=False))
    else:
        _print(reports, show)
    if any(isinstance(e, PipelineLocked) for e in failures.values()):
        raise typer.Exit(3)
    if failures:
        raise typer.Exit(1)
    if any(r.status == "drift" for r in reports):
        raise typer.Exit(2)


def _print(reports: list, show: int) -> None:
    table = Table(title="drift")
    for col in ("pipeline", "status", "source", "hub", "missing", "stale", "deleted", "pending", "seconds"):
        table.add_column(col, justify="left" if col in ("pipeline", "status") else "right")
    for r in reports:
        table.add_row(
            r.pipeline,
            r.status,
            f"{r.source_rows:,}",
            f"{r.hub_rows:,}",
            f"{len(r.missing):,}",
            f"{len(r.stale):,}",
            f"{len(r.deleted):,}",
            f"{len(r.pending):,}",
            f"{r.duration_s:.2f}",
        )
    console.print(table)
    for r in reports:
        if r.note:
            console.print(f"{r.pipeline}: {r.note}", highlight=False)
        if r.buckets:
            names = ", ".join(b.name for b in r.buckets[:show])
            more = f" (+{len(r.buckets) - show} more)" if len(r.buckets) > show else ""
            console.print(f"{r.pipeline}: {len(r.buckets)} bucket(s) differ: {names}{more}", highlight=False)
        for kind in ("missing", "stale", "deleted"):
            ids = getattr(r, kind)
            if ids:
                more = f" (+{len(ids) - show} more)" if len(ids) > show else ""
                console.print(f"{r.pipeline}: {kind}: {', '.join(ids[:show])}{more}", highlight=False)
        if r.repaired is not None:
            console.print(f"{r.pipeline}: repaired {json.dumps(r.repaired)}", highlight=False)
        elif r.status == "drift":
            console.print(
                f"{r.pipeline}: run `tongbu drift check {r.pipeline} --repair` to re-read these records",
                highlight=False,
            )
