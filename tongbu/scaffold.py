"""``tongbu new connector NAME``: a new connector on the kit, rendered with copier from the shipped template.

The template (``connectors/kit/template/``, package data) creates, in a source checkout:

* ``connectors/NAME/`` — ``client.py`` (on :mod:`connectors.kit.http`), ``streams.py`` (a keyset
  stream, an opaque-cursor stream, a stream with nested line items, on :mod:`connectors.kit.streams`),
  ``tap.py``, ``simulator/`` (on the simulator kit, with :mod:`connectors.kit.fakedata`), ``README.md``;
* ``mappings/library/NAME_to_crm.yaml`` — the three streams into accounts, contacts and sales orders;
* ``docs/connectors/NAME.md`` — the page to fill in;
* ``tests/NAME/test_standard.py`` — the standard connector suite, which passes as generated.

Nothing has to be registered: the connector registry and ``tongbu simulate`` find ``connectors/NAME``.
"""

from __future__ import annotations

import difflib
import keyword
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

TEMPLATE = Path(__file__).resolve().parent.parent / "connectors" / "kit" / "template"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: names that would shadow a module of the ``connectors`` package or mean something else there
_RESERVED = {"kit", "registry", "connectors", "test", "tests"}

app = typer.Typer(help="Create a new piece of a tongbu project from its template.", no_args_is_help=True)


class ScaffoldError(ValueError):
    """A connector that cannot be created as asked (one line, says what to do)."""


@dataclass(frozen=True)
class Scaffolded:
    """What :func:`new_connector` wrote."""

    name: str
    root: Path
    files: list[Path]


def _suggest(name: str) -> str:
    """A valid name close to ``name`` ("Acme-CRM" -> "acme_crm")."""
    text = re.sub(r"[^a-z0-9_]+", "_", name.strip().lower()).strip("_")
    text = re.sub(r"^[0-9_]+", "", text)
    return text if text and not keyword.iskeyword(text) and text not in _RESERVED else ""


def existing_connectors(root: Path) -> set[str]:
    """Connector names already taken in the checkout at ``root`` (folders of connectors/)."""
    base = root / "connectors"
    return {p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))} | {
        p.stem for p in base.glob("*.py")
    }


def check_name(name: str, root: Path) -> None:
    """Raise :class:`ScaffoldError` unless ``name`` is a free, valid connector name."""
    if not _NAME.match(name) or keyword.iskeyword(name) or name in _RESERVED:
        hint = _suggest(name)
        why = (
            "it is reserved"
            if name in _RESERVED or keyword.iskeyword(name)
            else "use lower-case letters, digits and _, starting with a letter"
        )
        raise ScaffoldError(
            f"{name!r} is not a valid connector name ({why})"
            + (f"; did you mean {hint!r}?" if hint and hint != name else "")
        )
    taken = existing_connectors(root)
    if name in taken:
        raise ScaffoldError(f"connector {name!r} already exists (connectors/{name}/); pick another name")
    for path in (f"mappings/library/{name}_to_crm.yaml", f"tests/{name}", f"docs/connectors/{name}.md"):
        if (root / path).exists():
            raise ScaffoldError(f"{path} already exists; remove it or pick another name")


def near_names(name: str, root: Path) -> list[str]:
    """Existing connectors whose names are close to ``name`` (a typo of one of them?)."""
    others = sorted(existing_connectors(root) - {name})
    return difflib.get_close_matches(name, others, n=2, cutoff=0.8)


def default_root() -> Path:
    """The source checkout this tongbu runs from (where ``connectors/`` and ``pyproject.toml`` are)."""
    root = TEMPLATE.parents[2]
    if not (root / "pyproject.toml").is_file():
        raise ScaffoldError(
            f"tongbu is installed from a wheel ({root}); run this in a source checkout or pass --root"
        )
    return root


def new_connector(name: str, *, root: Path | None = None, title: str | None = None) -> Scaffolded:
    """Render the connector template for ``name`` into ``root`` (default: this checkout)."""
    root = (root or default_root()).resolve()
    if not (root / "connectors").is_dir():
        raise ScaffoldError(f"{root} has no connectors/ folder; pass --root to a tongbu source checkout")
    check_name(name, root)
    try:
        import copier
    except ModuleNotFoundError:  # pragma: no cover - a declared dependency
        raise ScaffoldError("copier is not installed: pip install copier") from None

    data = {"name": name}
    if title:
        data["title"] = title
    copier.run_copy(
        str(TEMPLATE),
        str(root),
        data=data,
        defaults=True,
        quiet=True,
        overwrite=False,
        unsafe=False,
    )
    files = sorted(
        p.relative_to(root)
        for folder in (root / "connectors" / name, root / "tests" / name)
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    files += [
        Path(f"mappings/library/{name}_to_crm.yaml"),
        Path(f"docs/connectors/{name}.md"),
    ]
    return Scaffolded(name, root, files)


def next_steps(made: Scaffolded) -> list[str]:
    """What to do after generating, in order."""
    n = made.name
    cls = "".join(part.title() for part in n.split("_"))
    return [
        f"python -m pytest tests/{n}                      # the standard suite passes as generated",
        f"tongbu simulate {n}                             # the generated simulator, in the foreground",
        f"edit connectors/{n}/simulator/ until it speaks the real API, then client.py and streams.py",
        f"edit mappings/library/{n}_to_crm.yaml, and docs/connectors/{n}.md",
        f"add a connection and pipelines to tongbu.yaml (docs/connectors/{n}.md has them); Dagster shows "
        f"an asset per stream",
        f'for pipe mode and the shell: add  tap-{n} = "connectors.{n}.tap:Tap{cls}.cli"  to '
        "[project.scripts] in pyproject.toml and pip install -e . again",
    ]


@app.command("connector")
def connector_command(
    name: Annotated[str, typer.Argument(help="Connector name: a Python identifier, e.g. acme")],
    root: Annotated[
        Path | None, typer.Option(help="Source checkout to create it in (default: this tongbu's)")
    ] = None,
    title: Annotated[str | None, typer.Option(help="Display name of the system (default: from NAME)")] = None,
) -> None:
    """Create connectors/NAME/ (simulator, client, streams, tap), its mapping, docs page and standard tests."""
    try:
        made = new_connector(name, root=root, title=title)
    except ScaffoldError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    near = near_names(name, made.root)
    print(f"created connector {name!r} in {made.root}:")
    for path in made.files:
        print(f"  {path}")
    if near:
        print(f"note: {name!r} is close to the existing {', '.join(near)}; rename it now if that was a typo")
    print("next steps:")
    for i, step in enumerate(next_steps(made), 1):
        print(f"  {i}. {step}")
