"""Fitting the model, cross-validation and the refit from stored review decisions.

Development-time tool (needs scikit-learn, which the project already depends on):

    python -m mappings.suggest.training fit --pairs ../shared/mapping-bench/pairs   # writes data/model.json
    python -m mappings.suggest.training cv  --pairs ../shared/mapping-bench/pairs   # leave-one-system-out

The model learns how to *weigh* generic signals (term overlap, pinyin, value kinds, overlap...);
field names never enter it, so what it learns carries over to systems it has not seen.  The
cross-validation holds out whole source systems (and, separately, single pairs) to measure that.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import statistics
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mappings.suggest.engine import Suggester, SuggestResult
from mappings.suggest.features import FEATURE_NAMES
from mappings.suggest.glossary import default_glossary, surface_forms
from mappings.suggest.model import (
    CONTEXT_NAMES,
    Isotonic,
    MappingModel,
    Overlay,
    TreeEnsemble,
    context_features,
    table_groups,
)
from mappings.suggest.profiles import FieldProfile, TableProfile, parse_profile

GBDT_PARAMS: dict[str, Any] = {
    "max_iter": 400,
    "learning_rate": 0.05,
    "max_leaf_nodes": 10,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
    "random_state": 7,
}
# Evidence features may only raise the match probability (monotone +1); flags are free (0).
_INCREASING = {
    "exact_leaf",
    "leaf_terms",
    "leaf_terms_min",
    "all_terms",
    "all_terms_min",
    "label_label",
    "cross_name_label",
    "path_terms",
    "zh_dice",
    "pinyin",
    "pinyin_exact",
    "py_terms",
    "char_trigram",
    "type_compat",
    "expect_s2t",
    "expect_t2s",
    "kind_sim",
    "overlap_jaccard",
    "overlap_contain",
    "bigram_cos",
    "stats_sim",
    "leaf_head",
    "p1",
    "p1_logit",
    "row_gap",
    "col_gap",
    "row_second_gap",
    "col_second_gap",
    "mutual_best",
    "diag_support",
    "group_support",
    "group_lead",
}
_DECREASING = {"row_rank", "col_rank"}


def monotone(names: Sequence[str]) -> list[int]:
    """Monotonic constraints for the given feature names."""
    return [1 if n in _INCREASING else -1 if n in _DECREASING else 0 for n in names]


@dataclass
class PairData:
    """One benchmark pair with its features and labels."""

    id: str
    family: str
    tags: dict[str, Any]
    source: TableProfile
    target: TableProfile
    ground_truth: list[tuple[str, str]]
    x: np.ndarray
    y: np.ndarray
    augmented: bool = False

    @property
    def source_system(self) -> str:
        """Source system name (the group for leave-one-system-out)."""
        return self.source.system


def load_pairs(folder: str | Path, suggester: Suggester | None = None) -> list[PairData]:
    """Read benchmark pair files and compute their feature tensors."""
    sug = suggester or Suggester(model=_placeholder_model())
    out = []
    for fn in sorted(glob.glob(os.path.join(str(folder), "*.json"))):
        with open(fn, encoding="utf-8") as fh:
            p = json.load(fh)
        src = parse_profile(p["source"], fn + ":source")
        tgt = parse_profile(p["target"], fn + ":target")
        sp = sug.score(src, tgt)
        s_idx = {n: i for i, n in enumerate(src.names)}
        t_idx = {n: j for j, n in enumerate(tgt.names)}
        y = np.zeros((len(src.fields), len(tgt.fields)))
        gt = [(s, t) for s, t in p["ground_truth"]]
        for s, t in gt:
            y[s_idx[s], t_idx[t]] = 1.0
        out.append(PairData(p["id"], p["family"], p["tags"], src, tgt, gt, sp.x, y))
    return out


def _variant(table: TableProfile, labels: bool, samples: bool) -> TableProfile:
    return TableProfile(
        table.system,
        table.object,
        [
            FieldProfile(f.name, f.type, f.label if labels else None, list(f.samples) if samples else [])
            for f in table.fields
        ],
    )


def augment(pairs: Sequence[PairData], suggester: Suggester | None = None) -> list[PairData]:
    """Harder copies of each pair: without labels, and without the target's samples (cold start).

    Systems that are new to the suggester often come without labels and with an empty CRM, so the
    model sees the same correspondences with less evidence.  Copies keep the pair's source system,
    so leave-one-system-out never trains on a copy of a held-out pair.
    """
    sug = suggester or Suggester(model=_placeholder_model())
    out: list[PairData] = []
    for p in pairs:
        if p.augmented:
            continue
        variants = []
        if any(f.label for f in p.source.fields + p.target.fields):
            variants.append(("nolabels", _variant(p.source, False, True), _variant(p.target, False, True)))
        if any(f.samples for f in p.target.fields):
            variants.append(("coldstart", p.source, _variant(p.target, True, False)))
        for tag, src, tgt in variants:
            x = sug.score(src, tgt).x
            out.append(
                PairData(f"{p.id}#{tag}", p.family, p.tags, src, tgt, p.ground_truth, x, p.y, augmented=True)
            )
    return out


def _placeholder_model() -> MappingModel:
    flat = TreeEnsemble(0.0, 0.1, [])
    return MappingModel(flat, flat, Isotonic.identity(), feature_names=FEATURE_NAMES)


# ----------------------------------------------------------------------------- fitting


def _fit_gbdt(x: np.ndarray, y: np.ndarray, names: Sequence[str] = FEATURE_NAMES) -> TreeEnsemble:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    clf = HistGradientBoostingClassifier(monotonic_cst=monotone(names), early_stopping=False, **GBDT_PARAMS)
    # One OpenMP thread by default: on a shared machine, spinning OpenMP workers made a fit ~10x slower
    # (measured: a 6-pair fit 67 s with one thread, not finished after 10 min with the default).
    with threadpool_limits(limits=int(os.environ.get("TONGBU_FIT_THREADS", "1")), user_api="openmp"):
        clf.fit(x, y)
    return TreeEnsemble.from_hist_gbdt(clf)


def _flat(pairs: Sequence[PairData]) -> tuple[np.ndarray, np.ndarray]:
    xs = [p.x.reshape(-1, p.x.shape[-1]) for p in pairs if p.x.size]
    ys = [p.y.reshape(-1) for p in pairs if p.x.size]
    return np.concatenate(xs), np.concatenate(ys)


def inner_folds_of(pairs: Sequence[PairData], k: int) -> list[set[str]]:
    """Pair ids held out by each of ``k`` inner folds: whole source systems, largest first, dealt round.

    Stage 2 then learns how far to trust stage 1 on a system stage 1 has not seen (which is how it is
    used), not on a sibling pair of a known system.  With fewer systems than folds, pairs are dealt.
    """
    sizes = Counter(p.source_system for p in pairs)
    if len(sizes) < k:
        return [{p.id for p in pairs[i::k]} for i in range(k)]
    fold_of = {s: i % k for i, s in enumerate(sorted(sizes, key=lambda s: (-sizes[s], s)))}
    return [{p.id for p in pairs if fold_of[p.source_system] == i} for i in range(k)]


def fit_stages(pairs: Sequence[PairData], inner_folds: int = 3) -> tuple[TreeEnsemble, TreeEnsemble]:
    """Stage 1 on all pairs; stage 2 on stage-1 out-of-fold scores (so its context is realistic)."""
    x, y = _flat(pairs)
    stage1 = _fit_gbdt(x, y)
    oof: dict[str, np.ndarray] = {}
    for held in inner_folds_of(pairs, inner_folds):
        train = [p for p in pairs if p.id not in held]
        m = _fit_gbdt(*_flat(train))
        for p in pairs:
            if p.id in held:
                n_s, n_t, n_f = p.x.shape
                oof[p.id] = (
                    m.predict_proba(p.x.reshape(-1, n_f)).reshape(n_s, n_t)
                    if p.x.size
                    else np.zeros((n_s, n_t))
                )
    x2 = np.concatenate(
        [
            np.concatenate(
                [
                    p.x,
                    context_features(oof[p.id], table_groups(p.source.names), table_groups(p.target.names)),
                ],
                axis=2,
            ).reshape(-1, p.x.shape[-1] + len(CONTEXT_NAMES))
            for p in pairs
            if p.x.size
        ]
    )
    stage2 = _fit_gbdt(x2, y, tuple(FEATURE_NAMES) + CONTEXT_NAMES)
    return stage1, stage2


def fit_platt(conf: np.ndarray, correct: np.ndarray) -> Isotonic:
    """Platt scaling on the logit of the raw score, stored as a dense interpolation table.

    Smooth, so the auto-accept threshold can sit anywhere (isotonic maps collapse into few plateaus
    on a sample this size).
    """
    from sklearn.linear_model import LogisticRegression

    p = np.clip(conf, 1e-6, 1 - 1e-6)
    z = np.log(p / (1 - p)).reshape(-1, 1)
    lr = LogisticRegression(C=100.0).fit(z, correct.astype(int))
    grid = np.unique(
        np.concatenate([np.linspace(0, 1, 101), 1 - np.logspace(-6, -1, 40), np.logspace(-6, -1, 40)])
    )
    zg = np.log(np.clip(grid, 1e-6, 1 - 1e-6) / (1 - np.clip(grid, 1e-6, 1 - 1e-6)))
    yg = 1 / (1 + np.exp(-(lr.coef_[0, 0] * zg + lr.intercept_[0])))
    return Isotonic(grid, np.clip(yg, 0.001, 0.999))


def fit_isotonic(conf: np.ndarray, correct: np.ndarray) -> Isotonic:
    """Isotonic regression of correctness on confidence, stored as a compact interpolation table."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
    iso.fit(conf, correct)
    xs = np.asarray(iso.X_thresholds_, dtype=np.float64)
    ys = np.asarray(iso.y_thresholds_, dtype=np.float64)
    # Keep the table small: the curve's corner points.
    keep = (
        [0] + [k for k in range(1, len(xs) - 1) if ys[k] != ys[k - 1] or ys[k] != ys[k + 1]] + [len(xs) - 1]
    )
    xs, ys = xs[keep], ys[keep]
    # Avoid promising certainty the data cannot support (isotonic on a finite sample reaches 1.0).
    ys = np.clip(ys, 0.005, 0.995)
    return Isotonic(np.concatenate([[0.0], xs, [1.0]]), np.concatenate([[ys[0]], ys, [ys[-1]]]))


