"""``tongbu mappings suggest`` and ``tongbu mappings review``.

    tongbu mappings suggest --source SRC --target TGT --format json
    tongbu mappings suggest --source kingdee:customers --target crm:accounts --write mappings/kingdee_customers.yaml
    tongbu mappings review mappings/kingdee_customers.yaml
    tongbu mappings refit

SRC / TGT are field-profile JSON files, ``<connection>:<stream>`` of a configured connection, or
``crm:<object>`` (see ``sources.py``).  Review decisions are stored in the hub database and used by
the next ``suggest`` for the same system pair.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer

from mappings.suggest.profiles import ProfileError, TableProfile

app = typer.Typer(
    help="AI-suggested field mappings: suggest, review, refit.", no_args_is_help=True, add_completion=False
)

OVERLAY_FILE = "mapping_model_overlay.json"


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _history_available() -> bool:
    """Read review history only when a hub database is configured or already exists (never create one here)."""
    if os.environ.get("TONGBU_DATABASE_URL"):
        return True
    home = Path(os.environ.get("TONGBU_HOME") or Path.cwd() / ".tongbu")
    return (home / "hub.db").exists()


def _load_decisions(source: TableProfile, target: TableProfile) -> list[Any]:
    from mappings.suggest.engine import Decision
    from mappings.suggest.store import SystemPair, decisions_for

    pair = SystemPair(source.system, target.system, source.object, target.object)
    return [
        Decision(r.source_field, r.target_field, r.accepted, 1.0 if r.same_object else 0.5)
        for r in decisions_for(pair)
    ]


def _suggester() -> Any:
    from mappings.suggest.engine import Suggester
    from mappings.suggest.model import MappingModel, Overlay, default_model

    model = default_model()
    overlay_path = Path(os.environ.get("TONGBU_HOME") or Path.cwd() / ".tongbu") / OVERLAY_FILE
    if overlay_path.exists():
        model = MappingModel.from_json(model.to_json())
        model.overlay = Overlay.from_json(json.loads(overlay_path.read_text(encoding="utf-8")))
    return Suggester(model=model)


@app.command()
def suggest(
    source: str = typer.Option(..., "--source", "-s", help="source profile JSON, or <connection>:<stream>"),
    target: str = typer.Option(..., "--target", "-t", help="target profile JSON, or crm:<object>"),
    fmt: str = typer.Option("table", "--format", "-f", help="json | table | yaml"),
    write: Path | None = typer.Option(
        None, "--write", "-w", help="write a draft mapping file (plus a .suggest.json sidecar)"
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", help="auto-accept threshold (default: the model's)"
    ),
    top_k: int = typer.Option(5, "--top-k", min=1, max=20, help="candidates per source field"),
    history: bool = typer.Option(
        True, "--history/--no-history", help="use stored review decisions of this system pair"
    ),
    rerank: bool = typer.Option(
        False, "--rerank", help="re-rank uncertain fields with the configured LLM endpoint"
    ),
    sample_rows: int = typer.Option(200, "--sample-rows", help="records sampled from a connection stream"),
    name: str | None = typer.Option(
        None, "--name", help="mapping name for --write (default from the systems)"
    ),
) -> None:
    """Propose a mapping from SRC fields to TGT fields with calibrated confidence."""
    from pipelines.profiles import resolve_profile

    if fmt not in ("json", "table", "yaml"):
        _fail(f"--format must be json, table or yaml, not {fmt!r}")
    try:
        src = resolve_profile(source, role="source", sample_rows=sample_rows)
        tgt = resolve_profile(target, role="target", sample_rows=sample_rows)
    except ProfileError as exc:
        _fail(str(exc))
        return
    sug = _suggester()
    decisions = _load_decisions(src, tgt) if history and _history_available() else []
    scored = sug.score(src, tgt)
    if rerank:
        from mappings.suggest.rerank import Reranker, RerankError

        try:
            scored = Reranker.from_env().rerank(scored)
        except RerankError as exc:
            typer.echo(f"warning: re-ranking skipped: {exc}", err=True)
    result = sug.suggest(src, tgt, decisions, top_k=top_k, threshold=threshold, scored=scored)
    if write is not None:
        from mappings.suggest.draft import Draft

        draft = Draft.from_result(src, tgt, result, scored, name=name or None)
        yp, side = draft.save(write)
        typer.echo(
            f"wrote {yp} ({len(result.mapping)} auto-accepted, {len(result.suggestions) - len(result.mapping)} to review) and {side}",
            err=fmt == "json",
        )
    if fmt == "json":
        sys.stdout.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
    elif fmt == "yaml":
        from mappings.suggest.draft import Draft

        typer.echo(Draft.from_result(src, tgt, result, scored, name=name or None).render_yaml(), nl=False)
    else:
        _print_table(result)


def _print_table(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    accepted = {m.source for m in result.mapping}
    table = Table(title=f"suggested mapping (auto-accept >= {result.threshold:.2f})")
    for col in ("source", "target", "conf", "status", "reason", "alternatives"):
        table.add_column(col)
    for s in result.suggestions:
        if not s.candidates:
            table.add_row(s.source, "-", "", "no candidate", "", "")
            continue
        c = s.candidates[0]
        alts = ", ".join(f"{a.target} {a.confidence:.2f}" for a in s.candidates[1:3])
        table.add_row(
            s.source,
            c.target,
            f"{c.confidence:.2f}",
            "auto" if s.source in accepted else "review",
            c.reason,
            alts,
        )
    Console().print(table)


@app.command()
def review(
    path: Path = typer.Argument(..., help="draft mapping file written by `suggest --write`"),
    reviewer: str = typer.Option(os.environ.get("USER", ""), "--reviewer", help="stored as who decided"),
    pending_only: bool = typer.Option(False, "--pending-only", help="skip auto-accepted lines"),
) -> None:
    """Walk through a draft: accept / reject / choose another candidate; decisions are stored."""
    from mappings.suggest.draft import Draft
    from mappings.suggest.store import SystemPair, record_decision

    try:
        draft = Draft.load(path)
    except FileNotFoundError as exc:
        _fail(str(exc))
        return
    pair = SystemPair(draft.source_system, draft.target_system, draft.source_object, draft.target_object)
    todo = [f for f in draft.fields if f.status == "review" or (f.status == "auto" and not pending_only)]
    typer.echo(
        f"{len(todo)} field(s) to review in {path} — a = accept, r = reject, 1-{5} = choose candidate, s = skip, q = save and quit"
    )
    decided = 0
    for f in todo:
        typer.echo("")
        typer.echo(f"{f.source}  [{f.status}]")
        for k, c in enumerate(f.candidates, 1):
            mark = "*" if c.target == f.chosen else " "
            typer.echo(f"  {mark}{k}. {c.target}  {c.confidence:.2f}  {c.reason}")
        if f.transform:
            typer.echo(f"     transform: {json.dumps(f.transform, ensure_ascii=False)}  {f.transform_note}")
        answer = typer.prompt("choice", default="a").strip().lower()
        if answer == "q":
            break
        if answer == "s":
            continue
        top = f.candidates[0] if f.candidates else None
        if answer == "a" and f.chosen:
            cand = next((c for c in f.candidates if c.target == f.chosen), top)
            _record(record_decision, pair, f.source, f.chosen, True, reviewer, cand, path)
            f.status = "accepted"
        elif answer == "r" and f.chosen:
            cand = next((c for c in f.candidates if c.target == f.chosen), top)
            _record(record_decision, pair, f.source, f.chosen, False, reviewer, cand, path)
            f.status, f.chosen, f.transform = "rejected", None, []
        elif answer.isdigit() and 1 <= int(answer) <= len(f.candidates):
            cand = f.candidates[int(answer) - 1]
            if f.chosen and f.chosen != cand.target:
                prev = next((c for c in f.candidates if c.target == f.chosen), None)
                _record(record_decision, pair, f.source, f.chosen, False, reviewer, prev, path)
            _record(record_decision, pair, f.source, cand.target, True, reviewer, cand, path)
            if cand.target != f.chosen:
                f.transform, f.transform_note = [], ""
            f.status, f.chosen = "accepted", cand.target
        else:
            typer.echo("  (not understood; skipped)")
            continue
        decided += 1
    # One target per field: a target chosen by a reviewer leaves any other line that used it for review.
    owners: dict[str, str] = {f.chosen: f.source for f in draft.fields if f.status == "accepted" and f.chosen}
    for f in draft.fields:
        if f.status == "auto" and f.chosen in owners and owners[f.chosen] != f.source:
            f.status = "review"
    draft.save(path)
    typer.echo(f"\n{decided} decision(s) stored; rewrote {path}")


def _record(
    fn: Any, pair: Any, source: str, target: str, accepted: bool, reviewer: str, cand: Any, path: Path
) -> None:
    fn(
        pair,
        source,
        target,
        accepted,
        decided_by=reviewer,
        confidence=getattr(cand, "confidence", None),
        probability=getattr(cand, "probability", None),
        features=getattr(cand, "features", None) or None,
        mapping_file=str(path),
    )


@app.command()
def refit(
    l2: float = typer.Option(4.0, "--l2", help="strength of the pull towards the shipped model"),
) -> None:
    """Refit the model's correction layer from all stored review decisions."""
    from mappings.suggest.store import training_rows
    from mappings.suggest.training import refit_overlay

    rows = [r for r in training_rows() if r[0]]
    if not rows:
        _fail("no stored review decisions with features yet; review a draft first", code=1)
    overlay = refit_overlay(rows, l2=l2)
    home = Path(os.environ.get("TONGBU_HOME") or Path.cwd() / ".tongbu")
    home.mkdir(parents=True, exist_ok=True)
    out = home / OVERLAY_FILE
    out.write_text(json.dumps(overlay.to_json()), encoding="utf-8")
    n_acc = sum(1 for r in rows if r[2])
    typer.echo(
        f"refit on {len(rows)} decisions ({n_acc} accepted, {len(rows) - n_acc} rejected); wrote {out}"
    )


def main() -> None:  # pragma: no cover - `python -m tongbu.suggest_cli`
    """Run the Typer app."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
