"""Search over a large tender history: keyword + region + date queries, the index vs a LIKE scan.

Builds (once, then reuses) a history of ``--notices`` notices from the simulator's generator in an
SQLite file (or ``--database`` for PostgreSQL), through the product's own path
(``TenderHistory.add``: jieba segmentation, FTS5 triggers). Then runs ``--queries`` random queries —
a keyword from the notices' vocabulary, one province, a window of 7–60 days — twice:

* **index**: ``TenderHistory.search`` (FTS candidates, then the exact substring check);
* **baseline**: the same filters with the keyword as ``title/summary/content LIKE '%kw%'`` and no
  full-text index (what a search without one does).

Both return the 20 newest matches; the script checks they are the same notices for every query
and reports p50/p95/p99 of each and the ratio. Target: index p95 < 100 ms at 1,000,000 notices.

    python benchmarks/tender_search.py [--notices 1000000] [--queries 200] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import random
import sys
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.tender import models  # noqa: E402
from connectors.tender.history import NoticeQuery, TenderHistory  # noqa: E402
from connectors.tender.simulator.data import generate, public  # noqa: E402
from tongbu.db import get_engine  # noqa: E402

#: what users type: words of the notices' subjects (a fragment like 云计 is answered by a scan)
KEYWORDS = (
    "软件", "医疗设备", "信息化", "监控", "物业管理", "服务器", "图书", "办公家具", "绿化", "计算机",
    "数据中心", "网络安全", "云计算", "实验室", "食材", "印刷", "档案", "道路", "公务用车", "客户关系管理",
    "财务管理", "视频监控", "存储", "仪器", "智慧校园",
)  # fmt: skip


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))]


def build(history: TenderHistory, count: int, seed: int) -> float:
    """Fill the history with ``count`` notices (none when it already holds them); seconds taken."""
    have = history.count()
    if have >= count:
        return 0.0
    if have:
        raise SystemExit(f"the database holds {have} notices, not {count}: remove it or pass --database")
    start = time.perf_counter()
    batch: list[dict] = []
    done = 0
    for notice in generate(count, seed, spacing=30):
        batch.append({**public(notice), "url": f"http://sim/{notice['id']}.htm"})
        if len(batch) == 5000:
            history.add(batch)
            done += len(batch)
            batch.clear()
            if done % 100_000 == 0:
                print(f"  {done} notices, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        if done + len(batch) >= count:
            break
    history.add(batch)
    with history.engine.begin() as c:
        if history.dialect == "sqlite":
            c.exec_driver_sql("INSERT INTO tender_notices_fts(tender_notices_fts) VALUES ('optimize')")
            c.exec_driver_sql("ANALYZE")
        else:
            c.exec_driver_sql("ANALYZE tender_notices")
    return time.perf_counter() - start


def baseline(history: TenderHistory, q: NoticeQuery, limit: int = 20) -> list[int]:
    """The same query without the full-text index: LIKE '%kw%' on the text columns."""
    t = models.notices
    conds = history.where(dataclasses.replace(q, keywords=()))
    for kw in q.keywords:
        conds.append(
            sa.or_(t.c.title.like(f"%{kw}%"), t.c.summary.like(f"%{kw}%"), t.c.content.like(f"%{kw}%"))
        )
    stmt = (
        sa.select(t.c.notice_id)
        .where(*conds)
        .order_by(t.c.publish_time.desc(), t.c.notice_id.desc())
        .limit(limit)
    )
    with history.engine.connect() as c:
        return [int(r[0]) for r in c.execute(stmt)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--notices", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database", help="SQLAlchemy URL (default: an SQLite file in benchmarks/data)")
    parser.add_argument(
        "--existing", action="store_true", help="query the database as it is (e.g. a build cut short)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    url = args.database or f"sqlite:///{ROOT / 'benchmarks' / 'data' / f'tender_{args.notices}.db'}"
    engine = get_engine(url)
    history = TenderHistory(engine, tenant="bench")
    built = 0.0 if args.existing else build(history, args.notices, args.seed)
    with engine.connect() as c:
        t = models.notices
        lo, hi = c.execute(sa.select(sa.func.min(t.c.publish_time), sa.func.max(t.c.publish_time))).one()
    regions = ["江苏", "广东", "浙江", "山东", "四川", "北京", "上海", "湖北"]
    rng = random.Random(args.seed)
    span = (hi - lo).days
    queries = []
    for _ in range(args.queries):
        since = (lo + dt.timedelta(days=rng.randrange(max(1, span - 60)))).date()
        queries.append(
            NoticeQuery(
                keywords=(rng.choice(KEYWORDS),),
                regions=(rng.choice(regions),),
                since=since,
                until=since + dt.timedelta(days=rng.randrange(7, 61)),
            )
        )
    history.search(queries[0])  # warm the caches (jieba's dictionary, the page cache) for both
    baseline(history, queries[0])
    fast, slow, differ = [], [], 0
    for q in queries:
        t0 = time.perf_counter()
        got = [r["notice_id"] for r in history.search(q, limit=20)]
        fast.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        want = baseline(history, q)
        slow.append((time.perf_counter() - t0) * 1000)
        differ += got != want
    out = {
        "notices": history.count(),
        "dialect": history.dialect,
        "build_seconds": round(built, 1),
        "queries": len(queries),
        "index_p50_ms": round(percentile(fast, 50), 2),
        "index_p95_ms": round(percentile(fast, 95), 2),
        "index_p99_ms": round(percentile(fast, 99), 2),
        "like_p50_ms": round(percentile(slow, 50), 2),
        "like_p95_ms": round(percentile(slow, 95), 2),
        "like_p99_ms": round(percentile(slow, 99), 2),
        "p95_speedup": round(percentile(slow, 95) / max(1e-9, percentile(fast, 95)), 1),
        "queries_with_different_results": differ,
    }
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:32} {v}")


if __name__ == "__main__":
    main()
