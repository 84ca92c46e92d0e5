"""The suggester: profiles in, ranked candidates, calibrated confidence and an auto-accept set out.

features (features.py) → two-stage boosted trees (model.py) → review decisions of the system pair
→ global one-to-one assignment (assign.py) → calibrated top-1 confidence → abstain threshold
→ value-transform suggestions (transforms.py)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mappings.suggest.assign import assign
from mappings.suggest.features import FI, FieldView, FieldViewer, pair_features
from mappings.suggest.glossary import Glossary, default_glossary
from mappings.suggest.model import MappingModel, default_model, table_groups
from mappings.suggest.profiles import TableProfile
from mappings.suggest.transforms import suggest_transform

TOP_K = 5


@dataclass(frozen=True)
class Decision:
    """One review decision: the reviewer accepted or rejected ``source → target`` for a system pair."""

    source: str
    target: str
    accepted: bool
    strength: float = 1.0  # 1 = same objects; < 1 = another object of the same system pair (a softer prior)


@dataclass
class Candidate:
    """One ranked target for a source field."""

    target: str
    confidence: float
    probability: float
    reason: str = ""


@dataclass
class Suggestion:
    """Ranked candidates for one source field (best first)."""

    source: str
    candidates: list[Candidate]
    transform: list[Any] = field(default_factory=list)
    transform_note: str = ""


@dataclass
class MappingLine:
    """An auto-accepted pair."""

    source: str
    target: str
    confidence: float
    reason: str
    transform: list[Any] = field(default_factory=list)


@dataclass
class SuggestResult:
    """Output of :meth:`Suggester.suggest`."""

    suggestions: list[Suggestion]
    mapping: list[MappingLine]
    threshold: float

    def to_json(self) -> dict[str, Any]:
        """The benchmark / CLI JSON shape (README of the mapping benchmark, §2)."""
        return {
            "suggestions": [
                {
                    "source": s.source,
                    "candidates": [
                        {"target": c.target, "confidence": round(c.confidence, 4), "reason": c.reason}
                        for c in s.candidates
                    ],
                    **({"transform": s.transform} if s.transform else {}),
                }
                for s in self.suggestions
            ],
            "mapping": [
                {
                    "source": m.source,
                    "target": m.target,
                    "confidence": round(m.confidence, 4),
                    "reason": m.reason,
                    **({"transform": m.transform} if m.transform else {}),
                }
                for m in self.mapping
            ],
            "threshold": self.threshold,
        }


@dataclass
class ScoredPair:
    """Intermediate matrices (exposed for training, evaluation and the re-ranker)."""

    src: list[FieldView]
    tgt: list[FieldView]
    x: np.ndarray
    p1: np.ndarray
    p2: np.ndarray


class Suggester:
    """Proposes a field mapping between two profiles."""

    def __init__(self, glossary: Glossary | None = None, model: MappingModel | None = None) -> None:
        self.glossary = glossary or default_glossary()
        self.model = model or default_model()
        self.viewer = FieldViewer(self.glossary)

    def score(self, source: TableProfile, target: TableProfile) -> ScoredPair:
        """Features and model probabilities for every (source, target) pair."""
        src = self.viewer.table(source)
        tgt = self.viewer.table(target)
        x = pair_features(src, tgt, self.glossary)
        p1, p2 = self.model.score(x, table_groups(source.names), table_groups(target.names))
        return ScoredPair(src, tgt, x, p1, p2)

    def suggest(
        self,
        source: TableProfile,
        target: TableProfile,
        decisions: Iterable[Decision] = (),
        *,
        top_k: int = TOP_K,
        threshold: float | None = None,
        scored: ScoredPair | None = None,
    ) -> SuggestResult:
        """Rank targets for every source field and pick the auto-accepted one-to-one mapping."""
        sp = scored or self.score(source, target)
        thr = self.model.accept_threshold if threshold is None else threshold
        return self.decide(sp, list(decisions), top_k=top_k, threshold=thr)

    def decide(
        self, sp: ScoredPair, decisions: list[Decision], *, top_k: int = TOP_K, threshold: float = 0.8
    ) -> SuggestResult:
        """Apply review decisions, assign one-to-one, calibrate, rank and threshold."""
        prob = sp.p2.copy()
        s_idx = {v.name: i for i, v in enumerate(sp.src)}
        t_idx = {v.name: j for j, v in enumerate(sp.tgt)}
        accepted: set[tuple[int, int]] = set()
        rejected: set[tuple[int, int]] = set()
        for d in decisions:
            i, j = s_idx.get(d.source), t_idx.get(d.target)
            if i is None or j is None:
                continue
            if d.strength >= 1.0:
                (accepted if d.accepted else rejected).add((i, j))
            elif d.accepted:  # decided for another object of the same systems: a strong hint, not a fact
                prob[i, j] = 1.0 - (1.0 - prob[i, j]) * (1.0 - d.strength)
            else:
                prob[i, j] *= 1.0 - d.strength
        for i, j in rejected:
            prob[i, j] = 0.0
        for i, j in accepted:
            # An accepted pair is a fact: it takes its row and column.
            prob[i, :] *= 0.2
            prob[:, j] *= 0.2
            prob[i, j] = 0.999
        assigned = assign(prob) if prob.size else {}
        taken = {j: i for i, j in assigned.items()}
        calib = self.model.calibration
        suggestions: list[Suggestion] = []
        mapping: list[MappingLine] = []
        for i, sv in enumerate(sp.src):
            row = prob[i] if prob.size else np.zeros(0)
            # Targets confidently assigned to another field are pushed down, not hidden.
            adjusted = row.copy()
            for j, owner in taken.items():
                if owner != i:
                    adjusted[j] = row[j] * (1.0 - prob[owner, j])
            order = list(np.argsort(-adjusted, kind="stable"))
            if i in assigned:
                first = assigned[i]
                order.remove(first)
                order.insert(0, first)
            # A rejected pair is never first choice again; it stays at the end of the list.
            order = [j for j in order if (i, j) not in rejected] + [j for j in order if (i, j) in rejected]
            chosen = [
                j for j in order[:top_k] if row[j] >= self.model.min_candidate and (i, j) not in rejected
            ]
            if len(chosen) < min(3, len(order)):
                chosen = order[: min(3, len(order))]
            cands = []
            for j in chosen:
                p = float(row[j])
                conf = float(calib(p)) if (i, j) not in accepted else 0.999
                if cands:
                    conf = min(
                        conf, cands[-1].confidence
                    )  # listed best first: never more confident than the one above
                cands.append(
                    Candidate(sp.tgt[j].name, conf, p, explain(sp, i, j, accepted=(i, j) in accepted))
                )
            transform: list[Any] = []
            note = ""
            if cands:
                transform, note = suggest_transform(sv, sp.tgt[chosen[0]])
            suggestions.append(Suggestion(sv.name, cands, transform, note))
            if cands and i in assigned and chosen[0] == assigned[i] and cands[0].confidence >= threshold:
                mapping.append(
                    MappingLine(sv.name, cands[0].target, cands[0].confidence, cands[0].reason, transform)
                )
        return SuggestResult(suggestions, mapping, threshold)


def explain(sp: ScoredPair, i: int, j: int, accepted: bool = False) -> str:
    """A short human reason for a candidate, from its strongest signals."""
    if accepted:
        return "accepted in an earlier review of this system pair"
    x = sp.x[i, j]
    s, t = sp.src[i], sp.tgt[j]
    parts: list[str] = []
    if x[FI["exact_leaf"]]:
        parts.append("same name")
    elif x[FI["leaf_terms"]] >= 0.7 or x[FI["all_terms"]] >= 0.7:
        shared = [a for a in dict.fromkeys(s.all_terms) if any(a == b for b in t.all_terms + t.py_terms)]
        parts.append("name/label terms match" + (f" ({', '.join(shared[:3])})" if shared else ""))
    elif x[FI["cross_name_label"]] >= 0.7:
        parts.append("name matches label")
    if x[FI["pinyin_exact"]] or x[FI["pinyin"]] >= 0.85:
        parts.append(f"pinyin {t.parts.leaf_raw if t.pinyin_like else s.parts.leaf_raw} matches")
    if x[FI["zh_dice"]] >= 0.6:
        parts.append("Chinese labels agree")
    if x[FI["overlap_contain"]] >= 0.3:
        parts.append(f"{int(round(100 * x[FI['overlap_contain']]))}% shared values")
    kind = s.values.top_kind()
    if kind and x[FI["expect_s2t"]] >= 0.8 and not x[FI["expect_missing"]] >= 2:
        parts.append(f"values look like {kind}")
    elif x[FI["kind_sim"]] >= 0.8 and kind:
        parts.append(f"both sides hold {kind} values")
    if not parts:
        parts.append("weak evidence" if sp.p2[i, j] < 0.5 else "combined signals")
    return "; ".join(parts)
