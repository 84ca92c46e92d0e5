"""Full pull of Fxiaoke accounts past the 10,000-offset limit: exact count, API calls against the
minimum the page size allows, with the naive reader as the baseline in the same run.

The simulator holds ``--records`` accounts (nothing else). Two readers, each with a fresh client:

1. **baseline**: offset paging, as the docs' first example and the third-party ``fxiaoke-python``
   cursor do (``offset`` += ``limit``) — how far it gets before Fxiaoke refuses an offset past 10,000;
2. **tap-fxiaoke**: the stream's full pull (``_id GT last``, offset 0, :mod:`connectors.fxiaoke.reader`)
   — every record, each once, counted against the simulator's ground truth, and the query calls the
   simulator counted against ``ceil(records / 100)``.

The documented rate limit (100 calls per 20 s per endpoint) is honoured by the client, so at the
real limit 100,000 accounts take at least 200 s of pacing; ``--rate-window`` scales the window
(simulator and client alike) to measure the reader without waiting for it.

    python benchmarks/fxiaoke_full_pull.py [--records 100000] [--rate-window 20] [--json]

With ``--json`` the last line is the result as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000, help="accounts in the simulated tenant")
    ap.add_argument("--rate-window", type=float, default=20.0, help="seconds per 100 calls per endpoint")
    ap.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    args = ap.parse_args(argv)
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print

    from connectors.fxiaoke.client import FxiaokeApiError, FxiaokeClient
    from connectors.fxiaoke.simulator import FxiaokeSimulator
    from connectors.fxiaoke.tap import TapFxiaoke
    from connectors.kit.settings import HttpSettings
    from connectors.kit.tokens import MemoryTokenCache

    none = {"contacts": 0, "leads": 0, "opportunities": 0, "orders": 0, "payments": 0}
    t0 = time.perf_counter()
    sim = FxiaokeSimulator(records=args.records, seed=11, rate_window=args.rate_window, **none)
    sim.start()
    say(f"simulator: {args.records:,} accounts seeded in {time.perf_counter() - t0:.1f}s at {sim.base_url}")
    try:
        truth = [r["_id"] for r in sim.truth("AccountObj")]
        settings = HttpSettings(request_timeout=60, max_retries=8, backoff_base=0.2, backoff_max=2.0)

        # 1. baseline: offset paging
        sim.reset_stats()
        c = sim.credentials()
        client = FxiaokeClient(
            sim.base_url,
            app_id=c["app_id"],
            app_secret=c["app_secret"],
            permanent_code=c["permanent_code"],
            open_user_id=c["open_user_id"],
            rate_window=args.rate_window,
            token_cache=MemoryTokenCache(),
            settings=settings,
        )
        got, offset, refused = 0, 0, ""
        t = time.perf_counter()
        while True:
            try:
                page = client.query(
                    "AccountObj", orders=[{"fieldName": "_id", "isAsc": True}], offset=offset, limit=100
                )
            except FxiaokeApiError as exc:
                refused = str(exc)
                break
            rows = page.get("dataList") or []
            got += len(rows)
            if len(rows) < 100:
                break
            offset += 100
        baseline_s = time.perf_counter() - t
        baseline_calls = sim.calls_by_endpoint().get("data/query", 0)
        client.close()
        say(
            f"baseline (offset paging): {got:,} of {len(truth):,} records in {baseline_calls:,} calls, {baseline_s:.1f}s; stopped by: {refused[:90]}"
        )

        # 2. tap-fxiaoke's full pull
        sim.reset_stats()
        tap = TapFxiaoke(
            config={**sim.tap_config(objects=["accounts"]), "rate_window": args.rate_window},
            parse_env_config=False,
        )
        stream = tap.streams["accounts"]
        sim.reset_stats()  # discovery's describe is not part of the pull
        t = time.perf_counter()
        ids = [r["_id"] for r in stream.get_records(None)]
        tap_s = time.perf_counter() - t
        calls = sim.calls_by_endpoint().get("data/query", 0)
        minimum = math.ceil(len(truth) / 100)
        exact = sorted(ids) == sorted(truth) and len(ids) == len(set(ids))
        # Every query call counts: the keyset pages, plus the high-water mark read before the pull
        # and the change feed's first look after it (the stream goes straight on to it).
        pull_calls = calls
        result = {
            "records": len(truth),
            "read": len(ids),
            "exact": exact,
            "duplicates": len(ids) - len(set(ids)),
            "query_calls": calls,
            "pull_calls": pull_calls,
            "minimum_calls": minimum,
            "calls_over_minimum_pct": round(100 * (pull_calls - minimum) / minimum, 3),
            "tap_s": round(tap_s, 1),
            "records_per_s": round(len(ids) / tap_s, 1) if tap_s else None,
            "baseline_read": got,
            "baseline_calls": baseline_calls,
            "baseline_s": round(baseline_s, 1),
            "throttled": sim.stats()["throttled"],
            "peak_calls_per_window": sim.peaks()["calls_per_window"],
            "rate_window_s": args.rate_window,
        }
        say(
            f"tap-fxiaoke full pull: {len(ids):,} records (exact: {exact}), {pull_calls:,} query calls in all "
            f"(pages, the high-water mark, the change feed's first look); minimum {minimum:,} ({result['calls_over_minimum_pct']}% over); {tap_s:.1f}s; "
            f"throttled {result['throttled']}, peak {result['peak_calls_per_window']} calls per {args.rate_window:g}s window"
        )
        if args.json:
            print(json.dumps(result))
        return result
    finally:
        sim.close()


if __name__ == "__main__":
    main()
