"""The learned scorer: gradient-boosted trees stored as plain JSON, evaluated with numpy.

Training uses scikit-learn (``training.py``); the shipped model is ``data/model.json``: a list of
small regression trees (feature, threshold, children, leaf values) plus the prior and learning rate,
and an isotonic calibration table.  No pickle, no scikit-learn at suggestion time.

Two stages: stage 1 scores a pair from its own features; stage 2 adds context features (how the
pair ranks in its row and column of the score matrix), so a target that is clearly better for some
other source field loses confidence here.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mappings.suggest.text import raw_words, split_path

MODEL_FILE = Path(__file__).parent / "data" / "model.json"
CONTEXT_NAMES = (
    "p1",
    "p1_logit",
    "row_gap",
    "col_gap",
    "row_rank",
    "col_rank",
    "row_second_gap",
    "col_second_gap",
    "row_size",
    "col_size",
    "mutual_best",
    "diag_support",
    "group_support",
    "group_lead",
    "has_groups",
)
# How many of the table's fields a name prefix may cover and still be a sibling group (billing.*,
# shipto_*): a prefix on most fields is a vendor prefix (hs_, msdyn_, new_), not a group.
_GROUP_MAX_SHARE = 0.6


@dataclass
class TreeEnsemble:
    """Boosted regression trees for binary log-loss (the arrays of sklearn's ``tree_``)."""

    init: float
    learning_rate: float
    trees: list[dict[str, np.ndarray]] = field(default_factory=list)

    def decision(self, x: np.ndarray) -> np.ndarray:
        """Raw log-odds for rows of ``x`` (shape (n, n_features))."""
        out = np.full(x.shape[0], self.init, dtype=np.float64)
        rows = np.arange(x.shape[0])
        for t in self.trees:
            node = np.zeros(x.shape[0], dtype=np.int64)
            feat, thr, left, right, value = t["feature"], t["threshold"], t["left"], t["right"], t["value"]
            for _ in range(t["depth"]):
                f = feat[node]
                leaf = f < 0
                go_left = x[rows, np.where(leaf, 0, f)] <= thr[node]
                node = np.where(leaf, node, np.where(go_left, left[node], right[node]))
            out += self.learning_rate * value[node]
        return out

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probability of the positive class."""
        return 1.0 / (1.0 + np.exp(-np.clip(self.decision(x), -30, 30)))

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "init": self.init,
            "learning_rate": self.learning_rate,
            "trees": [
                {
                    "depth": int(t["depth"]),
                    "feature": t["feature"].tolist(),
                    "threshold": [round(float(v), 6) for v in t["threshold"]],
                    "left": t["left"].tolist(),
                    "right": t["right"].tolist(),
                    "value": [round(float(v), 6) for v in t["value"]],
                }
                for t in self.trees
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TreeEnsemble:
        """Inverse of :meth:`to_json`."""
        trees = [
            {
                "depth": int(t["depth"]),
                "feature": np.asarray(t["feature"], dtype=np.int64),
                "threshold": np.asarray(t["threshold"], dtype=np.float64),
                "left": np.asarray(t["left"], dtype=np.int64),
                "right": np.asarray(t["right"], dtype=np.int64),
                "value": np.asarray(t["value"], dtype=np.float64),
            }
            for t in data["trees"]
        ]
        return cls(init=float(data["init"]), learning_rate=float(data["learning_rate"]), trees=trees)

    @classmethod
    def from_hist_gbdt(cls, clf: Any) -> TreeEnsemble:
        """Convert a fitted binary ``sklearn.ensemble.HistGradientBoostingClassifier`` (no missing values)."""
        trees = []
        for (pred,) in clf._predictors:
            nodes = pred.nodes
            leaf = nodes["is_leaf"].astype(bool)
            trees.append(
                {
                    "depth": int(nodes["depth"].max()),
                    "feature": np.where(leaf, -1, nodes["feature_idx"]).astype(np.int64),
                    "threshold": nodes["num_threshold"].astype(np.float64),
                    "left": nodes["left"].astype(np.int64),
                    "right": nodes["right"].astype(np.int64),
                    "value": nodes["value"].astype(np.float64),
                }
            )
        return cls(init=float(np.ravel(clf._baseline_prediction)[0]), learning_rate=1.0, trees=trees)

    @classmethod
    def from_sklearn(cls, clf: Any) -> TreeEnsemble:
        """Convert a fitted ``sklearn.ensemble.GradientBoostingClassifier`` (binary, log-loss)."""
        prior = clf.init_.class_prior_[1] if hasattr(clf.init_, "class_prior_") else 0.5
        init = float(np.log(prior / (1 - prior)))
        trees = []
        for est in clf.estimators_[:, 0]:
            tr = est.tree_
            trees.append(
                {
                    "depth": int(tr.max_depth),
                    "feature": np.where(tr.children_left < 0, -1, tr.feature).astype(np.int64),
                    "threshold": tr.threshold.astype(np.float64),
                    "left": tr.children_left.astype(np.int64),
                    "right": tr.children_right.astype(np.int64),
                    "value": tr.value[:, 0, 0].astype(np.float64),
                }
            )
        return cls(init=init, learning_rate=float(clf.learning_rate), trees=trees)


@dataclass
class Isotonic:
    """Piecewise-linear isotonic calibration map (x thresholds → y)."""

    x: np.ndarray
    y: np.ndarray

    def __call__(self, p: np.ndarray | float) -> np.ndarray:
        """Calibrated probabilities."""
        return np.interp(p, self.x, self.y)

    def to_json(self) -> dict[str, list[float]]:
        """JSON-serialisable form."""
        return {"x": [round(float(v), 6) for v in self.x], "y": [round(float(v), 6) for v in self.y]}

    @classmethod
    def from_json(cls, data: dict[str, list[float]]) -> Isotonic:
        """Inverse of :meth:`to_json`."""
        return cls(np.asarray(data["x"], dtype=np.float64), np.asarray(data["y"], dtype=np.float64))

    @classmethod
    def identity(cls) -> Isotonic:
        """The no-op calibration."""
        return cls(np.array([0.0, 1.0]), np.array([0.0, 1.0]))


@dataclass
class Overlay:
    """Logistic correction refit from stored review decisions: p' = σ(a·logit(p) + b + w·x)."""

    a: float = 1.0
    b: float = 0.0
    w: np.ndarray | None = None

    def apply(self, p: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Corrected probabilities for pairs with base probability ``p`` and features ``x``."""
        z = self.a * _logit(p) + self.b
        if self.w is not None:
            z = z + x @ self.w
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"a": self.a, "b": self.b, "w": None if self.w is None else [float(v) for v in self.w]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Overlay:
        """Inverse of :meth:`to_json`."""
        w = data.get("w")
        return cls(
            a=float(data["a"]), b=float(data["b"]), w=None if w is None else np.asarray(w, dtype=np.float64)
        )


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def table_groups(names: Sequence[str]) -> list[str | None]:
    """The sibling group of each field of a table: its path parent (``billing`` of ``billing.city``)
    or, for flat names, its first word (``shipto`` of ``shipto_city``), when that prefix is shared by
    at least two fields and by no more than ``_GROUP_MAX_SHARE`` of the table; else None."""
    keys: list[str | None] = []
    for name in names:
        parts = split_path(name)
        if len(parts) > 1:
            keys.append("/".join(p.lower() for p in parts[:-1]))
            continue
        words = raw_words(parts[0])
        keys.append(words[0] if len(words) > 1 else None)
    counts = Counter(k for k in keys if k)
    limit = max(2, int(_GROUP_MAX_SHARE * len(names)))
    return [k if k and 2 <= counts[k] <= limit else None for k in keys]


def _group_context(
    p1: np.ndarray, src_groups: Sequence[str | None], tgt_groups: Sequence[str | None]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How well the siblings of a source field match the siblings of a target field.

    ``S[i, g]`` is the mean, over the other members of the source field's group, of their best stage-1
    score inside target group ``g``: ``billing.city`` → ``billto_city`` is likely when ``billing.street``
    → ``billto_line1`` is, and less so when the siblings all prefer ``shipto_*``.  Returns the support of
    each cell's target group, its lead over the best other target group, and a both-have-groups flag.
    """
    n_s, n_t = p1.shape
    support = np.zeros((n_s, n_t))
    lead = np.zeros((n_s, n_t))
    flag = np.zeros((n_s, n_t))
    tg = sorted({g for g in tgt_groups if g})
    if not tg:
        return support, lead, flag
    cols = {g: [j for j in range(n_t) if tgt_groups[j] == g] for g in tg}
    members: dict[str, list[int]] = {}
    for i, g in enumerate(src_groups):
        if g:
            members.setdefault(g, []).append(i)
    # best[i', g]: the best score of source field i' inside target group g
    best = np.stack([p1[:, cols[g]].max(axis=1) for g in tg], axis=1)
    g_index = {g: k for k, g in enumerate(tg)}
    for i, g in enumerate(src_groups):
        if not g:
            continue
        sib = [k for k in members[g] if k != i]
        if not sib:
            continue
        s_ig = best[sib].mean(axis=0)
        for j, h in enumerate(tgt_groups):
            if not h:
                continue
            k = g_index[h]
            support[i, j] = s_ig[k]
            others = np.delete(s_ig, k)
            lead[i, j] = s_ig[k] - (others.max() if others.size else 0.0)
            flag[i, j] = 1.0
    return support, lead, flag


def context_features(
    p1: np.ndarray,
    src_groups: Sequence[str | None] | None = None,
    tgt_groups: Sequence[str | None] | None = None,
) -> np.ndarray:
    """Row/column and table context of each cell of a stage-1 score matrix.

    Shape (n_src, n_tgt, len(CONTEXT_NAMES)).  Besides how a cell ranks in its row and column, the
    context says whether the neighbouring fields (the one before and after, in declared order) match
    each other (``diag_support``: tables list street, city, state, zip in similar orders) and whether
    the field's siblings match the target's siblings (``group_support`` / ``group_lead``, see
    :func:`table_groups`).
    """
    n_s, n_t = p1.shape
    out = np.zeros((n_s, n_t, len(CONTEXT_NAMES)), dtype=np.float64)
    if n_s == 0 or n_t == 0:
        return out
    row_sorted = -np.sort(-p1, axis=1)
    col_sorted = -np.sort(-p1, axis=0)
    row_max = row_sorted[:, :1]
    col_max = col_sorted[:1, :]
    row_2nd = row_sorted[:, 1:2] if n_t > 1 else np.zeros((n_s, 1))
    col_2nd = col_sorted[1:2, :] if n_s > 1 else np.zeros((1, n_t))
    row_rank = np.argsort(np.argsort(-p1, axis=1, kind="stable"), axis=1, kind="stable")
    col_rank = np.argsort(np.argsort(-p1, axis=0, kind="stable"), axis=0, kind="stable")
    out[..., 0] = p1
    out[..., 1] = _logit(p1)
    out[..., 2] = p1 - row_max
    out[..., 3] = p1 - col_max
    out[..., 4] = np.minimum(row_rank, 5)
    out[..., 5] = np.minimum(col_rank, 5)
    # For the best cell: its lead over the runner-up; for others: how far behind the best.
    out[..., 6] = np.where(row_rank == 0, p1 - row_2nd, p1 - row_max)
    out[..., 7] = np.where(col_rank == 0, p1 - col_2nd, p1 - col_max)
    out[..., 8] = np.log1p(n_t)
    out[..., 9] = np.log1p(n_s)
    out[..., 10] = ((row_rank == 0) & (col_rank == 0)).astype(np.float64)
    padded = np.pad(p1, 1)
    out[..., 11] = np.maximum(padded[:-2, :-2], padded[2:, 2:])  # (i-1, j-1) and (i+1, j+1)
    if src_groups is not None and tgt_groups is not None:
        out[..., 12], out[..., 13], out[..., 14] = _group_context(p1, src_groups, tgt_groups)
    return out


@dataclass
class MappingModel:
    """Stage-1 and stage-2 ensembles, the calibration map and the auto-accept threshold."""

    stage1: TreeEnsemble
    stage2: TreeEnsemble
    calibration: Isotonic
    accept_threshold: float = 0.8
    min_candidate: float = 0.02
    feature_names: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    overlay: Overlay | None = None

    def score(
        self,
        x: np.ndarray,
        src_groups: Sequence[str | None] | None = None,
        tgt_groups: Sequence[str | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(stage-1 matrix, stage-2 matrix) of match probabilities for a feature tensor (n_s, n_t, F).

        The groups (:func:`table_groups` of the two tables' names) feed the sibling context.
        """
        n_s, n_t, n_f = x.shape
        if n_s == 0 or n_t == 0:
            empty = np.zeros((n_s, n_t))
            return empty, empty
        flat = x.reshape(-1, n_f)
        p1 = self.stage1.predict_proba(flat).reshape(n_s, n_t)
        ctx = context_features(p1, src_groups, tgt_groups)
        x2 = np.concatenate([x, ctx], axis=2).reshape(n_s * n_t, -1)
        p2 = self.stage2.predict_proba(x2)
        if self.overlay is not None:
            p2 = self.overlay.apply(p2, flat)
        return p1, p2.reshape(n_s, n_t)

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "format": "tongbu-mapping-model/1",
            "feature_names": list(self.feature_names),
            "context_names": list(CONTEXT_NAMES),
            "accept_threshold": self.accept_threshold,
            "min_candidate": self.min_candidate,
            "meta": self.meta,
            "stage1": self.stage1.to_json(),
            "stage2": self.stage2.to_json(),
            "calibration": self.calibration.to_json(),
        }

    def save(self, path: Path | None = None) -> Path:
        """Write the model as compact JSON."""
        path = path or MODEL_FILE
        path.write_text(json.dumps(self.to_json(), separators=(",", ":")), encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MappingModel:
        """Inverse of :meth:`to_json`."""
        return cls(
            stage1=TreeEnsemble.from_json(data["stage1"]),
            stage2=TreeEnsemble.from_json(data["stage2"]),
            calibration=Isotonic.from_json(data["calibration"]),
            accept_threshold=float(data.get("accept_threshold", 0.8)),
            min_candidate=float(data.get("min_candidate", 0.02)),
            feature_names=tuple(data.get("feature_names", ())),
            meta=dict(data.get("meta", {})),
        )

    @classmethod
    def load(cls, path: Path | None = None) -> MappingModel:
        """Load the shipped model (or another model file)."""
        return cls.from_json(json.loads((path or MODEL_FILE).read_text(encoding="utf-8")))


_DEFAULT: MappingModel | None = None


def default_model() -> MappingModel:
    """The shipped model, loaded once per process."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = MappingModel.load()
    return _DEFAULT
