"""How every ``tongbu`` command reports an error: one line on stderr, secrets masked.

A module of its own so that sub-command modules (``tongbu.drift_cli``, …) use it without importing
``tongbu.cli``, which mounts them (that was an import cycle).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
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
