"""Real-time path latency: shop webhook / push → CRM hub updated, at a steady event rate.

The Shopify simulator (this process) delivers its own webhooks (signed, at least once) to
``tongbu serve`` running as its own process on a SQLite hub. For ``--duration`` seconds the shop
changes ``--rate`` orders per second (notes, cancellations, refunds) and sends ``orders/updated``;
with ``--youzan`` the Youzan simulator pushes trade changes the same way, to the same server.

Measured per event from the inbox the receiver commits in the same transaction as the hub row:
``webhook queued by the shop → hub committed`` (end to end, HTTP hop included; ``e2e_*``) and
``received → hub committed`` (the receiver's share). The baseline in the same run is the same path at
``--baseline-rate`` (default 5/s, an idle server) for 10 s. Afterwards every changed order in the hub is
compared with the simulator's truth.

    python benchmarks/shops_webhook_latency.py [--duration 60] [--rate 50] [--youzan] [--json]

Target: e2e p99 < 200 ms at 50 events/s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (0 for an empty list)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else 0.0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--baseline-rate", type=float, default=5.0)
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--youzan", action="store_true", help="also push Youzan trades (half the rate each)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="tongbu-shops-latency-"))
    os.environ["TONGBU_HOME"] = str(home)
    os.environ.pop("TONGBU_DATABASE_URL", None)
    from sqlalchemy import select

    from connectors.kit.server import free_port
    from connectors.shopify.simulator import ShopifySimulator
    from connectors.youzan.simulator import YouzanSimulator
    from tongbu.db import get_engine
    from tongbu.hub.store import HubStore
    from tongbu.inbox import event_inbox
    from tongbu.migrate import upgrade_to_head

    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print
    engine = get_engine()
    upgrade_to_head(engine)
    shop = ShopifySimulator(records=args.records, seed=11, leak_rate=1000.0)
    shop.start()
    yz = YouzanSimulator(records=args.records, seed=11) if args.youzan else None
    if yz:
        yz.start()
    sources = [
        {
            "name": "shop",
            "connector": "shopify",
            "config": {**shop.tap_config(), "webhook_secret": shop.CLIENT_SECRET},
        }
    ]
    if yz:
        sources.append({"name": "yz", "connector": "youzan", "config": yz.tap_config()})
    port = free_port()
    cfg_path = home / "serve.json"
    fd = os.open(cfg_path, os.O_WRONLY | os.O_CREAT, 0o600)  # holds demo secrets
    with os.fdopen(fd, "w") as fh:
        json.dump({"sources": sources}, fh)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    receiver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tongbu.cli",
            "serve",
            "--config",
            str(cfg_path),
            "--port",
            str(port),
            "--dagster",
            "off",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    result: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or receiver.poll() is not None:
                raise RuntimeError(
                    "tongbu serve did not start: " + (receiver.stderr.read() if receiver.stderr else "")
                )
            time.sleep(0.1)
        shop.webhooks.subscribe(f"{base}/hooks/shop", shop.CLIENT_SECRET)
        if yz:
            yz.pushes.subscribe(f"{base}/hooks/yz", yz.CLIENT_SECRET)
        rng = random.Random(5)
        order_ids = [r["id"] for r in shop.data.tables["orders"]]
        tids = [r["tid"] for r in yz.data.tables["trades"]] if yz else []
        touched: set[int] = set()

        def load(rate: float, seconds: float) -> list[str]:
            ids: list[str] = []
            n = int(rate * seconds)
            start = time.perf_counter()
            for k in range(n):
                delay = start + k / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                if yz and k % 2:
                    yz.change_trade(
                        rng.choice(tids), rng.choice(("TRADE_SUCCESS", "WAIT_BUYER_CONFIRM_GOODS"))
                    )
                    continue
                oid = rng.choice(order_ids)
                touched.add(oid)
                change = "note" if rng.random() < 0.9 else rng.choice(("cancel", "refund"))
                shop.change_order(oid, change)
            return ids

        def settle(expected: int) -> None:
            shop.webhooks.wait_idle(120)
            if yz:
                yz.pushes.wait_idle(120)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                m = httpx.get(f"{base}/_tongbu/events/metrics", timeout=5).json()
                if m["backlog"] == 0 and m["counts"].get("received", 0) >= expected:
                    return
                time.sleep(0.2)

        def measure(label: str, rate: float, seconds: float, since: float) -> dict[str, Any]:
            sent = {**shop.webhooks.emitted, **(yz.pushes.emitted if yz else {})}
            with engine.connect() as conn:
                rows = conn.execute(
                    select(
                        event_inbox.c.dedup_key, event_inbox.c.received_at, event_inbox.c.applied_at
                    ).where(event_inbox.c.received_at >= since)
                ).all()
            applied = [r for r in rows if r.applied_at is not None]
            e2e = [(r.applied_at - sent[r.dedup_key]) * 1000 for r in applied if r.dedup_key in sent]
            recv = [(r.applied_at - r.received_at) * 1000 for r in applied]
            return {
                "pass": label,
                "rate": rate,
                "seconds": seconds,
                "events": len(rows),
                "applied": len(applied),
                "e2e_p50_ms": round(percentile(e2e, 0.5), 1),
                "e2e_p99_ms": round(percentile(e2e, 0.99), 1),
                "e2e_max_ms": round(max(e2e, default=0.0), 1),
                "recv_p50_ms": round(percentile(recv, 0.5), 1),
                "recv_p99_ms": round(percentile(recv, 0.99), 1),
            }

        load(5.0, 2.0)  # warm-up (first mapping compile, connection pools): not measured
        total = 10
        settle(total)
        for label, rate, seconds in (
            ("baseline", args.baseline_rate, 10.0),
            ("load", args.rate, args.duration),
        ):
            say(f"{label}: {rate:g} events/s for {seconds:g}s ...")
            since = time.time()
            load(rate, seconds)
            total += int(rate * seconds)
            settle(total)
            result[label] = measure(label, rate, seconds, since)
            say(json.dumps(result[label]))
        # Every changed order in the hub is the simulator's current order.
        store = HubStore(engine)
        wrong = 0
        with engine.connect() as conn:
            for oid in touched:
                row = store.get(conn, "sales_orders", "shop", str(oid))
                truth = shop.data.public("orders", shop.data.get("orders", oid))
                # the mapping's status: financial_status, with voided (a cancellation) as cancelled
                status = "cancelled" if truth["financial_status"] == "voided" else truth["financial_status"]
                if row is None or row["order_no"] != truth["name"] or row["status"] != status:
                    wrong += 1
        result["orders_checked"], result["orders_wrong"] = len(touched), wrong
        result["meets_target"] = result["load"]["e2e_p99_ms"] < 200 and wrong == 0
    finally:
        receiver.terminate()
        try:
            receiver.wait(30)
        except subprocess.TimeoutExpired:
            receiver.kill()
        shop.close()
        if yz:
            yz.close()
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(json.dumps(result, ensure_ascii=False, indent=1))
    return result


if __name__ == "__main__":
    main()