# ----------------------------------------------------------------------------- evaluation


def top1_points(pair: PairData, res: SuggestResult) -> list[tuple[float, float, bool]]:
    """(raw probability, confidence, correct) of the first candidate of every source field."""
    gt = dict(pair.ground_truth)
    out = []
    for s in res.suggestions:
        if s.candidates:
            c = s.candidates[0]
            out.append((c.probability, c.confidence, gt.get(s.source) == c.target))
    return out


def score_results(pairs: Sequence[PairData], results: Sequence[SuggestResult]) -> dict[str, Any]:
    """The benchmark scorer's metrics (micro + breakdowns + ECE), computed in-process."""
    rows = []
    calib: list[tuple[float, bool]] = []
    for p, r in zip(pairs, results, strict=True):
        gt = dict(p.ground_truth)
        ranked = {s.source: [c.target for c in s.candidates] for s in r.suggestions}
        top1 = r3 = 0
        rr = 0.0
        for s, t in p.ground_truth:
            c = ranked.get(s, [])
            if t in c:
                k = c.index(t) + 1
                top1 += k == 1
                r3 += k <= 3
                rr += 1 / k
        pred = {(m.source, m.target) for m in r.mapping}
        tp = len(pred & set(p.ground_truth))
        unmatched = [f.name for f in p.source.fields if f.name not in gt]
        false_accepts = len({m.source for m in r.mapping if m.source not in gt})
        for s in r.suggestions:
            if s.candidates:
                calib.append((s.candidates[0].confidence, gt.get(s.source) == s.candidates[0].target))
        rows.append(
            {
                "id": p.id,
                "family": p.family,
                "style": p.tags.get("naming_style"),
                "tstyle": p.tags.get("target_style"),
                "n": len(gt),
                "top1": top1,
                "r3": r3,
                "rr": rr,
                "tp": tp,
                "npred": len(pred),
                "unmatched": len(unmatched),
                "false_accepts": false_accepts,
            }
        )

    def agg(rs: list[dict[str, Any]]) -> dict[str, float]:
        n = sum(r["n"] for r in rs)
        tp = sum(r["tp"] for r in rs)
        npred = sum(r["npred"] for r in rs)
        prec = tp / npred if npred else 0.0
        rec = tp / n if n else 0.0
        return {
            "top1": sum(r["top1"] for r in rs) / n,
            "recall_at_3": sum(r["r3"] for r in rs) / n,
            "mrr": sum(r["rr"] for r in rs) / n,
            "precision": prec,
            "recall": rec,
            "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
            "n_gt": n,
        }

    out: dict[str, Any] = {"micro": agg(rows)}
    for key in ("family", "style", "tstyle"):
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            groups.setdefault(str(r[key]), []).append(r)
        out["by_" + key] = {k: agg(v) for k, v in sorted(groups.items())}
    out["ece_top1"] = ece(calib)
    n_unmatched = sum(r["unmatched"] for r in rows)
    # The scorer's false-accept rate: auto-accepted source fields that have no counterpart.
    out["false_accept_rate"] = sum(r["false_accepts"] for r in rows) / n_unmatched if n_unmatched else 0.0
    out["per_pair"] = rows
    return out


