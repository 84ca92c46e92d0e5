"""``tongbu sync`` and ``tongbu conflicts``: run two-way syncs and work their review queue.

Mounted by ``tongbu.cli``; the work is done by :mod:`pipelines.sync.project` (the project's
``syncs:``) and :mod:`pipelines.sync.engine`.

``tongbu sync`` prints one line per sync with what each direction did, and exits like ``tongbu run``:
0 all cycles ran clean, 1 one failed or could not write some records (each problem is one line on
stderr, the other syncs still run), 3 one was already running. Conflicts opened are not a failure:
a warning points at ``tongbu conflicts list``.
"""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
ProjectOpt = Annotated[
    Path | None, typer.Option("--project", "-p", help="Project file (default: ./tongbu.yaml)")
]
conflicts_app = typer.Typer(
    help="The review queue of two-way syncs: list, show and resolve conflicts.", no_args_is_help=True
)
COUNTS = ("created", "updated", "unchanged", "conflicted", "failed")


def _sync_runner(project: Path | None) -> Any:
    # The hub first (a damaged hub is reported before anything else), as `tongbu run` does.
    from tongbu.db import get_engine

    engine = get_engine()
    from pipelines.project import load_project
    from pipelines.sync.project import SyncRunner

    return SyncRunner(load_project(project), engine)


def sync_command(
    sync: Annotated[list[str] | None, typer.Argument(help="Sync name(s); default: all enabled")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be written each way; write nothing")
    ] = False,
    reconcile: Annotated[
        bool, typer.Option("--reconcile", help="Compare every record (finds out-of-band edits)")
    ] = False,
    project: ProjectOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON")] = False,
    show: Annotated[int, typer.Option(help="Planned writes listed per sync with --dry-run")] = 20,
) -> None:
    """Run two-way syncs now: merge changes of both sides field by field.

    One line per sync: what each direction did (created, updated, unchanged, conflicted, failed).

    Exit code: 0 clean, 1 a sync or a write failed, 3 a sync was already running.
    """
    from tongbu.cli_output import EXIT_BAD_HUB, EXIT_FAILED, EXIT_LOCKED
    from tongbu.cli_output import error_line as _error_line
    from tongbu.cli_output import exit_code as _exit_code
    from tongbu.cli_output import fail as _fail

    try:
        runner = _sync_runner(project)
        names = sync or runner.names()
        for name in names:
            runner.pair(name)  # a bad name or declaration: one line before anything runs
    except Exception as exc:  # noqa: BLE001 - one actionable line
        message, code = _exit_code(exc)
        _fail(message, code)
    if not names:
        _error_line(
            "the project declares no enabled syncs (syncs: in tongbu.yaml): nothing to run", "warning"
        )
    codes: set[int] = set()
    out: list[dict[str, Any]] = []
    for name in names:
        try:
            with console.status(f"syncing {name} …"):
                report = runner.run(name, dry_run=dry_run, reconcile=reconcile)
        except Exception as exc:  # noqa: BLE001 - reported; the next sync still runs
            message, code = _exit_code(exc)
            if code == EXIT_BAD_HUB:
                _fail(message, code)
            codes.add(code)
            what = "is locked" if code == EXIT_LOCKED else "failed"
            _error_line(f"sync {name} {what}: {message}")
            out.append(
                {"sync": name, "status": "locked" if code == EXIT_LOCKED else "failed", "error": message}
            )
            continue
        failed = sum(c.failed for c in report.directions.values())
        if report.errors or failed:
            codes.add(EXIT_FAILED)
        for problem in report.errors:
            _error_line(f"sync {name}: {problem}")
        out.append(report_dict(name, report, dry_run))
        if not as_json:
            print(summary_line(name, report, dry_run))
            if dry_run:
                for w in report.planned[:show]:
                    print(f"  would {w.op} in {w.system}: {_target(w)} {_values(w.values)}")
                if len(report.planned) > show:
                    print(f"  … and {len(report.planned) - show} more (--show N, or --json)")
        if report.conflicts_opened or report.identity_reviews:
            n = report.conflicts_opened + report.identity_reviews
            _error_line(f"sync {name}: {n} conflict(s) wait for review: tongbu conflicts list", "warning")
    if as_json:
        print(json.dumps(out, default=str, ensure_ascii=False))
    for code in (EXIT_FAILED, EXIT_LOCKED):
        if code in codes:
            raise typer.Exit(code)


def report_dict(name: str, report: Any, dry_run: bool) -> dict[str, Any]:
    """A sync report as plain data (``--json``, Dagster metadata)."""
    return {
        "sync": name,
        "status": "dry-run" if dry_run else ("failed" if report.errors else "ok"),
        "run_id": report.run_id,
        "directions": {s: {**c.as_dict(), **c.write_counts()} for s, c in report.directions.items()},
        "write_amplification": report.write_amplification,
        "read": dict(report.read),
        "conflicts_opened": report.conflicts_opened,
        "identity_reviews": report.identity_reviews,
        "reverted": report.reverted,
        "stale_skipped": report.stale_skipped,
        "drift": report.drift,
        "errors": list(report.errors),
        "planned": [w.__dict__ for w in report.planned] if dry_run else [],
        "seconds": round(report.duration_s, 3),
    }


def summary_line(name: str, report: Any, dry_run: bool) -> str:
    """``NAME: → hub 1 created, 2 updated, …; → kingdee …; 0.4 s``: one line per sync."""
    parts = []
    for system, c in report.directions.items():
        counts = c.as_dict()
        parts.append(f"→ {system} " + ", ".join(f"{counts[k]} {k}" for k in COUNTS))
    prefix = f"{name} (dry run, nothing written)" if dry_run else name
    return f"{prefix}: " + "; ".join(parts) + f"; {report.duration_s:.1f} s"


