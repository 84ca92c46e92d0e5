"""``tongbu api token create|list|revoke``: bearer tokens of the CRM's REST API (``tongbu serve``).

A token is printed once, when it is created; only its SHA-256 is stored. Its name is the author
recorded on every change made with it (``api:<name>``).
"""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="The CRM's REST API on `tongbu serve`: its tokens.", no_args_is_help=True)
token_app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")
ProjectOpt = Annotated[
    Path | None, typer.Option("--project", "-p", help="Project file (its tenant; default: ./tongbu.yaml)")
]


def _store(project: Path | None):  # noqa: ANN202 - a TokenStore, imported lazily
    from tongbu.api.tokens import TokenStore
    from tongbu.cli_output import project_tenant as _project_tenant
    from tongbu.db import get_engine

    engine = get_engine()
    return TokenStore(engine, _project_tenant(project))


def _guard(func):  # noqa: ANN001, ANN202 - one line and an exit code, never a traceback
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        from tongbu.api.tokens import TokenError
        from tongbu.cli_output import exit_code as _exit_code
        from tongbu.cli_output import fail as _fail

        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except TokenError as exc:
            _fail(str(exc))
        except Exception as exc:  # noqa: BLE001 - the CLI boundary
            _fail(*_exit_code(exc))

    return wrapper


@token_app.command("create")
@_guard
def create(
    name: Annotated[str, typer.Argument(help="Who uses it (recorded as the author: api:NAME)")],
    scope: Annotated[str, typer.Option(help="read, or write (create and edit records)")] = "read",
    project: ProjectOpt = None,
) -> None:
    """Create a token and print it once (it is stored hashed and cannot be shown again)."""
    who = os.environ.get("TONGBU_USER") or getpass.getuser()
    token = _store(project).create(name, scope, by=who)
    print(token)
    typer.echo(f"token {name!r} ({scope}) created; store it now, it is not shown again", err=True)


@token_app.command("list")
@_guard
def list_tokens(
    project: ProjectOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
) -> None:
    """Tokens by name, scope, creation, last use and revocation (never the secret)."""
    rows = _store(project).list()
    if as_json:
        print(json.dumps(rows, default=str))
        return
    for r in rows:
        state = f"revoked {r['revoked_at']:%Y-%m-%d}" if r["revoked_at"] else "active"
        used = f"{r['last_used_at']:%Y-%m-%d %H:%M}" if r["last_used_at"] else "never"
        print(f"{r['name']:<24} {r['scope']:<6} {state:<18} last used {used}")


@token_app.command("revoke")
@_guard
def revoke(
    name: Annotated[str, typer.Argument(help="The token's name")],
    project: ProjectOpt = None,
) -> None:
    """Revoke a token; requests with it are refused (401) at once."""
    _store(project).revoke(name)
    print(f"token {name!r} revoked")
