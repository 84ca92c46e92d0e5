"""``tongbu serve``'s options, kept apart from ``tongbu.serve`` so that mounting the command does not
import the web stack and SQLAlchemy for every other ``tongbu`` command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def serve_command(
    host: Annotated[
        str, typer.Option(help="Interface to listen on (put TLS termination in front)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8400,
    project: Annotated[
        Path | None, typer.Option("--project", "-p", help="Project file (default: ./tongbu.yaml)")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="JSON serve config instead of the project file")] = None,
    connection: Annotated[list[str] | None, typer.Option(help="Serve only these connections")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker threads applying events [default: 8]")] = None,
    coalesce_ms: Annotated[
        float | None,
        typer.Option(help="Window in which events for one record are merged into one fetch [default: 20]"),
    ] = None,
    dagster: Annotated[
        str | None,
        typer.Option(
            help="Report events to Dagster: auto (if DAGSTER_HOME is set) | on | off [default: auto]"
        ),
    ] = None,
) -> None:
    """Receive webhooks/callbacks (WeCom, …) and apply them to the CRM hub in real time."""
    options = {
        k: v
        for k, v in (("workers", workers), ("coalesce_ms", coalesce_ms), ("dagster", dagster))
        if v is not None
    }
    from tongbu.serve.app import serve
    from tongbu.serve.config import ServeConfig

    try:
        if config is not None:
            data = json.loads(config.read_text(encoding="utf-8"))
            cfg = ServeConfig.from_dict({**data, **options})
        else:
            cfg = ServeConfig.from_project(project, connections=connection, **options)
    except (ValueError, KeyError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"tongbu serve on http://{host}:{port} — "
        + ", ".join([*(f"/hooks/{s.name}" for s in cfg.sources), "/api (CRM REST API)"])
    )
    serve(host, port, config=cfg)