def _target(w: Any) -> str:
    if w.op == "create":
        return f"new record (hub {w.hub_id})" if w.hub_id is not None else f"new record from {w.external_id}"
    return f"hub {w.hub_id}" if w.system == "hub" else f"{w.external_id} (hub {w.hub_id})"


def _values(values: dict[str, Any], width: int = 100) -> str:
    text = json.dumps(values, default=str, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= width else text[: width - 1] + "…"


def _short(value: Any, width: int = 24) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def _fail_with(exc: Exception) -> None:
    """One line and the exit code for an error of a conflicts command."""
    from tongbu.cli_output import exit_code as _exit_code
    from tongbu.cli_output import fail as _fail

    if isinstance(exc, LookupError) and not isinstance(exc, KeyError):
        _fail(str(exc))  # an unknown conflict id: the message says what to do
    _fail(*_exit_code(exc))


def _who() -> str:
    return os.environ.get("TONGBU_USER") or getpass.getuser()


@conflicts_app.command("list")
def conflicts_list(
    sync: Annotated[str | None, typer.Option(help="Only this sync")] = None,
    status: Annotated[str, typer.Option(help="open, resolved or all")] = "open",
    project: ProjectOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
) -> None:
    """Conflicts waiting for a decision (or decided ones), oldest first."""
    from tongbu.cli_output import fail as _fail

    if status not in ("open", "resolved", "all"):
        _fail(f"--status must be open, resolved or all, not {status!r}")
    try:
        rows = _sync_runner(project).conflicts(status=status, sync=sync)
    except Exception as exc:  # noqa: BLE001 - one actionable line
        _fail_with(exc)
    if as_json:
        print(json.dumps(rows, default=str, ensure_ascii=False))
        return
    if not rows:
        print(f"no {status if status != 'all' else ''} conflicts".replace("  ", " "))
        return
    table = Table(title=f"{status} conflicts")
    for col in ("id", "pair", "record", "field", "hub", "system", "status"):
        table.add_column(col, overflow="fold")
    for r in rows:
        record = f"{r['object']} {r['hub_id']}" if r["hub_id"] is not None else f"{r['object']} (unlinked)"
        field = r["field"] if r["kind"] == "field" else f"identity by {r['field']}"
        table.add_row(
            str(r["id"]),
            r["pair"],
            record,
            field or "",
            _short(r["hub_value"]),
            f"{r['system']}: {_short(r['system_value'])}",
            r["status"],
        )
    console.print(table)


@conflicts_app.command("show")
def conflicts_show(
    conflict_id: Annotated[int, typer.Argument(help="Conflict id (from `tongbu conflicts list`)")],
    project: ProjectOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
) -> None:
    """Both values of a conflict, the base they came from, who changed them and when."""
    try:
        row = _sync_runner(project).conflict(conflict_id)
    except Exception as exc:  # noqa: BLE001 - one actionable line
        _fail_with(exc)
    if as_json:
        print(json.dumps(row, default=str, ensure_ascii=False))
        return

    def v(value: Any) -> str:
        return json.dumps(value, default=str, ensure_ascii=False)

    print(f"conflict {row['id']} ({row['status']}) in {row['pair']}: {row['object']} {row['hub_id']}")
    if row["kind"] == "identity":
        print(f"  {row['system']} record {row['external_id']} matches several CRM records by {row['field']}")
        print(f"  candidates (hub ids): {v(row['hub_value'])}")
        print(f"  the record: {v(row['system_value'])}")
        return
    print(f"  field:  {row['field']}")
    print(f"  base:   {v(row['base'])}  (the value both sides last agreed on)")
    print(
        f"  hub:    {v(row['hub_value'])}  by {row['hub_author'] or row['hub_origin'] or '?'}"
        f" at {row['hub_at'] or '?'}"
    )
    print(
        f"  {row['system']}: {v(row['system_value'])}  by {row['system_author'] or '?'}"
        f" at {row['system_at'] or '?'}"
    )
    if row["status"] == "open":
        print(f"  decide: tongbu conflicts resolve {row['id']} --take hub|system  (or --value JSON)")
    else:
        print(f"  decided {v(row['resolution'])} by {row['resolved_by']} at {row['resolved_at']}")


@conflicts_app.command("resolve")
def conflicts_resolve(
    conflict_id: Annotated[int, typer.Argument(help="Conflict id (from `tongbu conflicts list`)")],
    take: Annotated[str | None, typer.Option(help="Keep the value of: hub or system")] = None,
    value: Annotated[str | None, typer.Option(help="Set this JSON value instead, e.g. '\"A\"'")] = None,
    by: Annotated[str | None, typer.Option(help="Who decides (default: $TONGBU_USER or login)")] = None,
    project: ProjectOpt = None,
) -> None:
    """Decide a conflict; the decision reaches every system on the next sync cycle."""
    from tongbu.cli_output import fail as _fail

    if (take is None) == (value is None):
        _fail("give exactly one of --take hub|system or --value JSON")
    if take is not None and take not in ("hub", "system"):
        _fail(f"--take must be hub or system, not {take!r}")
    decided: Any = None
    if value is not None:
        try:
            decided = json.loads(value)
        except json.JSONDecodeError as exc:
            _fail(f"--value is not JSON ({exc.msg} at character {exc.pos}); quote text: '\"text\"'")
    author = by or _who()
    try:
        result = _sync_runner(project).resolve(conflict_id, take or "value", by=author, value=decided)
    except Exception as exc:  # noqa: BLE001 - one actionable line
        _fail_with(exc)
    text = json.dumps(result, default=str, ensure_ascii=False)
    print(f"conflict {conflict_id} resolved by {author}: {text} (sent on the next sync cycle)")
