"""``tongbu tenders``: search the tender history, manage subscriptions, poll the feed, send alerts.

Mounted by ``tongbu.cli``; the work is done by :mod:`connectors.tender.history` and
:mod:`pipelines.tenders`. Errors are one line (exit 1), never a traceback.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Tender notices (标讯): search, subscribe, poll, alert.", no_args_is_help=True)
console = Console()
err = Console(stderr=True, soft_wrap=True)

ProjectOpt = Annotated[
    Path | None, typer.Option("--project", "-p", help="Project file (default: ./tongbu.yaml)")
]
Many = Annotated[list[str] | None, typer.Option()]


def _fail(message: str) -> None:
    err.print("[bold red]error:[/] ", end="", highlight=False)
    err.print(message, markup=False, highlight=False)
    raise typer.Exit(1)


def _tenant(project: Path | None) -> str:
    from tongbu.cli_output import project_tenant as _project_tenant

    return _project_tenant(project)


def _history(project: Path | None) -> Any:
    from connectors.tender.history import TenderHistory
    from tongbu.db import get_engine

    return TenderHistory(get_engine(), _tenant(project))


def _date(value: str | None, name: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value.replace(":", "-").replace(".", "-"))
    except ValueError:
        _fail(f"{name} must be a date like 2024-05-01, not {value!r}")
    return None


def _money(value: str | None, name: str) -> Decimal | None:
    if value in (None, ""):
        return None
    text = str(value).strip()
    factor = Decimal(10_000) if text.endswith(("万", "万元")) else Decimal(1)
    try:
        return Decimal(text.removesuffix("元").removesuffix("万")) * factor
    except InvalidOperation:
        _fail(f"{name} must be an amount in 元 (or 万), not {value!r}")
    return None


def _split(values: list[str] | None) -> tuple[str, ...]:
    out: list[str] = []
    for v in values or []:
        out.extend(p.strip() for p in v.replace("，", ",").split(",") if p.strip())
    return tuple(out)


@app.command("search")
def search_command(
    keywords: Annotated[
        list[str] | None, typer.Argument(help="Words that must all occur (title or text)")
    ] = None,
    region: Many = None,
    type_: Annotated[
        list[str] | None, typer.Option("--type", help="中标公告, … or tender/correction/result/termination")
    ] = None,
    category: Many = None,
    buyer: Annotated[str | None, typer.Option(help="Part of the buyer's name")] = None,
    since: Annotated[str | None, typer.Option(help="Published on or after (2024-05-01)")] = None,
    until: Annotated[str | None, typer.Option(help="Published on or before")] = None,
    budget_min: Annotated[str | None, typer.Option(help="元, or 50万")] = None,
    budget_max: Annotated[str | None, typer.Option(help="元, or 200万")] = None,
    project_no: Annotated[str | None, typer.Option("--project-no", help="One project's notices")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
    project: ProjectOpt = None,
) -> None:
    """Search the local history (newest first)."""
    from connectors.tender.history import NoticeQuery, SearchError

    try:
        q = NoticeQuery(
            keywords=tuple(keywords or ()),
            regions=_split(region),
            types=_split(type_),
            categories=_split(category),
            buyer=buyer,
            since=_date(since, "--since"),
            until=_date(until, "--until"),
            budget_min=_money(budget_min, "--budget-min"),
            budget_max=_money(budget_max, "--budget-max"),
            project_no=project_no,
        )
        history = _history(project)
        rows = history.search(q, limit=limit)
        total = history.search_count(q)
    except SearchError as exc:
        _fail(str(exc))
        return
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False, default=str))
        return
    table = Table(title=f"{total} notice(s); newest {len(rows)}")
    for col in ("id", "published", "type", "region", "title", "buyer", "budget (元)"):
        table.add_column(col)
    for r in rows:
        when = r["publish_time"].strftime("%Y-%m-%d %H:%M")
        budget = "" if r["budget"] is None else f"{r['budget']:,.2f}"
        table.add_row(
            str(r["notice_id"]),
            when,
            r["notice_type"] or "",
            r["region"] or "",
            r["title"] or "",
            r["buyer"] or "",
            budget,
        )
    console.print(table)


@app.command("subscribe")
def subscribe_command(
    name: Annotated[
        str, typer.Argument(help="The subscription's name (unique in the tenant; again = replace)")
    ],
    subscriber: Annotated[str, typer.Option(help="Who it is for (one alert per notice per subscriber)")],
    keyword: Annotated[
        list[str] | None, typer.Option("--keyword", "-k", help="Any of these (repeat or comma-separate)")
    ] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="None of these")] = None,
    region: Many = None,
    type_: Annotated[list[str] | None, typer.Option("--type")] = None,
    category: Many = None,
    buyer: Annotated[str | None, typer.Option()] = None,
    budget_min: Annotated[str | None, typer.Option()] = None,
    budget_max: Annotated[str | None, typer.Option()] = None,
    notify: Annotated[
        list[str] | None,
        typer.Option(
            help="Alert channel of tongbu.yaml, optionally with recipients: sales_wecom:zhangsan,lisi"
        ),
    ] = None,
    project: ProjectOpt = None,
) -> None:
    """Save a subscription; new notices that match it are alerted on its channels."""
    from connectors.tender.history import SearchError, SubscriptionSpec
    from pipelines.project import ProjectError, find_project_file, load_project

    channels: dict[str, list[str]] = {}
    for item in notify or []:
        channel, _, who = item.partition(":")
        channels[channel.strip()] = [w.strip() for w in who.split(",") if w.strip()]
    try:
        path = project or find_project_file()
        if channels:
            known = load_project(path).alerts.channels if path.exists() else {}
            for channel in channels:
                if channel not in known:
                    raise ProjectError(
                        f"--notify {channel}: no such alert channel in {path.name} "
                        f"(known: {', '.join(sorted(known)) or 'none; add alerts.channels'})"
                    )
        spec = SubscriptionSpec.from_dict(
            {
                "keywords": _split(keyword),
                "exclude": _split(exclude),
                "regions": _split(region),
                "types": _split(type_),
                "categories": _split(category),
                "buyer": buyer,
                "budget_min": _money(budget_min, "--budget-min"),
                "budget_max": _money(budget_max, "--budget-max"),
            }
        )
        sid = _history(project).subscribe(name, subscriber, spec, channels)
    except (SearchError, ProjectError) as exc:
        _fail(str(exc))
        return
    console.print(f"subscription [bold]{name}[/] saved (id {sid}) for {subscriber}")


@app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json")] = False, project: ProjectOpt = None
) -> None:
    """The tenant's subscriptions."""
    subs = _history(project).subscriptions()
    if as_json:
        for s in subs:
            typer.echo(json.dumps(s, ensure_ascii=False))
        return
    table = Table(title=f"{len(subs)} subscription(s)")
    for col in ("name", "subscriber", "keywords", "filters", "channels"):
        table.add_column(col)
    for s in subs:
        spec = s["spec"]
        filters = "; ".join(
            f"{k}={','.join(v) if isinstance(v, list) else v}"
            for k, v in spec.items()
            if k != "keywords" and v not in (None, [], "")
        )
        chans = ", ".join(f"{c}:{','.join(r)}" if r else c for c, r in (s["channels"] or {}).items())
        table.add_row(s["name"], s["subscriber"], ",".join(spec.get("keywords") or []) or "*", filters, chans)
    console.print(table)