def ece(points: Sequence[tuple[float, bool]], bins: int = 10) -> float | None:
    """Expected calibration error with the scorer's 10 equal-width bins."""
    if not points:
        return None
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        sel = [(c, y) for c, y in points if lo <= c < hi or (b == bins - 1 and c == 1.0)]
        if sel:
            total += (
                len(sel)
                / len(points)
                * abs(statistics.mean(c for c, _ in sel) - statistics.mean(1.0 if y else 0.0 for _, y in sel))
            )
    return total


# Auto-accept precision asked of the held-out-system predictions (leave-one-system-out, read with and
# without the held-out system's glossary entries): an auto-accepted line on a new system must be right
# 97 times in 100.  (It was 0.935 while the held-out points were only read with the full glossary,
# which overstates how sure the model may be on a system whose names nobody wrote down.)
TARGET_PRECISION = 0.97
# ... and of the predictions on the systems the model was fitted on.  The threshold is the stricter
# of the two, so an auto-accepted pair on a known system pair is right at least 97 times in 100.
SEEN_PRECISION = 0.97


def in_sample_points(model: MappingModel, pairs: Sequence[PairData]) -> tuple[list[tuple[float, bool]], int]:
    """(raw top-1 probability, correct) on the pairs the model was fitted on, and their ground-truth count."""
    sug = Suggester(model=model)
    pts: list[tuple[float, bool]] = []
    n_gt = 0
    for p in pairs:
        if p.augmented:
            continue
        res = sug.decide(sug.score(p.source, p.target), [], threshold=2.0)
        pts.extend((prob, ok) for prob, _, ok in top1_points(p, res))
        n_gt += len(p.ground_truth)
    return pts, n_gt


