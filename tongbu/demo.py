"""``tongbu demo``: the end-to-end story on embedded defaults, in about a minute.

A simulated Kingdee K/3 Cloud ERP (a real HTTP server on a free loopback port, with a little fault
injection) is synced into a fresh SQLite CRM hub: a full sync of customers, sales orders with lines and
receivables; then some records are edited in the ERP and an incremental sync picks up exactly those.
The summary shows rows per stream, cursors, quarantined records and time, and checks the hub against
the simulator's own truth.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tongbu.config import tongbu_home

DEFAULT_FAULTS = "throttle=0.03,session_expiry=30,http_5xx=0.02,malformed=0.005"
_FORMS = {
    "kingdee_customers": "BD_Customer",
    "kingdee_sales_orders": "SAL_SaleOrder",
    "kingdee_receivables": "AR_receivable",
}


def run_demo(
    *, records: int = 2000, change: int = 50, faults: str | None = None, console: Console | None = None
) -> dict[str, Any]:
    """Run the demo; returns the figures it printed (tests use them)."""
    from connectors.kingdee.simulator import KingdeeSimulator
    from pipelines.project import find_project_file, load_project
    from pipelines.runner import Runner
    from tongbu.db import dispose_engines, get_engine

    console = console or Console()
    faults = DEFAULT_FAULTS if faults is None else faults
    demo_dir = tongbu_home() / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    db_file = demo_dir / "hub.db"
    dispose_engines()
    for suffix in ("", "-wal", "-shm"):  # every demo starts from an empty hub
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{db_file}"
    engine = get_engine(url)
    project = load_project(os.environ.get("TONGBU_PROJECT") or find_project_file())
    pipelines = [p for p in _FORMS if p in project.pipelines]

    t0 = time.perf_counter()
    console.print(
        f"[bold]1.[/] starting the Kingdee simulator with {records:,} customers, orders and "
        f"receivables (faults: {faults or 'none'}) …"
    )
    sim = KingdeeSimulator(records=records, faults=faults)
    sim.start("127.0.0.1", 0)
    try:
        creds = sim.credentials()
        overrides = {
            "kingdee": {
                "base_url": sim.base_url,
                "acct_id": creds["acct_id"],
                "username": creds["username"],
                "password": _store_secret(engine, creds, console),
            }
        }
        console.print(f"   listening on {sim.base_url}; hub: {db_file}")
        runner = Runner(project, engine, config_overrides=overrides)

        console.print("[bold]2.[/] full sync ERP → CRM hub")
        first = _run_all(runner, pipelines, console)
        changed = {
            "BD_Customer": change,
            "SAL_SaleOrder": max(change // 2, 1),
            "AR_receivable": max(change // 2, 1),
        }
        console.print(
            "[bold]3.[/] editing records in the ERP: "
            + ", ".join(f"{n} {form}" for form, n in changed.items())
        )
        for form, n in changed.items():
            sim.modify(form, n)
        console.print("[bold]4.[/] incremental sync (only what changed since the cursor)")
        second = _run_all(runner, pipelines, console)
        truth = sim.counts()
    finally:
        sim.close()

    _summary(console, first, second, runner, truth)
    elapsed = time.perf_counter() - t0
    console.print(
        f"done in {elapsed:.1f} s. Next: [bold]dagster dev -w workspace.yaml[/] for the asset view, "
        "[bold]tongbu quarantine list[/] for set-aside records "
        f"(with TONGBU_DATABASE_URL={url})."
    )
    return {
        "first": [r.as_dict() for r in first],
        "second": [r.as_dict() for r in second],
        "truth": truth,
        "seconds": elapsed,
        "database_url": url,
    }


def _store_secret(engine: Any, creds: dict[str, Any], console: Console) -> str:
    """Put the ERP password into the vault; the project file only ever names ``vault:kingdee.password``."""
    from tongbu.vault import Vault, default_key_source, write_key_file
    from tongbu.vault.keys import KEY_ENV, PASSPHRASE_ENV, default_key_file

    if not (os.environ.get(KEY_ENV) or os.environ.get(PASSPHRASE_ENV) or default_key_file().exists()):
        path = write_key_file(default_key_file())
        console.print(f"   created a vault master key at {path} (0600; `tongbu vault init` does the same)")
    vault = Vault.initialize(engine, key_source=default_key_source(), actor="tongbu-demo")
    vault.set("kingdee.password", creds["password"])
    return "vault:kingdee.password"


def _run_all(runner: Any, pipelines: list[str], console: Console) -> list[Any]:
    results = []
    with Progress(
        TextColumn("   {task.description}"),
        BarColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        for name in pipelines:
            task = progress.add_task(name, total=None, stats="")

            def update(r: Any, task: Any = task) -> None:
                progress.update(
                    task,
                    stats=f"read {r.rows_read:,} written {r.rows_written:,} "
                    f"quarantined {r.rows_quarantined:,}",
                )

            runner.progress = update
            result = runner.run(name)
            update(result)
            progress.update(task, total=1, completed=1)
            results.append(result)
    return results


def _cursor_text(cursor: dict[str, Any] | None) -> str:
    if not cursor:
        return "-"
    tie = cursor.get("tiebreak_value", cursor.get("id"))
    text = str(cursor.get("replication_key_value", "-"))
    return f"{text} / {cursor.get('tiebreak_key', 'id')}={tie}" if tie is not None else text


def _summary(
    console: Console, first: list[Any], second: list[Any], runner: Any, truth: dict[str, int]
) -> None:
    table = Table(title="tongbu demo: Kingdee → CRM hub")
    for col in ("pipeline", "pass", "read", "written", "unchanged", "quarantined", "seconds"):
        table.add_column(col, justify="left" if col in ("pipeline", "pass") else "right")
    for label, results in (("full", first), ("incr.", second)):
        for r in results:
            table.add_row(
                r.pipeline.removeprefix("kingdee_"),
                label,
                f"{r.rows_read:,}",
                f"{r.rows_written:,}",
                f"{r.rows_unchanged:,}",
                f"{r.rows_quarantined:,}",
                f"{r.duration_s:.2f}",
            )
    console.print(table)
    for r in second:
        console.print(f"   cursor {r.pipeline}: {_cursor_text(r.cursor_after)}")
    check = Table(title="hub vs ERP truth")
    for col in ("pipeline", "ERP", "in hub", "quarantined", "match"):
        check.add_column(col, justify="left" if col == "pipeline" else "right")
    with runner.engine.connect() as conn:
        for r in first:
            spec = runner.project.pipeline(r.pipeline)
            obj = runner.mapping(spec).target_object
            in_hub = runner.hub.count(conn, obj, source_system=spec.source.connection)
            quarantined = runner.quarantine.count(conn, r.pipeline)
            source = truth.get(_FORMS[r.pipeline], 0)
            ok = "yes" if in_hub + quarantined == source else "[red]NO[/]"
            check.add_row(
                r.pipeline.removeprefix("kingdee_"), f"{source:,}", f"{in_hub:,}", f"{quarantined:,}", ok
            )
    console.print(check)
