"""Tender feed accuracy against the simulator's truth: missed notices, parsed fields, subscription matching.

**Incremental window under anti-bot pages and GBK provinces.** The simulator serves ``--records``
notices (山东, 河南, 湖南 in GBK with no charset) and its anti-bot page above ``--antibot`` requests
per second; the feed (``pipelines.tenders.TenderFeed``, the product path) reads them all, then
``--rounds`` times ``--publish`` new notices appear and an incremental poll follows. Reported per
source (``html``, ``vendor``): notices missed, notices read twice into the history, and fields
that differ from the truth (every field of every notice: budget normalised, lots, items, dates).
Baseline in the same run: a naive scraper on the same site (``httpx`` ``response.text``, no
anti-bot check) — what the measures are for.

**Subscription matching.** ``--subscriptions`` random subscriptions (keywords any-of, exclude
words, regions, types, categories, buyer, budget range), drawn from their own seeded generator;
the expected matches are computed here from the truth, by a plain evaluator of the documented
semantics (not the product's matcher); the product's matches are the alerts it queued. Precision
and recall over every (subscription, notice) pair; baseline: keyword-in-title matching only.

    python benchmarks/tender_accuracy.py [--records 600] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.tender import parse  # noqa: E402
from connectors.tender.history import SubscriptionSpec, TenderHistory  # noqa: E402
from connectors.tender.simulator import TenderSimulator  # noqa: E402
from connectors.tender.simulator.data import PUBLIC_BODIES, SUBJECTS  # noqa: E402
from pipelines.project import load_project  # noqa: E402
from pipelines.tenders import TenderFeed  # noqa: E402
from tongbu.db import get_engine  # noqa: E402


def feed_for(folder: Path, sim: TenderSimulator, source: str) -> TenderFeed:
    config = sim.vendor_config() if source == "vendor" else sim.tap_config()
    config.update(request_interval=0, antibot_backoff=0.5, page_size=50)
    doc = {"connections": {"tender": {"connector": "tender", "config": config}}, "tenders": {"crm": False}}
    path = folder / f"{source}.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return TenderFeed(
        load_project(path), get_engine(f"sqlite:///{folder / (source + '.db')}"), batch_size=100
    )


def compare(history: TenderHistory, truth: list[dict[str, Any]]) -> dict[str, int]:
    stored = {r["id"]: r for r in history.records(n["id"] for n in truth)}
    fields = bad = 0
    for n in truth:
        record = stored.get(n["id"])
        if record is None:
            continue
        for key, value in n.items():
            if key.startswith("_"):
                continue
            fields += 1
            bad += record.get(key) != value
    return {"missed": len(truth) - len(stored), "fields_compared": fields, "fields_wrong": bad}


def incremental(
    sim_args: dict[str, Any], source: str, rounds: int, publish: int, folder: Path
) -> dict[str, Any]:
    with TenderSimulator(**sim_args) as sim:
        feed = feed_for(folder, sim, source)
        started = time.perf_counter()
        first = feed.poll()
        polls = [first]
        for _ in range(rounds):
            sim.publish(publish)
            polls.append(feed.poll())
        truth = sim.truth("notices")
        out = compare(feed.history, truth)
        out.update(
            notices=len(truth),
            read_twice=sum(p.new for p in polls) - feed.history.count(),
            antibot_pages=sum(p.antibot for p in polls),
            gbk_notices=sum(1 for n in truth if n["region"] in ("山东", "河南", "湖南")),
            seconds=round(time.perf_counter() - started, 1),
        )
        return out


def naive(sim_args: dict[str, Any]) -> dict[str, Any]:
    """A scraper without the measures: the search pages and detail pages read with response.text."""
    with TenderSimulator(**sim_args) as sim, httpx.Client(base_url=sim.base_url, timeout=30) as http:
        truth = {n["id"]: n for n in sim.truth("notices")}
        got: dict[int, dict[str, Any]] = {}
        for page in range(1, len(truth) // 20 + 2):
            try:
                _, items = parse.search_page(http.get("/bxsearch", params={"page_index": page}).text)
            except parse.PageError:
                continue  # the anti-bot page: this page of results is lost
            for item in items:
                try:
                    fields = parse.detail_page(http.get(item["url"].removeprefix(sim.base_url)).text)
                except parse.PageError:
                    continue
                got[item["id"]] = {**item, **fields}
        bad = fields_n = 0
        for nid, record in got.items():
            for key, value in truth[nid].items():
                if not key.startswith("_"):
                    fields_n += 1
                    bad += record.get(key) != value
        return {
            "notices": len(truth),
            "missed": len(truth) - len(got),
            "fields_compared": fields_n,
            "fields_wrong": bad,
        }


# -- subscriptions --------------------------------------------------------------------------------
WORDS = sorted(
    {w for s, _ in SUBJECTS for w in (s[:2], s[-2:], s[2:4] if len(s) > 5 else s[:2])}
    | {"软件", "医疗", "服务"}
)


def random_subscription(rng: random.Random, regions: list[str]) -> dict[str, Any]:
    spec: dict[str, Any] = {"keywords": rng.sample(WORDS, rng.randint(1, 3))}
    if rng.random() < 0.3:
        spec["exclude"] = [rng.choice(["终止", "更正", "服务", "设备", "工程"])]
    if rng.random() < 0.5:
        spec["regions"] = rng.sample(regions, rng.randint(1, 3))
    if rng.random() < 0.4:
        spec["types"] = rng.sample(
            ["tender", "result", "correction", "中标公告", "公开招标公告", "成交公告"], rng.randint(1, 2)
        )
    if rng.random() < 0.3:
        spec["categories"] = [rng.choice(["货物", "工程", "服务", "服务/信息技术服务", "货物/通用设备"])]
    if rng.random() < 0.15:
        spec["buyer"] = rng.choice(PUBLIC_BODIES)
    if rng.random() < 0.3:
        low = rng.choice([0, 100_000, 500_000, 1_000_000])
        spec["budget_min"] = low
        if rng.random() < 0.5:
            spec["budget_max"] = low + rng.choice([500_000, 2_000_000, 10_000_000])
    return spec


KIND_OF = {"公开招标公告": "tender", "询价公告": "tender", "竞争性谈判公告": "tender", "单一来源公告": "tender",
           "邀请招标公告": "tender", "竞争性磋商公告": "tender", "中标公告": "result", "成交公告": "result",
           "更正公告": "correction", "终止公告": "termination"}  # fmt: skip


def expected(spec: dict[str, Any], n: dict[str, Any]) -> bool:
    """The documented semantics, written out plainly (docs/connectors/tender.md)."""
    text = f"{n['title']}\n{n['summary']}\n{n['content']}"
    if not any(k in text for k in spec["keywords"]):
        return False
    if any(w in text for w in spec.get("exclude", [])):
        return False
    if spec.get("regions") and n["region"] not in [r.removesuffix("省") for r in spec["regions"]]:
        return False
    if (
        spec.get("types")
        and n["notice_type"] not in spec["types"]
        and KIND_OF[n["notice_type"]] not in spec["types"]
    ):
        return False
    if spec.get("categories") and not any(n["category"].startswith(c + "/") for c in spec["categories"]):
        return False
    if spec.get("buyer") and spec["buyer"] not in n["buyer"]:
        return False
    if "budget_min" in spec or "budget_max" in spec:
        amount = (
            Decimal(n["budget"])
            if n["budget"]
            else sum((Decimal(x["amount"]) for x in n["lots"]), Decimal(0))
        )
        if not n["budget"] and not n["lots"]:
            return False
        if amount < spec.get("budget_min", 0) or ("budget_max" in spec and amount > spec["budget_max"]):
            return False
    return True


def matching(records: int, count: int, folder: Path, seed: int) -> dict[str, Any]:
    rng = random.Random(seed * 31 + 7)
    with TenderSimulator(records=records, seed=seed + 1) as sim:
        truth = sim.truth("notices")
        regions = sorted({n["region"] for n in truth})
        specs = [
            random_subscription(rng, [r + ("省" if rng.random() < 0.3 else "") for r in regions])
            for _ in range(count)
        ]
        engine = get_engine(f"sqlite:///{folder / 'match.db'}")
        history = TenderHistory(engine, "bench")
        ids = [
            history.subscribe(f"s{i}", f"user{i}", SubscriptionSpec.from_dict(s)) for i, s in enumerate(specs)
        ]
        added = history.add([{k: v for k, v in n.items() if not k.startswith("_")} for n in truth])
        history.match(added.new)
        got = {(a["name"], a["notice_id"]) for a in history.pending_alerts(10_000_000)}
        want = {(f"s{i}", n["id"]) for i, s in enumerate(specs) for n in truth if expected(s, n)}
        title_only = {
            (f"s{i}", n["id"])
            for i, s in enumerate(specs)
            for n in truth
            if any(k in n["title"] for k in s["keywords"])
        }

        def pr(found: set, name: str) -> dict[str, Any]:
            hit = len(found & want)
            return {
                f"{name}_precision": round(hit / len(found), 4) if found else 1.0,
                f"{name}_recall": round(hit / len(want), 4) if want else 1.0,
            }

        assert len(ids) == count
        return {
            "subscriptions": count,
            "notices": len(truth),
            "expected_pairs": len(want),
            **pr(got, "product"),
            **pr(title_only, "title_only_baseline"),
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--publish", type=int, default=40)
    parser.add_argument(
        "--antibot", type=int, default=40, help="requests per second before the anti-bot page"
    )
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sim_args = {
        "records": args.records,
        "seed": args.seed,
        "faults": f"antibot_per_min={args.antibot},antibot_window=1",
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        out = {
            "html": incremental(sim_args, "html", args.rounds, args.publish, folder),
            "vendor": incremental(
                {**sim_args, "faults": "throttle=0.1"}, "vendor", args.rounds, args.publish, folder
            ),
            "naive_scraper_baseline": naive(sim_args),
            "subscriptions": matching(args.records * 2, args.subscriptions, folder, args.seed),
        }
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        for section, figures in out.items():
            print(section)
            for k, v in figures.items():
                print(f"  {k:32} {v}")


if __name__ == "__main__":
    main()
