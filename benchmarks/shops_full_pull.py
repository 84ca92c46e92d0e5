"""Full pull of a shop's orders: API calls against the minimum, 429s, and exact counts under faults.

The Shopify simulator (this process) holds ``--orders`` orders behind a leaky bucket (``--bucket``
calls leaking ``--leak`` per second). Three reads of the ``orders`` stream, each with a fresh
simulator of the same seed, in the same run:

* ``paced`` — tap-shopify as shipped: it paces itself from ``X-Shopify-Shop-Api-Call-Limit``;
* ``baseline_unpaced`` — the same client told the bucket leaks 1000× faster, so it does not pace and
  learns the limit from HTTP 429 + ``Retry-After`` (what a client without pacing does);
* ``faults`` — paced, with ``throttle``, ``http_5xx``, ``timeout`` and ``session_expiry`` (an
  expiring client-credentials token) injected: the count must still be exact.

The minimum number of calls is ``ceil(orders / 250)`` (250 is the API's largest ``limit``; the ``Link``
header tells the client the last page without another call); the client also makes one ``shop.json``
call (the shop's time zone) and one token call, reported as ``overhead``. With ``--youzan`` the Youzan
connector is measured too (page size 100, windows split under the 10 000-record deep-paging cap).

    python benchmarks/shops_full_pull.py [--orders 100000] [--leak 2] [--youzan] [--bucket 40] [--json]

Targets: calls within 1 % of the minimum; 0 × 429 at steady state; exact counts under faults.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: injected during the ``faults`` pass: a hung call outlives the client's 3 s timeout
FAULTS = "throttle=0.02,http_5xx=0.02,timeout=0.02,hang=5,session_expiry=150"
FAST_RETRY = {"backoff_base": 0.05, "backoff_max": 0.5, "max_retries": 30, "request_timeout": 3.0}


def shopify_pass(
    args: argparse.Namespace, label: str, *, faults: str | None = None, **config: Any
) -> dict[str, Any]:
    from connectors.shopify.simulator import ShopifySimulator
    from connectors.shopify.tap import TapShopify

    with ShopifySimulator(
        records=args.orders, seed=3, bucket=args.bucket, leak_rate=args.leak, faults=faults
    ) as sim:
        truth = len(sim.data.tables["orders"])
        tap = TapShopify(
            config=sim.tap_config(
                **{"calls_per_second": args.leak, "page_size": 250, **FAST_RETRY, **config}
            ),
            parse_env_config=False,
        )
        started = time.perf_counter()
        ids = [r["id"] for r in tap.streams["orders"].get_records(None)]
        seconds = time.perf_counter() - started
        stats = sim.stats()
        minimum = math.ceil(truth / 250)
        page_calls = tap.client.calls - 1  # minus shop.json
        return {
            "pass": label,
            "orders": truth,
            "read": len(ids),
            "distinct": len(set(ids)),
            "exact": len(ids) == len(set(ids)) == truth,
            "page_calls": page_calls,
            "minimum_calls": minimum,
            "calls_over_minimum_pct": round(100 * (page_calls - minimum) / minimum, 2),
            "overhead_calls": 1 + stats.get("tokens_issued", 0),
            "http_429": stats["bucket_full"] + stats["throttled"],
            "bucket_429": stats["bucket_full"],
            "injected": {k: stats[k] for k in ("throttled", "http_5xx", "timeouts", "tokens_expired")},
            "requests_served": stats["requests"],
            "seconds": round(seconds, 1),
            "paced_wait_s": round(tap.client.pacer.waited, 1),
        }


def youzan_pass(args: argparse.Namespace, label: str, *, faults: str | None = None) -> dict[str, Any]:
    from connectors.youzan.simulator import YouzanSimulator
    from connectors.youzan.tap import TapYouzan

    with YouzanSimulator(records=args.orders, seed=3, faults=faults) as sim:
        truth = len(sim.data.tables["trades"])
        tap = TapYouzan(config=sim.tap_config(page_size=100, **FAST_RETRY), parse_env_config=False)
        started = time.perf_counter()
        ids = [r["tid"] for r in tap.streams["trades"].get_records(None)]
        stats = sim.stats()
        minimum = math.ceil(truth / 100)
        return {
            "pass": label,
            "trades": truth,
            "read": len(ids),
            "exact": len(ids) == len(set(ids)) == truth,
            "calls": tap.client.calls,
            "minimum_calls": minimum,
            "calls_over_minimum_pct": round(100 * (tap.client.calls - minimum) / minimum, 2),
            "injected": {k: stats[k] for k in ("throttled", "http_5xx", "timeouts", "tokens_expired")},
            "seconds": round(time.perf_counter() - started, 1),
        }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=100_000)
    ap.add_argument("--bucket", type=int, default=40, help="leaky bucket size (Standard plan: 40)")
    ap.add_argument(
        "--leak", type=float, default=2.0, help="calls leaking per second (Standard 2, Advanced 4, Plus 20)"
    )
    ap.add_argument("--youzan", action="store_true", help="also measure the Youzan connector")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result: dict[str, Any] = {
        "paced": shopify_pass(args, "paced"),
        "baseline_unpaced": shopify_pass(
            args, "baseline_unpaced", calls_per_second=args.leak * 1000, bucket_reserve=0
        ),
        "faults": shopify_pass(args, "faults", faults=FAULTS),
    }
    if args.youzan:
        result["youzan"] = youzan_pass(args, "youzan")
        result["youzan_faults"] = youzan_pass(args, "youzan_faults", faults=FAULTS)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        for name, r in result.items():
            print(name, json.dumps(r, ensure_ascii=False))
    return result


if __name__ == "__main__":
    main()
