"""Alert latency from publish to the subscriber's mailbox, and duplicates across restarts.

The simulator publishes a notice every ``--every`` seconds for ``--duration`` seconds; a
subscription matches every notice and alerts by e-mail (a local aiosmtpd server). The alert loop
is what the Dagster sensor does each tick — ``TenderFeed.poll()`` then ``send_alerts()`` — with a
**new** ``TenderFeed`` each tick (a restart every tick), and every third tick "crashing" between
the poll and the send (the queued alerts must go out on the next tick, once). Latency is the SMTP
server's receive time minus the notice's publish time; duplicates are notices mailed twice.

Run twice in the same invocation: with the sensor's interval (``--interval``, default 20 s, the
``tenders.alert_interval`` default) and, as the baseline, with the feed's schedule alone
(``--baseline-interval``, default 120 s; the ``*/5`` schedule waits up to 300 s) — the baseline is measured over the
same duration, so its latencies are bounded by the interval it waits.

    python benchmarks/tender_alerts.py [--duration 120] [--interval 20] [--baseline-interval 120] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from connectors.tender.history import SubscriptionSpec, TenderHistory  # noqa: E402
from connectors.tender.simulator import TenderSimulator  # noqa: E402
from pipelines.project import load_project  # noqa: E402
from pipelines.tenders import TenderFeed  # noqa: E402
from tests.helpers.smtp import SmtpServer  # noqa: E402
from tongbu.db import get_engine  # noqa: E402

_ID = re.compile(r"公告编号：(\d+)")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))]


def run(duration: float, interval: float, every: float, folder: Path) -> dict[str, float | int]:
    smtp = SmtpServer().start()
    received: dict[int, list[float]] = {}

    def watch() -> None:
        seen = 0
        while not stop.is_set():
            with smtp.cond:
                smtp.cond.wait_for(lambda n=seen: len(smtp.messages) > n or stop.is_set(), 0.5)
                new = smtp.messages[seen:]
            now = time.time()
            for msg in new:
                body = msg.get_payload(decode=True).decode()
                m = _ID.search(body)
                if m:
                    received.setdefault(int(m.group(1)), []).append(now)
            seen += len(new)

    stop = threading.Event()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    published: dict[int, float] = {}
    try:
        with TenderSimulator(records=50, seed=17) as sim:
            config = sim.tap_config(request_interval=0, lookback_seconds=600)
            channels = {
                "mail": {"kind": "email", "host": "127.0.0.1", "port": smtp.port, "sender": "t@example.com"}
            }
            doc = {"connections": {"tender": {"connector": "tender", "config": config}},
                   "alerts": {"channels": channels}, "tenders": {"crm": True}}  # fmt: skip
            path = folder / f"tongbu-{int(interval)}.yaml"
            path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
            engine = get_engine(f"sqlite:///{folder / f'alerts-{int(interval)}.db'}")
            TenderHistory(engine).subscribe(
                "all", "ops", SubscriptionSpec.from_dict({}), {"mail": ["ops@example.com"]}
            )
            first = TenderFeed(load_project(path), engine)
            first.poll()
            for alert in first.history.pending_alerts(10_000):  # the seeded history is not measured
                first.history.mark_sent(alert["id"])

            def publisher() -> None:
                while not stop.is_set() and time.monotonic() < end:
                    for nid in sim.publish(1)["ids"]:
                        published[nid] = time.time()
                    stop.wait(every)

            end = time.monotonic() + duration
            pub = threading.Thread(target=publisher, daemon=True)
            pub.start()
            tick = 0
            while time.monotonic() < end + interval:
                tick += 1
                feed = TenderFeed(load_project(path), engine)  # a restart every tick
                feed.poll()
                if tick % 3:  # every third tick dies between the poll and the send
                    feed.send_alerts()
                stop.wait(interval)
            pub.join()
            final = TenderFeed(load_project(path), engine)
            final.poll()
            final.send_alerts()
            smtp.wait(len(published), timeout=30)
    finally:
        stop.set()
        watcher.join(5)
        smtp.stop()
    latencies = [received[n][0] - t for n, t in published.items() if n in received]
    copies = Counter(len(v) for v in received.values())
    return {
        "interval_s": interval,
        "published": len(published),
        "alerted": sum(1 for n in published if n in received),
        "duplicates": sum(len(v) - 1 for v in received.values()),
        "copies_histogram": dict(copies),
        "p50_s": round(percentile(latencies, 50), 2) if latencies else -1,
        "p99_s": round(percentile(latencies, 99), 2) if latencies else -1,
        "max_s": round(max(latencies), 2) if latencies else -1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=120)
    parser.add_argument("--interval", type=float, default=20)
    parser.add_argument("--baseline-interval", type=float, default=120)
    parser.add_argument("--every", type=float, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = {
            "sensor": run(args.duration, args.interval, args.every, Path(tmp)),
            "schedule_baseline": run(args.duration, args.baseline_interval, args.every, Path(tmp)),
        }
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