def accept_threshold(
    calibration: Isotonic,
    held_out: Sequence[tuple[float, bool]],
    n_held_out: int,
    seen: Sequence[tuple[float, bool]],
    n_seen: int,
) -> float:
    """The stricter of the held-out and the seen-systems precision thresholds (calibrated confidences)."""
    a = choose_threshold([(float(calibration(c)), ok) for c, ok in held_out], n_held_out, TARGET_PRECISION)
    b = (
        choose_threshold([(float(calibration(c)), ok) for c, ok in seen], n_seen, SEEN_PRECISION)
        if seen
        else 0.0
    )
    return max(a, b)


def choose_threshold(
    points: Sequence[tuple[float, bool]], n_gt: int, target_precision: float = TARGET_PRECISION
) -> float:
    """Lowest calibrated-confidence threshold whose pooled auto-accept precision stays ≥ target."""
    pts = sorted(points, key=lambda t: -t[0])
    best = 0.95
    tp = n = 0
    best_f1 = -1.0
    for k, (conf, ok) in enumerate(pts):
        n += 1
        tp += ok
        if k + 1 < len(pts) and pts[k + 1][0] == conf:
            continue  # a threshold accepts every point with the same confidence
        prec = tp / n
        rec = tp / max(n_gt, 1)
        if prec >= target_precision:
            f1 = 2 * prec * rec / (prec + rec)
            if f1 > best_f1:
                best_f1, best = f1, conf
    return float(best)


