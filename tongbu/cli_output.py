"""How every ``tongbu`` command reports an error: one line on stderr, secrets masked.

A module of its own so that sub-command modules (``tongbu.drift_cli``, …) use it without importing
``tongbu.cli``, which mounts them (that was an import cycle).
"""

from __future__ import annotations

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
