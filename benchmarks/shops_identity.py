"""Buyer identity resolution on a generated, labelled set: the matcher against a rule-only baseline.

The set (``benchmarks/data/shops_buyers.py``, independent of the matcher's code and tables) has
``--persons`` people with households, namesakes, masked twins, +86 prefixes, full-width digits, typos
and masked Youzan phones. CRM records are known persons; shop records are decided in order against
them and each other. A link is right when the person it names (the founding record of that person
cluster) is the record's own person.

* precision = right links / links; recall = right links / records whose person was already known;
* reviews: records sent to the review queue (never counted as right);
* baseline: link on the exact phone string or exact lower-cased e-mail, nothing else.

    python benchmarks/shops_identity.py [--persons 3000] [--seed 12] [--json]

Targets: precision >= 0.99, recall >= 0.95.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def evaluate(records: list[dict[str, Any]], decide: Any) -> dict[str, Any]:
    """Run ``decide(known, stream)`` -> one (kind, ref) per stream record; score it against the labels."""
    person_of = {r["key"]: r["person"] for r in records}
    known = [r for r in records if r["source"] == "crm"]
    stream = [r for r in records if r["source"] != "crm"]
    started = time.perf_counter()
    decisions = decide(known, stream)
    seconds = time.perf_counter() - started
    seen = {r["person"] for r in known}
    links = right = linkable = reviews = 0
    wrong: list[tuple[str, str]] = []
    for record, (kind, ref) in zip(stream, decisions, strict=True):
        if record["person"] in seen:
            linkable += 1
        seen.add(record["person"])
        if kind == "review":
            reviews += 1
        elif kind == "match":
            links += 1
            if person_of[ref] == record["person"]:
                right += 1
            elif len(wrong) < 5:
                wrong.append((record["key"], ref))
    return {
        "records": len(stream),
        "known": len(known),
        "linkable": linkable,
        "links": links,
        "precision": round(right / links, 4) if links else 0.0,
        "recall": round(right / linkable, 4) if linkable else 0.0,
        "reviews": reviews,
        "review_rate": round(reviews / len(stream), 4),
        "seconds": round(seconds, 3),
        "wrong_examples": wrong,
    }


def matcher_decide(known: list[dict[str, Any]], stream: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    from connectors.kit.identity import Buyer, decide_all

    def buyer(r: dict[str, Any]) -> Buyer:
        return Buyer(r["key"], name=r["name"], phone=r["phone"], email=r["email"], address=r["address"])

    out = decide_all([buyer(r) for r in stream], [(r["key"], buyer(r)) for r in known])
    return [(d.kind, d.ref) for d in out]


def baseline_decide(
    known: list[dict[str, Any]], stream: list[dict[str, Any]]
) -> list[tuple[str, str | None]]:
    by_phone: dict[str, str] = {}
    by_email: dict[str, str] = {}

    def remember(r: dict[str, Any], ref: str) -> None:
        if r["phone"]:
            by_phone.setdefault(r["phone"].strip(), ref)
        if r["email"]:
            by_email.setdefault(r["email"].strip().lower(), ref)

    for r in known:
        remember(r, r["key"])
    out: list[tuple[str, str | None]] = []
    for r in stream:
        ref = (by_phone.get(r["phone"].strip()) if r["phone"] else None) or (
            by_email.get(r["email"].strip().lower()) if r["email"] else None
        )
        out.append(("match", ref) if ref else ("new", None))
        remember(r, ref or r["key"])
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--persons", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from benchmarks.data.shops_buyers import generate

    records = generate(args.persons, args.seed)
    result = {
        "persons": args.persons,
        "seed": args.seed,
        "buyers": sum(r["source"] != "crm" for r in records),
        "masked": sum(bool(r["phone"] and "*" in r["phone"]) for r in records),
        "matcher": evaluate(records, matcher_decide),
        "baseline_exact_phone_email": evaluate(records, baseline_decide),
    }
    m = result["matcher"]
    result["meets_targets"] = m["precision"] >= 0.99 and m["recall"] >= 0.95
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        for name in ("matcher", "baseline_exact_phone_email"):
            r = result[name]
            print(
                f"{name:28s} precision {r['precision']:.4f}  recall {r['recall']:.4f}  "
                f"reviews {r['reviews']} ({r['review_rate']:.1%})  links {r['links']}/{r['linkable']}  {r['seconds']}s"
            )
        print(
            f"buyers {result['buyers']} (masked phones {result['masked']}); targets met: {result['meets_targets']}"
        )
    return result


if __name__ == "__main__":
    main()