def held_out_forms(pairs: Sequence[PairData]) -> set[str]:
    """Normalised forms of what a held-out system brings: its source names and labels, and the target
    names of its pairs (the answers).  Removing these from the glossary leaves it knowing nothing that
    was written for that system (``Glossary.without``)."""
    out: set[str] = set()
    for p in pairs:
        for f in p.source.fields:
            out |= surface_forms(f.name)
            if f.label:
                out |= surface_forms(f.label)
        for f in p.target.fields:
            out |= surface_forms(f.name)
    return out


Folds = dict[str, tuple[MappingModel, list[PairData], list[PairData]]]


def fit_folds(
    pairs: list[PairData],
    group_of: Callable[[PairData], str],
    verbose: bool = True,
    extra: Sequence[PairData] = (),
) -> Folds:
    """One model per held-out group, fitted on the other groups (and ``extra``): {group: (model, train, test)}."""
    groups = sorted({group_of(p) for p in pairs if not p.augmented})
    raw: Folds = {}
    for g in groups:
        t0 = time.time()
        train = [p for p in [*pairs, *extra] if group_of(p) != g]
        test = [p for p in pairs if group_of(p) == g and not p.augmented]
        s1, s2 = fit_stages(train)
        raw[g] = (MappingModel(s1, s2, Isotonic.identity(), feature_names=FEATURE_NAMES), train, test)
        if verbose:
            print(
                f"  fold {g}: {len(train)} train / {len(test)} test pairs, {time.time() - t0:.1f}s",
                file=sys.stderr,
            )
    return raw


def evaluate_folds(
    raw: Folds, strip_glossary: bool = False
) -> tuple[dict[str, Any], list[tuple[float, bool]]]:
    """Score each fold's held-out pairs with its model; calibration and threshold from the other folds.

    Returns the metrics and every out-of-fold (raw top-1 probability, correct) point.  With
    ``strip_glossary`` the held-out pairs are read with a glossary from which every entry that equals
    one of their names, labels or answers is removed (:func:`held_out_forms`): the fold then measures
    a system whose vocabulary nobody wrote down, as on a really new system.
    """
    oof_points: dict[str, list[tuple[float, bool]]] = {}
    scored: dict[str, list[tuple[PairData, Any]]] = {}
    for g, (model, _train, test) in raw.items():
        gloss = default_glossary().without(held_out_forms(test)) if strip_glossary else None
        sug = Suggester(model=model, glossary=gloss)
        scored[g] = []
        pts = []
        for p in test:
            sp = sug.score(p.source, p.target)
            res = sug.decide(sp, [], threshold=2.0)
            scored[g].append((p, sp))
            pts.extend((prob, ok) for prob, _, ok in top1_points(p, res))
        oof_points[g] = pts
    results: list[SuggestResult] = []
    ordered: list[PairData] = []
    for g, (model, train, _test) in raw.items():
        other = [pt for h, pts in oof_points.items() if h != g for pt in pts]
        cal = fit_platt(np.array([c for c, _ in other]), np.array([float(ok) for _, ok in other]))
        n_gt_other = sum(len(p.ground_truth) for h, (_m, _tr, t) in raw.items() if h != g for p in t)
        thr = accept_threshold(cal, other, n_gt_other, *in_sample_points(model, train))
        fold_model = MappingModel(
            model.stage1, model.stage2, cal, accept_threshold=thr, feature_names=model.feature_names
        )
        sug = Suggester(model=fold_model)
        for p, sp in scored[g]:
            results.append(sug.decide(sp, [], threshold=thr))
            ordered.append(p)
    return score_results(ordered, results), [pt for pts in oof_points.values() for pt in pts]


