"""Draft mapping files written by ``suggest --write`` and walked by ``review``.

Two files: the mapping YAML the mapping engine reads (``mappings/<name>.yaml``) and, beside it, a
sidecar ``<name>.suggest.json`` with what the review needs (every candidate, its confidence, reason
and features, and each field's review status).  The YAML is always regenerated from the sidecar, so
the comments (confidence and reason of each line) stay in step with the decisions.

Status of a source field: ``auto`` (auto-accepted, active line), ``review`` (below the threshold:
commented out until a reviewer accepts it), ``accepted`` / ``rejected`` (decided by a reviewer),
``none`` (no candidate at all).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from mappings.suggest.engine import ScoredPair, SuggestResult
from mappings.suggest.profiles import TableProfile

SIDECAR_SUFFIX = ".suggest.json"
FORMAT = "tongbu-mapping-draft/1"


@dataclass
class DraftCandidate:
    """One candidate target with what the review shows and stores."""

    target: str
    confidence: float
    probability: float
    reason: str
    features: list[float] = field(default_factory=list)


@dataclass
class DraftField:
    """The review state of one source field."""

    source: str
    status: str  # auto | review | accepted | rejected | none
    chosen: str | None
    transform: list[Any]
    transform_note: str
    candidates: list[DraftCandidate]


@dataclass
class Draft:
    """Everything needed to render the YAML and to run the review."""

    name: str
    source_system: str
    source_object: str
    target_system: str
    target_object: str
    threshold: float
    created: str
    fields: list[DraftField]
    record_id: str | None = None  # the source field guessed to be the record's id (the source_id upsert key)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_result(
        cls,
        source: TableProfile,
        target: TableProfile,
        result: SuggestResult,
        scored: ScoredPair | None = None,
        name: str | None = None,
    ) -> Draft:
        """Build a draft from a suggestion result (features come from ``scored`` when given)."""
        accepted = {m.source for m in result.mapping}
        s_idx = {v.name: i for i, v in enumerate(scored.src)} if scored else {}
        t_idx = {v.name: j for j, v in enumerate(scored.tgt)} if scored else {}
        fields = []
        for s in result.suggestions:
            cands = []
            for c in s.candidates:
                feats: list[float] = []
                if scored is not None and s.source in s_idx and c.target in t_idx:
                    feats = [round(float(v), 5) for v in scored.x[s_idx[s.source], t_idx[c.target]]]
                cands.append(
                    DraftCandidate(c.target, round(c.confidence, 4), round(c.probability, 4), c.reason, feats)
                )
            if not cands:
                status, chosen = "none", None
            elif s.source in accepted:
                status, chosen = "auto", cands[0].target
            else:
                status, chosen = "review", cands[0].target
            fields.append(DraftField(s.source, status, chosen, s.transform, s.transform_note, cands))
        return cls(
            name=name or default_name(source, target),
            source_system=source.system,
            source_object=source.object,
            target_system=target.system,
            target_object=target.object,
            threshold=result.threshold,
            created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            fields=fields,
            record_id=guess_record_id(source),
        )

    # ------------------------------------------------------------------ files
    def save(self, yaml_path: str | Path) -> tuple[Path, Path]:
        """Write the mapping YAML and its sidecar; returns both paths."""
        yp = Path(yaml_path)
        yp.parent.mkdir(parents=True, exist_ok=True)
        side = sidecar_path(yp)
        side.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=1), encoding="utf-8")
        yp.write_text(self.render_yaml(), encoding="utf-8")
        return yp, side

    @classmethod
    def load(cls, yaml_path: str | Path) -> Draft:
        """Read a draft back from its sidecar (the YAML is regenerated from it)."""
        side = sidecar_path(Path(yaml_path))
        if not side.exists():
            raise FileNotFoundError(
                f"{side}: no suggestion sidecar next to {yaml_path}; run `tongbu mappings suggest ... --write {yaml_path}` first"
            )
        data = json.loads(side.read_text(encoding="utf-8"))
        fields = [
            DraftField(
                source=f["source"],
                status=f["status"],
                chosen=f.get("chosen"),
                transform=f.get("transform") or [],
                transform_note=f.get("transform_note", ""),
                candidates=[DraftCandidate(**c) for c in f.get("candidates", [])],
            )
            for f in data["fields"]
        ]
        return cls(
            name=data["name"],
            source_system=data["source_system"],
            source_object=data["source_object"],
            target_system=data["target_system"],
            target_object=data["target_object"],
            threshold=float(data["threshold"]),
            created=data.get("created", ""),
            fields=fields,
            record_id=data.get("record_id"),
        )

    # ------------------------------------------------------------------ rendering
    def active_lines(self) -> list[DraftField]:
        """Fields that produce an active mapping line (auto-accepted or accepted)."""
        return [f for f in self.fields if f.status in ("auto", "accepted") and f.chosen]

    def render_yaml(self) -> str:
        """The mapping file text, with confidence and reason comments."""
        n_auto = sum(f.status == "auto" for f in self.fields)
        n_acc = sum(f.status == "accepted" for f in self.fields)
        n_rev = sum(f.status == "review" for f in self.fields)
        out = [
            f"# Draft mapping proposed by `tongbu mappings suggest` ({self.created}).",
            f"# {n_auto} line(s) auto-accepted at calibrated confidence >= {self.threshold:.2f}, {n_acc} accepted by a reviewer,",
            f"# {n_rev} left for review (commented out). Review: tongbu mappings review {self.name}.yaml",
            "version: 1",
            f"name: {_scalar(self.name)}",
            f"source: {{system: {_scalar(self.source_system or 'unknown')}, stream: {_scalar(self.source_object or 'unknown')}}}",
            f"target: {{object: {_scalar(self.target_object or 'unknown')}}}",
            "fields:",
        ]
        if self.record_id:
            out.append(
                f"  - target: source_id  # the record's id in {_comment(self.source_system)} (upsert key): guessed, check it"
            )
            out.append(f"    source: {_scalar(self.record_id)}")
            out.append("    transform: [str]")
        used_targets: set[str] = set()
        for f in self.active_lines():
            cand = _candidate(f, f.chosen)
            how = "accepted by reviewer" if f.status == "accepted" else "auto"
            conf = f"{cand.confidence:.2f}" if cand else "n/a"
            reason = cand.reason if cand else ""
            out.append(f"  - target: {_scalar(f.chosen)}  # {how}, confidence {conf}: {_comment(reason)}")
            out.append(f"    source: {_scalar(f.source)}")
            if f.transform:
                note = f"  # {_comment(f.transform_note)}" if f.transform_note else ""
                out.append(f"    transform: {_flow(f.transform)}{note}")
            used_targets.add(f.chosen or "")
        pending = [
            f for f in self.fields if f.status == "review" and f.chosen and f.chosen not in used_targets
        ]
        if pending:
            out.append("  # ---- needs review (uncomment or run `tongbu mappings review`):")
        for f in pending:
            cand = f.candidates[0]
            alts = ", ".join(f"{c.target} {c.confidence:.2f}" for c in f.candidates[1:4])
            out.append(
                f"  # - target: {_scalar(f.chosen)}  # confidence {cand.confidence:.2f}: {_comment(cand.reason)}"
                + (f"; alternatives: {_comment(alts)}" if alts else "")
            )
            out.append(f"  #   source: {_scalar(f.source)}")
            if f.transform:
                out.append(f"  #   transform: {_flow(f.transform)}")
        if not self.record_id:
            out.append(
                "  # - target: source_id  # TODO: map the source field that identifies a record (upsert key)"
            )
        if not self.active_lines() and not pending and not self.record_id:
            out = [line for line in out if not line.startswith("  # - target: source_id")]
            out[-1] = "fields: []"
        return "\n".join(out) + "\n"


def _candidate(f: DraftField, target: str | None) -> DraftCandidate | None:
    return next((c for c in f.candidates if c.target == target), None)


def _comment(text: str) -> str:
    return re.sub(r"[\r\n]+", " ", text or "").strip()


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, allow_unicode=True, default_flow_style=True, width=10**6).strip()
    return (
        text[:-4].strip()
        if text.endswith("\n...") or text.endswith(" ...")
        else text.removesuffix("...").strip()
    )


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, allow_unicode=True, default_flow_style=True, width=10**6).strip()


def guess_record_id(source: TableProfile) -> str | None:
    """The source field that most likely identifies a record: a top-level id with distinct values."""
    best: tuple[int, str] | None = None
    for rank, f in enumerate(source.fields):
        if f.type in ("array", "object", "boolean") or f.name.count(".") + f.name.count("/") > 1:
            continue
        nested = 1 if ("." in f.name or "/" in f.name) else 0
        name = re.split(r"[./]", f.name)[-1].lower().replace("_", "")
        if name in ("id", "fid", "uuid", "guid"):
            score = 0
        elif re.fullmatch(
            r"f?(cust|customer|bill|order|entry|material|supplier|contact|device|user|externaluser)?id", name
        ):
            score = 1
        elif name.endswith("id") and rank < 3:
            score = 2
        else:
            continue
        samples = [str(v) for v in f.samples]
        if samples and len(set(samples)) < len(samples):
            continue
        score += nested
        if best is None or score < best[0]:
            best = (score, f.name)
    return best[1] if best else None


def sidecar_path(yaml_path: Path) -> Path:
    """``mappings/x.yaml`` → ``mappings/x.suggest.json``."""
    return yaml_path.with_name(yaml_path.stem + SIDECAR_SUFFIX)


def default_name(source: TableProfile, target: TableProfile) -> str:
    """``<source system>_<source object>_to_<target object>`` in snake case."""
    raw = f"{source.system}_{source.object}_to_{target.object or target.system}"
    return re.sub(r"[^0-9A-Za-z]+", "_", raw).strip("_").lower() or "mapping"