@app.command("unsubscribe")
def unsubscribe_command(name: Annotated[str, typer.Argument()], project: ProjectOpt = None) -> None:
    """Delete a subscription (alerts already sent stay in the ledger)."""
    if not _history(project).unsubscribe(name):
        _fail(f"no subscription {name!r} (see `tongbu tenders list`)")
    console.print(f"subscription [bold]{name}[/] deleted")


@app.command("poll")
def poll_command(
    alerts: Annotated[bool, typer.Option("--alerts/--no-alerts", help="Send the alerts it queued")] = True,
    full_refresh: Annotated[bool, typer.Option("--full-refresh")] = False,
    project: ProjectOpt = None,
) -> None:
    """Read new notices now: history, subscriptions, CRM, then alerts."""
    from pipelines.project import ProjectError, load_project
    from pipelines.tenders import TenderFeed
    from tongbu.db import get_engine

    try:
        feed = TenderFeed(load_project(project), get_engine())
        result = feed.poll(full_refresh=full_refresh)
        sent = feed.send_alerts() if alerts else None
    except (ProjectError, ValueError, RuntimeError) as exc:
        from tongbu.cli_output import one_line as _one_line

        _fail(_one_line(exc))
        return
    console.print(json.dumps(result.as_dict(), ensure_ascii=False, default=str))
    if sent is not None:
        console.print(f"alerts: {sent.sent} sent, {sent.already_sent} already sent, {sent.failed} failed")
        for line in sent.errors[:10]:
            err.print(line, markup=False, highlight=False)
