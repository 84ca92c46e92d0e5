"""Check that a held-out pair folder is honest: none of its field names is known to the suggester.

    python benchmarks/data/check_heldout.py benchmarks/data/heldout_pairs benchmarks/data/heldout_final

A held-out pair measures generalisation only if neither its field names nor its answers (the target
names of its ground truth) were looked up, learned or fitted on.  For every source and target field
name of every pair this reports a violation when the name, its normalised form (words split on
separators, path dots, camelCase and digits, lower-cased, joined with a space or with nothing) is

* a surface form of ``mappings/suggest/data/glossary.txt`` (English form, Chinese form, term id, ERP
  code or the words of an ERP code's expansion), or
* the name or normalised name of a field in any dev pair (``../shared/mapping-bench/pairs``), which
  is what the model is fitted on.

Exit status 1 with one line per violation; 0 when the folders are clean.  Stdlib only (the glossary
file is parsed here, not through the suggester, so a bug there cannot hide a violation).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import unicodedata
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GLOSSARY = ROOT / "mappings" / "suggest" / "data" / "glossary.txt"


def _bench() -> Path:
    """The shared benchmark folder: $MAPPING_BENCH, or ``shared/mapping-bench`` beside or above the checkout."""
    if os.environ.get("MAPPING_BENCH"):
        return Path(os.environ["MAPPING_BENCH"])
    for base in (ROOT.parent, ROOT.parent.parent):
        if (base / "shared" / "mapping-bench").is_dir():
            return base / "shared" / "mapping-bench"
    return ROOT.parent / "shared" / "mapping-bench"


DEV_PAIRS = _bench() / "pairs"

_SEP = re.compile(r"[\s_\-:#@$%&*+=|,;()\[\]{}<>'\"?!~`^]+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+|[^\x00-\x7f]+")
_PATH = re.compile(r"[./\\\[\]]+")


def words(text: str) -> list[str]:
    """Lower-cased words of an identifier or phrase (snake, camel, Pascal, digits; CJK runs kept whole)."""
    text = unicodedata.normalize("NFKC", text)
    out: list[str] = []
    for chunk in _SEP.split(text):
        out.extend(w.lower() for w in _CAMEL.findall(chunk))
    return out


def forms(name: str) -> set[str]:
    """The raw name and its normalised forms (a dotted path is normalised as a whole: ``billing.city``
    → ``billing city``, ``billingcity``)."""
    name = unicodedata.normalize("NFKC", name).strip()
    w = words(" ".join(p for p in _PATH.split(name) if p))
    out = {name.lower(), " ".join(w), "".join(w)}
    out.discard("")
    return out


def glossary_forms(path: Path = GLOSSARY) -> set[str]:
    """Every surface form of the glossary, normalised the same way as field names."""
    out: set[str] = set()

    def add(surface: str) -> None:
        surface = surface.strip()
        if surface:
            w = words(surface)
            out.update({surface.lower(), " ".join(w), "".join(w)})

    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "~")):
            continue
        if line.startswith("@"):
            code, _, expansion = line[1:].partition("|")
            add(code)
            add(expansion)
            continue
        cols = [c.strip() for c in line.split("|")]
        add(cols[0].replace("_", " "))
        for col in cols[1:3]:
            for surface in col.split(","):
                add(surface)
    out.discard("")
    return out


def dev_forms(folder: Path = DEV_PAIRS) -> set[str]:
    """Normalised forms of every field name in the dev pairs."""
    out: set[str] = set()
    for fn in sorted(folder.glob("*.json")):
        p = json.loads(fn.read_text(encoding="utf-8"))
        for side in ("source", "target"):
            for f in p[side]["fields"]:
                out |= forms(f["name"])
    return out


def violations(
    folders: Iterable[Path], glossary: set[str] | None = None, dev: set[str] | None = None
) -> list[str]:
    """One line per field name of the held-out pairs that the glossary or the dev pairs contain."""
    glossary = glossary_forms() if glossary is None else glossary
    dev = dev_forms() if dev is None else dev
    out = []
    for folder in folders:
        for fn in sorted(Path(folder).glob("*.json")):
            p = json.loads(fn.read_text(encoding="utf-8"))
            for side in ("source", "target"):
                for f in p[side]["fields"]:
                    fs = forms(f["name"])
                    if fs & glossary:
                        out.append(
                            f"{fn.name}: {side} {f['name']!r} is a glossary entry ({sorted(fs & glossary)[0]!r})"
                        )
                    if fs & dev:
                        out.append(
                            f"{fn.name}: {side} {f['name']!r} is a dev-pair field name ({sorted(fs & dev)[0]!r})"
                        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path)
    a = ap.parse_args(argv)
    missing = [str(f) for f in a.folders if not f.is_dir()]
    if missing:
        print(f"error: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    if not DEV_PAIRS.is_dir():
        print(f"error: dev pairs not found at {DEV_PAIRS} (set MAPPING_BENCH)", file=sys.stderr)
        return 2
    bad = violations(a.folders)
    for line in bad:
        print(line)
    n = sum(len(list(f.glob("*.json"))) for f in a.folders)
    print(f"{n} pair files, {len(bad)} violations", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
