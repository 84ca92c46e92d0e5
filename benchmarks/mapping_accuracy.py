"""Field-mapping accuracy: our suggester vs the shared baselines, through the shared scorer, in one run.

    .venv/bin/python benchmarks/mapping_accuracy.py                      # table + ratios
    .venv/bin/python benchmarks/mapping_accuracy.py --json out.json      # also machine-readable
    .venv/bin/python benchmarks/mapping_accuracy.py --baseline-python /path/to/venv/bin/python

* Every tool runs through ``../shared/mapping-bench/score.py`` (the scorer's own numbers, same pairs),
  on the dev set and then on the honest held-out splits ``benchmarks/data/heldout_pairs`` (A, reported
  after each change) and ``benchmarks/data/heldout_final`` (B, the final figure); ours alone on the
  ``glossary_covered_pairs`` (a lookup test, reported apart).
* Leave-one-source-system-out on dev with the held-out system's glossary entries removed (in-process).
* Baselines (``baselines.py fuzzy | coma | coma_inst | jaccard``) need pandas, rapidfuzz and
  valentine==1.0.1; give a Python that has them with ``--baseline-python`` (or ``MAPPING_BASELINE_PYTHON``).
  A baseline whose dependencies are missing is reported as skipped, not silently dropped.
* Latency: in-process seconds per 50×50 pair (profiles → suggestions) and the end-to-end CLI time.
* Learning curve: top-1 on a system pair after k accepted review decisions, the "rejected is never first
  again" check, and the effect of one reviewed pair on the next pair of the same systems.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _bench() -> Path:
    """$MAPPING_BENCH, or ``shared/mapping-bench`` beside the checkout or one level up (worktrees)."""
    if os.environ.get("MAPPING_BENCH"):
        return Path(os.environ["MAPPING_BENCH"])
    for base in (ROOT.parent, ROOT.parent.parent):
        if (base / "shared" / "mapping-bench").is_dir():
            return base / "shared" / "mapping-bench"
    return ROOT.parent / "shared" / "mapping-bench"


BENCH = _bench()
DATA = ROOT / "benchmarks" / "data"
BASELINES = ("fuzzy", "coma", "coma_inst", "jaccard")


def run_scorer(name: str, cmd: str, pairs: Path, timeout: float = 120.0) -> dict[str, Any]:
    """Run the shared scorer for one tool; returns its JSON report (plus the printed last line)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{name}.json"
        proc = subprocess.run(
            [
                sys.executable,
                str(BENCH / "score.py"),
                "--pairs",
                str(pairs),
                "--cmd",
                cmd,
                "--json-out",
                str(out),
                "--timeout",
                str(timeout),
                "--quiet",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0 or not out.exists():
            return {"error": (proc.stderr or proc.stdout).strip()[-500:]}
        report = json.loads(out.read_text(encoding="utf-8"))
        report["table"] = proc.stdout
        return report


def baseline_available(python: str, method: str) -> str | None:
    """None when the baseline's imports work in ``python``; else the reason."""
    mods = "rapidfuzz" if method == "fuzzy" else "pandas, valentine"
    proc = subprocess.run([python, "-c", f"import {mods}"], capture_output=True, text=True, check=False)
    return (
        None
        if proc.returncode == 0
        else f"missing dependencies in {python}: {proc.stderr.strip().splitlines()[-1]}"
    )


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a scorer report."""
    m = report["micro"]
    return {
        "top1": m["top1"],
        "recall_at_3": m["recall_at_3"],
        "mrr": m["mrr"],
        "precision": m["precision"],
        "recall": m["recall"],
        "f1": m["f1"],
        "ece_top1": report["calibration"]["ece_top1"],
        "false_accept_rate": report["false_accept_rate_unmatched"],
        "sec_per_pair": report["sec_per_pair"],
        "sec_p95": report["sec_p95"],
        "failures": len(report["failures"]),
        "by_naming_style": {k: v["micro"]["top1"] for k, v in report["by_naming_style"].items()},
        "by_family": {k: v["micro"]["top1"] for k, v in report["by_family"].items()},
        "by_labels": {k: v["micro"]["top1"] for k, v in report["by_labels"].items()},
        "n_pairs": report.get("n_pairs"),
        "n_gt": report.get("n_gt"),
    }


# ----------------------------------------------------------------------------- latency


def latency(pairs: Path, repeats: int = 3) -> dict[str, Any]:
    """In-process seconds per pair for the pairs closest to 50×50 fields, and a synthetic 50×50 pair."""
    from mappings.suggest.engine import Suggester
    from mappings.suggest.profiles import parse_profile

    sug = Suggester()
    files = sorted(pairs.glob("*.json"))
    sized = []
    for fn in files:
        p = json.loads(fn.read_text(encoding="utf-8"))
        sized.append(
            (abs(len(p["source"]["fields"]) - 50) + abs(len(p["target"]["fields"]) - 50), fn.name, p)
        )
    sized.sort()
    out = {}
    for _, name, p in sized[:3]:
        src, tgt = parse_profile(p["source"]), parse_profile(p["target"])
        sug.suggest(src, tgt)  # warm caches the way a CLI process would not: report the cold run too
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            sug.suggest(parse_profile(p["source"]), parse_profile(p["target"]))
            times.append(time.perf_counter() - t0)
        out[name] = {"fields": f"{len(src.fields)}x{len(tgt.fields)}", "seconds": round(min(times), 4)}
    return out


def cli_latency(pairs: Path, cmd_tpl: str) -> dict[str, float]:
    """End-to-end seconds of the CLI (interpreter start-up included) on the largest dev pair."""
    biggest = max(
        pairs.glob("*.json"),
        key=lambda fn: sum(len(json.loads(fn.read_text())[k]["fields"]) for k in ("source", "target")),
    )
    p = json.loads(biggest.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        s, t = Path(tmp) / "s.json", Path(tmp) / "t.json"
        s.write_text(json.dumps(p["source"], ensure_ascii=False), encoding="utf-8")
        t.write_text(json.dumps(p["target"], ensure_ascii=False), encoding="utf-8")
        cmd = cmd_tpl.replace("{source}", shlex.quote(str(s))).replace("{target}", shlex.quote(str(t)))
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(cmd, shell=True, capture_output=True, check=True)
            times.append(time.perf_counter() - t0)
    return {
        "pair": biggest.name,
        "fields": f"{len(p['source']['fields'])}x{len(p['target']['fields'])}",
        "seconds_min": round(min(times), 3),
        "seconds_max": round(max(times), 3),
    }


# ----------------------------------------------------------------------------- learning from review


def learning_curve(
    pairs: Path, pair_filter: str, steps: tuple[int, ...] = (0, 1, 2, 5, 10, 20), seed: int = 3
) -> dict[str, Any]:
    """Top-1 on the not-yet-reviewed fields after k accepted decisions (the reviewer accepts correct pairs).

    The fields are reviewed lowest-confidence first, as a reviewer working through the "needs review"
    list would.  Also checks that every rejected suggestion stops being first choice.
    """
    from mappings.suggest.engine import Decision, Suggester
    from mappings.suggest.profiles import parse_profile

    fn = next(f for f in sorted(pairs.glob("*.json")) if pair_filter in f.name)
    p = json.loads(fn.read_text(encoding="utf-8"))
    src, tgt = parse_profile(p["source"]), parse_profile(p["target"])
    gt = {s: t for s, t in p["ground_truth"]}
    sug = Suggester()
    scored = sug.score(src, tgt)
    base = sug.decide(scored, [])
    order = sorted(
        gt,
        key=lambda s: next(
            (x.candidates[0].confidence for x in base.suggestions if x.source == s and x.candidates), 0.0
        ),
    )
    random.Random(seed).shuffle(order[len(order) // 2 :])
    curve = []
    for k in steps:
        if k > len(order):
            break
        decisions = [Decision(s, gt[s], True) for s in order[:k]]
        res = sug.decide(scored, decisions)
        rest = [s for s in gt if s not in set(order[:k])]
        first = {x.source: (x.candidates[0].target if x.candidates else None) for x in res.suggestions}
        hits = sum(first.get(s) == gt[s] for s in rest)
        all_hits = sum(first.get(s) == gt[s] for s in gt)
        curve.append(
            {
                "accepted": k,
                "top1_unreviewed": round(hits / len(rest), 4) if rest else None,
                "top1_all": round(all_hits / len(gt), 4),
                "auto_accepted": len(res.mapping),
            }
        )
    # Rejections: reject every wrong first choice, then check none of them is first again.
    wrong = [
        Decision(x.source, x.candidates[0].target, False)
        for x in base.suggestions
        if x.candidates and gt.get(x.source) != x.candidates[0].target
    ]
    after = sug.decide(scored, wrong)
    first_after = {x.source: x.candidates[0].target if x.candidates else None for x in after.suggestions}
    still_first = sum(first_after.get(d.source) == d.target for d in wrong)
    fixed = sum(first_after.get(d.source) == gt.get(d.source) for d in wrong if d.source in gt)
    return {
        "pair": fn.name,
        "curve": curve,
        "rejected": len(wrong),
        "rejected_still_first": still_first,
        "fixed_by_rejection": fixed,
    }


def transfer(pairs: Path, first: str, second: str) -> dict[str, Any]:
    """Review pair ``first`` completely, then suggest for ``second`` (same systems) with those decisions."""
    from mappings.suggest.engine import Decision, Suggester
    from mappings.suggest.profiles import parse_profile

    fa = next(f for f in sorted(pairs.glob("*.json")) if first in f.name)
    fb = next(f for f in sorted(pairs.glob("*.json")) if second in f.name)
    pa, pb = json.loads(fa.read_text(encoding="utf-8")), json.loads(fb.read_text(encoding="utf-8"))
    sug = Suggester()
    sa = sug.score(parse_profile(pa["source"]), parse_profile(pa["target"]))
    ra = sug.decide(sa, [])
    gta = dict(map(tuple, pa["ground_truth"]))
    decisions = [Decision(s, t, True) for s, t in gta.items()]
    decisions += [
        Decision(x.source, x.candidates[0].target, False)
        for x in ra.suggestions
        if x.candidates and gta.get(x.source) != x.candidates[0].target
    ]
    gtb = dict(map(tuple, pb["ground_truth"]))
    sb = sug.score(parse_profile(pb["source"]), parse_profile(pb["target"]))

    def top1(res: Any) -> float:
        first = {x.source: x.candidates[0].target if x.candidates else None for x in res.suggestions}
        return round(sum(first.get(s) == t for s, t in gtb.items()) / len(gtb), 4)

    before = sug.decide(sb, [])
    # Decisions about the same objects of the same system pair apply in full.
    after = sug.decide(sb, decisions)
    return {
        "reviewed": fa.name,
        "next": fb.name,
        "decisions": len(decisions),
        "top1_before": top1(before),
        "top1_after": top1(after),
    }


def compare(pairs: Path, a: argparse.Namespace, results: dict[str, Any], baselines: bool = True) -> bool:
    """Our suggester and every available baseline through the scorer on ``pairs``; fills ``results``."""
    results.setdefault("tools", {})
    results.setdefault("skipped", {})
    ours = run_scorer("tongbu", a.cmd, pairs)
    if "error" in ours:
        print("our suggester failed under the scorer:", ours["error"], file=sys.stderr)
        return False
    results["tools"]["tongbu"] = summarise(ours)
    results["scorer_table_tongbu"] = ours["table"]
    for method in [m for m in a.baselines.split(",") if m] if baselines else []:
        why = baseline_available(a.baseline_python, method)
        if why:
            results["skipped"][method] = why
            continue
        cmd = f"{shlex.quote(a.baseline_python)} {shlex.quote(str(BENCH / 'baselines.py'))} {method} --source {{source}} --target {{target}}"
        rep = run_scorer(method, cmd, pairs)
        if "error" in rep:
            results["skipped"][method] = "scorer failed: " + rep["error"]
            continue
        if rep.get("failures") and len(rep["failures"]) == rep.get("n_pairs"):
            results["skipped"][method] = "every pair failed: " + rep["failures"][0]["error"][:200]
            continue
        results["tools"][method] = summarise(rep)
    return True


def loso_without_glossary(pairs: Path) -> dict[str, Any]:
    """Leave-one-source-system-out on the dev pairs, each held-out system read without its glossary entries.

    Each fold refits the model (both stages, calibration from the other folds, threshold) without the
    held-out system, and reads that system's pairs with ``Glossary.without`` every entry equal to one
    of their names, labels or answers (``training.held_out_forms``).  In-process, same metric
    definitions as the scorer (``training.score_results``).
    """
    from mappings.suggest import training

    data = training.load_pairs(pairs)
    data += training.augment(data)
    t0 = time.time()
    res = training.cross_validate(data, lambda p: p.source_system, verbose=False, strip_glossary=True)
    m = res["micro"]
    return {
        "top1": m["top1"],
        "recall_at_3": m["recall_at_3"],
        "mrr": m["mrr"],
        "precision": m["precision"],
        "recall": m["recall"],
        "f1": m["f1"],
        "ece_top1": res["ece_top1"],
        "false_accept_rate": res["false_accept_rate"],
        "n_gt": m["n_gt"],
        "by_family": {k: v["top1"] for k, v in res["by_family"].items()},
        "seconds": round(time.time() - t0, 1),
    }


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default=str(BENCH / "pairs"))
    ap.add_argument(
        "--cmd",
        default=f"{shlex.quote(sys.executable)} -m tongbu.suggest_cli suggest --source {{source}} --target {{target}} --format json --no-history",
        help="command template for our suggester",
    )
    ap.add_argument("--baseline-python", default=os.environ.get("MAPPING_BASELINE_PYTHON", sys.executable))
    ap.add_argument(
        "--baselines", default=",".join(BASELINES), help="comma-separated subset of " + ", ".join(BASELINES)
    )
    ap.add_argument("--json", dest="json_out", default=None, help="write all results as JSON here")
    ap.add_argument("--skip-learning", action="store_true")
    ap.add_argument(
        "--skip-loso",
        action="store_true",
        help="skip leave-one-system-out without glossary entries (minutes)",
    )
    ap.add_argument(
        "--heldout",
        default=str(DATA / "heldout_pairs"),
        help="held-out split A: systems outside the dev set, reported after each change ('' to skip)",
    )
    ap.add_argument(
        "--final",
        default=str(DATA / "heldout_final"),
        help="held-out split B: same construction, kept for the final figure ('' to skip)",
    )
    ap.add_argument(
        "--covered",
        default=str(DATA / "glossary_covered_pairs"),
        help="the older pairs whose names are mostly glossary entries: ours only, reported apart ('' to skip)",
    )
    a = ap.parse_args(argv)
    pairs = Path(a.pairs)
    os.chdir(ROOT)
    results: dict[str, Any] = {"pairs": str(pairs)}
    t0 = time.time()
    ok = compare(pairs, a, results)
    if not ok:
        return 1
    for key, folder, baselines in (
        ("heldout", a.heldout, True),
        ("final", a.final, True),
        ("covered", a.covered, False),
    ):
        if folder and Path(folder).is_dir():
            part: dict[str, Any] = {"pairs": folder}
            if compare(Path(folder), a, part, baselines=baselines):
                results[key] = part
    if not a.skip_loso:
        results["loso_no_glossary"] = loso_without_glossary(pairs)
    results["latency_inprocess"] = latency(pairs)
    results["latency_cli"] = cli_latency(pairs, a.cmd)
    if not a.skip_learning:
        results["learning_curve"] = learning_curve(pairs, "dev_002")
        results["learning_transfer"] = transfer(pairs, "dev_001", "dev_006")
    results["wall_seconds"] = round(time.time() - t0, 1)
    _print(results)
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


def _print_tools(results: dict[str, Any]) -> None:
    tools = results["tools"]
    print(
        f"{'tool':<12} {'top1':>6} {'r@3':>6} {'MRR':>6} {'P':>6} {'R':>6} {'F1':>6} {'ECE':>6} {'FA':>6} {'s/pair':>7}"
    )
    for name, r in tools.items():
        ece = "  n/a" if r["ece_top1"] is None else f"{r['ece_top1']:.3f}"
        print(
            f"{name:<12} {r['top1']:6.3f} {r['recall_at_3']:6.3f} {r['mrr']:6.3f} {r['precision']:6.3f} {r['recall']:6.3f} "
            f"{r['f1']:6.3f} {ece:>6} {r['false_accept_rate']:6.3f} {r['sec_per_pair']:7.2f}"
        )
    ours = tools["tongbu"]
    for name, r in tools.items():
        if name == "tongbu":
            continue
        ratio = {k: (ours[k] / r[k] if r[k] else float("inf")) for k in ("top1", "recall_at_3", "f1")}
        print(
            f"ratio tongbu/{name}: top1 x{ratio['top1']:.2f}  r@3 x{ratio['recall_at_3']:.2f}  F1 x{ratio['f1']:.2f}"
        )
    for name, r in tools.items():
        if r["failures"]:
            print(
                f"note: {name} failed on {r['failures']} pair(s) (scored all-wrong by the scorer; e.g. Valentine's "
                "Coma with instances needs NLTK data that cannot be downloaded offline)"
            )
    for name, why in results["skipped"].items():
        print(f"skipped {name}: {why}")
    print(
        f"{ours['n_pairs']} pairs, {ours['n_gt']} ground-truth fields; FA = false accepts among source fields with no match"
    )
    print("top-1 by naming style:", ", ".join(f"{k}={v:.2f}" for k, v in ours["by_naming_style"].items()))
    print("top-1 by labels:      ", ", ".join(f"{k}={v:.2f}" for k, v in ours["by_labels"].items()))
    print("top-1 by family:      ", ", ".join(f"{k}={v:.2f}" for k, v in ours["by_family"].items()))


def _print(results: dict[str, Any]) -> None:
    print(f"== dev set ({results['pairs']})")
    _print_tools(results)
    if "heldout" in results:
        print(f"== held-out systems, split A, reported after each change ({results['heldout']['pairs']})")
        _print_tools(results["heldout"])
    if "final" in results:
        print(f"== held-out systems, split B, final figure only ({results['final']['pairs']})")
        _print_tools(results["final"])
    if "loso_no_glossary" in results:
        r = results["loso_no_glossary"]
        print("== dev, leave-one-source-system-out, held-out system's glossary entries removed (in-process)")
        print(
            f"tongbu       top1 {r['top1']:.3f} r@3 {r['recall_at_3']:.3f} MRR {r['mrr']:.3f} P {r['precision']:.3f} "
            f"R {r['recall']:.3f} F1 {r['f1']:.3f} ECE {r['ece_top1']:.3f} FA {r['false_accept_rate']:.3f} "
            f"({r['n_gt']} fields, {r['seconds']:.0f} s; baselines: the dev rows above, they use no glossary)"
        )
        print("top-1 by family:      ", ", ".join(f"{k}={v:.2f}" for k, v in r["by_family"].items()))
    if "covered" in results:
        r = results["covered"]["tools"]["tongbu"]
        print(
            f"== glossary-covered pairs (older held-out, names mostly glossary entries; a lookup test, not generalisation): "
            f"top1 {r['top1']:.3f} r@3 {r['recall_at_3']:.3f} P {r['precision']:.3f} R {r['recall']:.3f} F1 {r['f1']:.3f} "
            f"FA {r['false_accept_rate']:.3f} ({r['n_pairs']} pairs, {r['n_gt']} fields)"
        )
    print(
        "latency in-process:",
        ", ".join(
            f"{k[:7]} {v['fields']} {v['seconds']:.3f}s" for k, v in results["latency_inprocess"].items()
        ),
    )
    cl = results["latency_cli"]
    print(
        f"latency CLI end-to-end: {cl['pair']} {cl['fields']} {cl['seconds_min']:.2f}-{cl['seconds_max']:.2f}s"
    )
    if "learning_curve" in results:
        lc = results["learning_curve"]
        print(
            f"learning curve ({lc['pair']}): "
            + ", ".join(f"k={c['accepted']}: {c['top1_unreviewed']}" for c in lc["curve"])
        )
        print(
            f"  rejected first choices: {lc['rejected']}, still first after rejection: {lc['rejected_still_first']}, "
            f"now correct: {lc['fixed_by_rejection']}"
        )
        tr = results["learning_transfer"]
        print(
            f"  review {tr['reviewed'][:7]} → suggest {tr['next'][:7]}: top-1 {tr['top1_before']} → {tr['top1_after']}"
        )


if __name__ == "__main__":
    sys.exit(main())
