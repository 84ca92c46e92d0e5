"""How every ``tongbu`` command reports an error: one line on stderr, secrets masked.

A module of its own so that sub-command modules (``tongbu.drift_cli``, …) use it without importing
``tongbu.cli``, which mounts them (that was an import cycle).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

# soft_wrap: an error is one line whatever the terminal width (scripts and log collectors grep them).
err = Console(stderr=True, soft_wrap=True)


def one_line(exc: BaseException) -> str:
    """``Type: message`` with secret values masked (the text may come from a source's error)."""
    text = (
        str(exc) if isinstance(exc, ValueError | KeyError | RuntimeError) else f"{type(exc).__name__}: {exc}"
    )
    from tongbu.vault import redact  # lazily: `tongbu --help` need not load the vault

    return redact(text)


def fail(message: str, code: int = 1) -> None:
    """Print one error line and exit with ``code``."""
    error_line(message)
    raise typer.Exit(code)


def error_line(message: str, label: str = "error") -> None:
    """Print ``label: message`` on stderr as one line."""
    # Markup is applied to the label only: a message may contain [brackets] from a source.
    colour = "bold red" if label == "error" else "bold yellow"
    err.print(f"[{colour}]{label}:[/] ", end="", highlight=False)
    err.print(" ".join(message.split()), markup=False, highlight=False, soft_wrap=True)


F = TypeVar("F", bound=Callable[..., Any])


def handled(exit_code: Callable[[Exception], tuple[str, int]]) -> Callable[[F], F]:
    """Decorate a command so that every exception becomes one line on stderr and an exit code.

    ``exit_code`` turns the exception into the line and the code (each command group knows its own
    errors: the vault's, a locked pipeline, a hub that is not a hub, …).
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except (typer.Exit, typer.Abort, KeyboardInterrupt):
                raise
            except Exception as exc:  # noqa: BLE001 - the CLI boundary: nothing may escape as a traceback
                message, code = exit_code(exc)
                fail(message, code)

        return wrapper  # type: ignore[return-value]  # functools.wraps keeps the signature typer reads

    return decorate


EXIT_FAILED, EXIT_BAD_HUB, EXIT_LOCKED, EXIT_ALL_QUARANTINED = 1, 2, 3, 4


def exit_code(exc: BaseException) -> tuple[str, int]:
    """The one line and the exit code for an exception reaching the CLI."""
    if "sqlalchemy" in sys.modules:
        from tongbu.db import hub_error

        bad = hub_error(exc)
        if bad is not None:
            return str(bad), EXIT_BAD_HUB
        from tongbu.state.store import PipelineLocked

        if isinstance(exc, PipelineLocked):
            return str(exc), EXIT_LOCKED
    return one_line(exc), EXIT_FAILED


def project_tenant(project: Path | None) -> str:
    """The tenant of the project file in use (``--project``, ``TONGBU_PROJECT``, nearest tongbu.yaml).

    Without any project file the tenant is ``default``; a named file that is missing or invalid is an
    error, never a silent fall-back to another tenant.
    """
    from pipelines.project import find_project_file, load_project
    from tongbu.config import DEFAULT_TENANT

    path = project or find_project_file()
    if project is None and not os.environ.get("TONGBU_PROJECT") and not path.exists():
        return DEFAULT_TENANT
    return load_project(path, strict=False).tenant