def cross_validate(
    pairs: list[PairData],
    group_of: Callable[[PairData], str],
    verbose: bool = True,
    extra: Sequence[PairData] = (),
    strip_glossary: bool = False,
) -> dict[str, Any]:
    """Hold out each group in turn; fit on the rest (model, calibration and threshold); score held-out pairs.

    ``extra`` pairs are training data only: added to every fold whose held-out group is not their
    own (a held-out system is never seen in training, wherever its pairs come from), never scored.
    ``strip_glossary``: see :func:`evaluate_folds`.
    """
    return evaluate_folds(fit_folds(pairs, group_of, verbose, extra), strip_glossary)[0]


def fit_final(
    pairs: list[PairData], cv_points: list[tuple[float, bool]] | None = None, n_cv_gt: int | None = None
) -> MappingModel:
    """Fit the shipped model on every pair; calibration and threshold from leave-one-system-out predictions.

    Without ``cv_points`` they are computed here: each source system held out once, read both with
    the glossary and with its own entries removed (the second is what a new system looks like), so
    the calibration and the threshold answer for systems the glossary does not know.  ``n_cv_gt`` is
    the number of ground-truth fields behind ``cv_points`` (for the threshold's F1).
    """
    s1, s2 = fit_stages(pairs)
    model = MappingModel(s1, s2, Isotonic.identity(), feature_names=FEATURE_NAMES)
    n_gt = sum(len(p.ground_truth) for p in pairs if not p.augmented)
    if cv_points is None:
        raw = fit_folds(pairs, lambda p: p.source_system, verbose=False)
        cv_points = evaluate_folds(raw, False)[1] + evaluate_folds(raw, True)[1]
        n_cv_gt = 2 * n_gt
    model.calibration = fit_platt(
        np.array([c for c, _ in cv_points]), np.array([float(ok) for _, ok in cv_points])
    )
    model.accept_threshold = accept_threshold(
        model.calibration, cv_points, n_cv_gt or n_gt, *in_sample_points(model, pairs)
    )
    model.meta = {
        "trained_on": f"{sum(not p.augmented for p in pairs)} pairs + {sum(p.augmented for p in pairs)} harder copies",
        "fitted": time.strftime("%Y-%m-%d"),
        "params": GBDT_PARAMS,
        "calibrated_on": "leave-one-source-system-out top-1 points, with and without the system's glossary entries",
    }
    return model


# ----------------------------------------------------------------------------- refit from decisions


def refit_overlay(rows: Sequence[tuple[list[float], float, bool]], l2: float = 4.0) -> Overlay:
    """Fit p' = σ(a·logit(p) + b + w·x) on stored decisions (features, base probability, accepted).

    Regularised towards the identity (a=1, b=0, w=0), so a handful of decisions nudges the model and
    many decisions reshape it.
    """
    if not rows:
        return Overlay()
    x = np.asarray([r[0] for r in rows], dtype=np.float64)
    p = np.clip(np.asarray([r[1] for r in rows], dtype=np.float64), 1e-4, 1 - 1e-4)
    y = np.asarray([1.0 if r[2] else 0.0 for r in rows])
    z0 = np.log(p / (1 - p))
    n_f = x.shape[1]
    theta = np.zeros(n_f + 2)
    theta[0] = 1.0
    prior = theta.copy()
    for _ in range(300):  # Newton steps of a ridge-penalised logistic regression
        z = theta[0] * z0 + theta[1] + x @ theta[2:]
        q = 1 / (1 + np.exp(-np.clip(z, -30, 30)))
        design = np.column_stack([z0, np.ones_like(z0), x])
        grad = design.T @ (q - y) + l2 * (theta - prior)
        hess = design.T @ (design * (q * (1 - q))[:, None]) + l2 * np.eye(n_f + 2)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-6:
            break
    return Overlay(a=float(theta[0]), b=float(theta[1]), w=theta[2:])


