"""Build the honest held-out pairs from ``heldout_specs.py`` into ``heldout_pairs/`` and ``heldout_final/``.

    python benchmarks/data/build_heldout.py            # writes both folders, prints what it dropped

A field whose name (or normalised name, or leaf) is a glossary entry or a dev-pair field name is
dropped from its profile before the pair is written (ground-truth lines that mention it go too), so
the written pairs pass ``check_heldout.py`` by construction; the dropped names are printed so the
choice stays visible.  Samples: source entities are 0…, a ``shared`` target's entities overlap half
of them, a ``disjoint`` target's are others.  Deterministic (no clock, no unseeded randomness).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from check_heldout import dev_forms, forms, glossary_forms  # noqa: E402
from heldout_specs import PAIRS  # noqa: E402
from heldout_values import values  # noqa: E402

FOLDERS = {"A": HERE / "heldout_pairs", "B": HERE / "heldout_final"}


def _field(spec: str, start: int, labels: bool, samples: bool, n: int) -> dict[str, Any]:
    name, typ, kind, label = spec.split("|", 3)
    if kind.startswith("enum:"):  # enum options contain '|': everything up to the last column
        kind, _, label = (kind + "|" + label).rpartition("|")
    return {
        "name": name,
        "type": typ,
        "label": (label or None) if labels else None,
        "samples": values(kind, start, n) if samples else [],
    }


def build(spec: dict[str, Any], banned: set[str]) -> tuple[dict[str, Any], list[str]]:
    """The pair file of one spec, and the names dropped as known to the suggester."""
    tags = spec["tags"]
    dropped: list[str] = []
    sides = {}
    for side, has_lab, has_smp, start in (
        ("source", tags["labels"] in ("source", "both"), tags["samples"] in ("source", "both"), 0),
        (
            "target",
            tags["labels"] == "both",
            tags["samples"] == "both",
            3 if tags.get("overlap") == "shared" else 300,
        ),
    ):
        system, obj, fields = spec[side]
        out = []
        for k, f in enumerate(fields):
            fld = _field(f, start, has_lab, has_smp, 4 + (k * 5) % 9)
            if forms(fld["name"]) & banned:
                dropped.append(f"{side}:{fld['name']}")
                continue
            out.append(fld)
        sides[side] = {"system": system, "object": obj, "fields": out}
    names = {s: {f["name"] for f in sides[s]["fields"]} for s in sides}
    gt = []
    for line in spec["gt"]:
        s, t = line.split(">")
        for side, n in (("source", s), ("target", t)):
            if not any(f.split("|", 1)[0] == n for f in spec[side][2]):
                raise ValueError(f"{spec['id']}: ground truth {line!r} names an unknown {side} field")
        if s in names["source"] and t in names["target"]:
            gt.append([s, t])
    pair = {"id": spec["id"], "family": spec["family"], **sides, "ground_truth": gt, "tags": tags}
    return pair, dropped


def build_all() -> list[tuple[Path, str, dict[str, Any], list[str]]]:
    """(file, text, pair, dropped names) of every spec, without writing anything."""
    banned = glossary_forms() | dev_forms()
    out = []
    for spec in PAIRS:
        pair, dropped = build(spec, banned)
        path = FOLDERS[spec["split"]] / f"{spec['id']}.json"
        out.append((path, json.dumps(pair, ensure_ascii=False, indent=1) + "\n", pair, dropped))
    return out


def main() -> int:
    """Write both splits."""
    built = build_all()
    for folder in FOLDERS.values():
        folder.mkdir(exist_ok=True)
        for old in folder.glob("hx_*.json"):
            old.unlink()
    for path, text, pair, dropped in built:
        path.write_text(text, encoding="utf-8")
        ns, nt, ng = len(pair["source"]["fields"]), len(pair["target"]["fields"]), len(pair["ground_truth"])
        print(
            f"{pair['id']}: {ns}x{nt}, {ng} matched, unmatched src {1 - ng / ns:.2f} tgt {1 - ng / nt:.2f}; "
            f"dropped {len(dropped)}: {', '.join(dropped)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