# ----------------------------------------------------------------------------- CLI


def _print_summary(name: str, res: dict[str, Any]) -> None:
    m = res["micro"]
    print(
        f"{name}: top1={m['top1']:.3f} r@3={m['recall_at_3']:.3f} mrr={m['mrr']:.3f} P={m['precision']:.3f} R={m['recall']:.3f} F1={m['f1']:.3f} ECE={res['ece_top1']:.3f} FA={res['false_accept_rate']:.3f}"
    )
    for key in ("by_style", "by_family", "by_tstyle"):
        print("   " + key + ": " + ", ".join(f"{k}={v['top1']:.2f}" for k, v in res[key].items()))


def _pair_number(pair_id: str) -> int:
    """``dev_017_…`` → 17; other ids (and their ``#copy`` suffixes) → a stable hash of the base id."""
    base = pair_id.split("#")[0]
    m = re.match(r"[a-z]+_(\d+)", base)
    return int(m.group(1)) if m else zlib.crc32(base.encode("utf-8"))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["fit", "cv"])
    ap.add_argument(
        "--pairs", required=True, nargs="+", help="folders of pair files (scored by cv, fitted on by fit)"
    )
    ap.add_argument(
        "--train-only",
        nargs="*",
        default=[],
        help="folders of further pairs that are only trained on (cv never scores them; fit uses them)",
    )
    ap.add_argument("--out", default=None, help="model file to write (default: the shipped data/model.json)")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--by", choices=["system", "pair", "both", "system-no-glossary"], default="both")
    ap.add_argument(
        "--no-augment", action="store_true", help="train on the pairs only, without their harder copies"
    )
    a = ap.parse_args(argv)
    t0 = time.time()
    pairs = [p for folder in a.pairs for p in load_pairs(folder)]
    extra = [p for folder in a.train_only for p in load_pairs(folder)]
    copies = [] if a.no_augment else augment(pairs)
    extra_copies = [] if a.no_augment else augment(extra)
    print(
        f"features for {len(pairs)} pairs, {len(extra)} train-only pairs and {len(copies) + len(extra_copies)} "
        f"harder copies in {time.time() - t0:.1f}s",
        file=sys.stderr,
    )
    pairs += copies
    extra += extra_copies
    if a.command == "cv":
        report: dict[str, Any] = {}
        if a.by in ("system", "both"):
            report["leave_one_system_out"] = cross_validate(pairs, lambda p: p.source_system, extra=extra)
            _print_summary("leave-one-source-system-out", report["leave_one_system_out"])
        if a.by == "system-no-glossary":
            report["leave_one_system_out_no_glossary"] = cross_validate(
                pairs, lambda p: p.source_system, extra=extra, strip_glossary=True
            )
            _print_summary(
                "leave-one-source-system-out, its glossary entries removed",
                report["leave_one_system_out_no_glossary"],
            )
        if a.by in ("pair", "both"):
            report["pairs_7fold"] = cross_validate(pairs, lambda p: str(_pair_number(p.id) % 7), extra=extra)
            _print_summary("7-fold over pairs", report["pairs_7fold"])
        if a.json_out:
            Path(a.json_out).write_text(json.dumps(report, indent=1, default=float), encoding="utf-8")
        return 0
    raw = fit_folds(pairs, lambda p: p.source_system, extra=extra)
    loso, pts = evaluate_folds(raw, False)
    loso_bare, pts_bare = evaluate_folds(raw, True)
    _print_summary("leave-one-source-system-out", loso)
    _print_summary("leave-one-source-system-out, its glossary entries removed", loso_bare)
    n_gt = sum(len(p.ground_truth) for p in pairs if not p.augmented)
    model = fit_final(pairs + extra, pts + pts_bare, 2 * n_gt)
    path = model.save(Path(a.out) if a.out else None)
    print(
        f"wrote {path} ({path.stat().st_size // 1024} kB), threshold {model.accept_threshold:.3f}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
