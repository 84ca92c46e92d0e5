"""Sustained IoT telemetry into the hub through Mosquitto, with a one-insert-per-message baseline in the
same run, and fault → case latency under that load.

Setup: a private Mosquitto (its own port and persistence, unbounded offline queue: the machine's
broker is never touched); a publisher in its OWN process (so it does not share the consumer's GIL)
publishes Alink property posts for ``--devices`` devices at ``--rate`` messages per second, QoS 1,
plus ``--faults`` fault events per second (each a new fault identifier, so each opens a case); the
consumer is tongbu's :class:`pipelines.iot.IotService` in this process (durable session, batches of
``--batch`` committed before acking) writing the hub (SQLite file, or ``--db postgresql``).

Measured: messages applied per second over the window after a warm-up, the consumer's lag at the end,
its RSS every 5 s, where its time goes (decode vs hub commit), and per opened case the time from the
fault's publish (its ``time``) to the commit of its case (p50/p99). Then the baseline: the same
consumer with batches of ONE message (one transaction per message, what a naive consumer does), for
``--baseline-duration`` seconds, at the same offered rate.

    python benchmarks/iot_throughput.py [--duration 60] [--rate 25000] [--devices 1000] [--db sqlite] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(values: Iterable[float], p: float) -> float:
    """Nearest-rank percentile (0 for an empty list)."""
    if not values:
        return 0.0
    s = sorted(list(values))
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


_BODY = (
    '{"id":"%d","version":"1.0","sys":{"ack":0},"method":"thing.event.property.post",'
    '"params":{"RunningTime":{"value":%.3f,"time":%d},"Temperature":{"value":%.1f,"time":%d}}}'
)


# -- publisher (its own process) ------------------------------------------------------------------------
def publisher(args: argparse.Namespace) -> None:
    """Publish telemetry at ``rate`` and faults at ``faults`` per second for ``duration`` seconds."""
    from connectors.kit.mqtt import BrokerAddress, connect, make_client

    address = BrokerAddress.parse(args.broker)
    clients = []
    for i in range(args.connections):
        c = make_client(address, f"bench-pub-{args.tag}-{i}", durable=True)
        c.max_inflight_messages_set(2000)
        connect(c, address)
        c.loop_start()
        clients.append(c)
    pk = "a1Bench"
    hours = [100.0] * args.devices
    mid = [0] * args.devices
    sent = faults = 0
    start = time.monotonic()
    end = start + args.duration
    fault_every = 1.0 / args.faults if args.faults else None
    next_fault = start + 1.0
    k = 0
    infos = []
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - start) * args.rate) - sent
        for _ in range(min(due, 2000)):
            d = sent % args.devices
            hours[d] += 0.001
            mid[d] += 1
            ts = int(time.time() * 1000)
            body = _BODY % (mid[d], hours[d], ts, 20.0 + (sent % 100) / 10, ts)  # noqa: UP031 - fast
            infos.append(
                clients[d % len(clients)].publish(
                    f"/sys/{pk}/B{d:05d}/thing/event/property/post", body, qos=1
                )
            )
            sent += 1
        if fault_every and now >= next_fault:
            d = k % args.devices
            mid[d] += 1
            ts = int(time.time() * 1000)
            body = json.dumps({"id": str(mid[d]), "version": "1.0", "method": f"thing.event.F{k}.post",
                               "params": {"value": {"ErrorCode": 3}, "time": ts}})  # fmt: skip
            infos.append(
                clients[d % len(clients)].publish(f"/sys/{pk}/B{d:05d}/thing/event/F{k}/post", body, qos=1)
            )
            faults += 1
            k += 1
            next_fault += fault_every
        if len(infos) > 50000:
            infos = [i for i in infos if not getattr(i, "_published", False)]
        if due <= 0:
            time.sleep(0.0005)
    deadline = time.monotonic() + 60
    while any(not getattr(i, "_published", False) for i in infos) and time.monotonic() < deadline:
        time.sleep(0.05)
    for c in clients:
        c.disconnect()
        c.loop_stop()
    print(json.dumps({"sent": sent, "faults": faults, "seconds": args.duration}), flush=True)


# -- consumer side ------------------------------------------------------------------------------------------
def run_phase(
    name: str, args: argparse.Namespace, broker_url: str, db_url: str, batch: int, duration: float
) -> dict:
    import psutil

    from connectors.iot.settings import IotSettings
    from pipelines.iot import IotService
    from tongbu.db import dispose_engines, get_engine

    dispose_engines()
    engine = get_engine(db_url)
    settings = IotSettings.from_config(
        {
            "broker": broker_url,
            "client_id": f"bench-{name}-{uuid.uuid4().hex[:6]}",
            "batch_size": batch,
            "batch_wait_ms": args.batch_wait_ms,
        }  # fmt: skip
    )
    service = IotService(engine, settings, connection="bench")
    service.start()
    proc = psutil.Process()
    tag = f"{name}-{uuid.uuid4().hex[:4]}"
    pub = subprocess.Popen(
        [sys.executable, __file__, "--publisher", "--broker", broker_url, "--rate", str(args.rate),
         "--faults", str(args.faults), "--devices", str(args.devices), "--duration", str(duration),
         "--connections", str(args.connections), "--tag", tag],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    rss: list[float] = []
    t0 = time.monotonic()
    warm = min(5.0, duration / 4)
    mark_n = mark_t = None
    cpu0 = proc.cpu_times()
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(5.0):
            rss.append(proc.memory_info().rss / 2**20)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rss.append(proc.memory_info().rss / 2**20)
    while pub.poll() is None:
        time.sleep(0.2)
        if mark_n is None and time.monotonic() - t0 >= warm:
            mark_n, mark_t = service.stats.messages, time.monotonic()
    end_n, end_t = service.stats.messages, time.monotonic()
    out = json.loads(pub.stdout.read().strip().splitlines()[-1])
    published = out["sent"] + out["faults"]
    lag_at_end = published - service.stats.messages
    # drain what is still queued (not counted in the sustained rate)
    drain_deadline = time.monotonic() + 120
    while service.stats.messages < published and time.monotonic() < drain_deadline:
        time.sleep(0.1)
    drained_s = time.monotonic() - end_t
    stop.set()
    cpu1 = proc.cpu_times()
    service.stop()
    s = service.stats
    window = (end_t - mark_t) if mark_t else 1.0
    result = {
        "phase": name,
        "batch": batch,
        "offered_rate": args.rate,
        "published": published,
        "consumed": s.messages,
        "applied": s.applied,
        "duplicates": s.duplicates,
        # still queued at the broker when the drain gave up (not lost: the durable session keeps them)
        "not_drained": max(0, published - s.messages),
        "reconnects": service.consumer.stats["reconnects"] if service.consumer else 0,
        "sustained_msgs_per_s": round((end_n - (mark_n or 0)) / window, 1),
        "lag_at_end": lag_at_end,
        "drain_s": round(drained_s, 2),
        "batches": s.batches,
        "commit_s": round(s.commit_s, 2),
        "consumer_cpu_s": round((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system), 2),
        # load-independent: messages consumed per CPU-second of the consumer process (2 cores are
        # shared with other work here, so wall-clock rates move with the machine's load)
        "msgs_per_consumer_cpu_s": round(
            s.messages / max(0.001, (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)), 1
        ),
        "rss_mb": [round(x, 1) for x in rss],
        "cases_opened": s.cases_opened,
        "case_p50_ms": round(percentile(s.case_latencies, 50) * 1000, 1),
        "case_p99_ms": round(percentile(s.case_latencies, 99) * 1000, 1),
    }
    dispose_engines()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--broker", default="")
    p.add_argument("--tag", default="x")
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--baseline-duration", type=float, default=20.0)
    p.add_argument("--rate", type=float, default=25000.0)
    p.add_argument("--faults", type=float, default=50.0)
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--batch-wait-ms", type=int, default=50)
    p.add_argument(
        "--baseline-rate", type=float, default=0.0, help="offered rate of the baseline (default: --rate)"
    )
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.publisher:
        publisher(args)
        return
    from tests.helpers.mqtt import OwnMosquitto

    work = Path(tempfile.mkdtemp(prefix="tongbu-iot-bench-"))
    os.environ["TONGBU_HOME"] = str(work / "home")
    broker = OwnMosquitto(work / "mosquitto")
    broker.start()
    pg = None
    try:
        if args.db == "postgresql":
            from sqlalchemy import create_engine, text

            base = os.environ.get(
                "TONGBU_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
            )
            pg = f"tongbu_iot_bench_{uuid.uuid4().hex[:6]}"
            admin = create_engine(base, isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.execute(text(f'CREATE DATABASE "{pg}"'))
            from sqlalchemy.engine import make_url

            db_of = lambda n: make_url(base).set(database=pg).render_as_string(hide_password=False)  # noqa: E731
        else:
            db_of = lambda n: f"sqlite:///{work / (n + '.db')}"  # noqa: E731
        url = broker.address.url
        ours = run_phase("batched", args, url, db_of("batched"), args.batch, args.duration)
        base_args = argparse.Namespace(**{**vars(args), "rate": args.baseline_rate or args.rate})
        baseline = run_phase("one_per_message", base_args, url, db_of("baseline"), 1, args.baseline_duration)
    finally:
        broker.stop()
        if pg:
            from tongbu.db import dispose_engines

            dispose_engines()
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{pg}" WITH (FORCE)'))
    ratio = ours["sustained_msgs_per_s"] / max(baseline["sustained_msgs_per_s"], 0.1)
    summary = {"db": args.db, "batched": ours, "baseline": baseline, "speedup": round(ratio, 1)}
    for r in (ours, baseline):
        print(f"{r['phase']:>16}: {r['sustained_msgs_per_s']:>9,.0f} msg/s sustained (offered {r['offered_rate']:,.0f}), "
              f"{r['msgs_per_consumer_cpu_s']:,.0f} msg per consumer CPU-s, lag at end {r['lag_at_end']:,}, commit {r['commit_s']} s of {r['consumer_cpu_s']} s CPU, "
              f"RSS {r['rss_mb'][0]}→{r['rss_mb'][-1]} MB, case p50/p99 {r['case_p50_ms']}/{r['case_p99_ms']} ms "
              f"({r['cases_opened']} cases)")  # fmt: skip
    print(f"batched / one-insert-per-message: {ratio:.1f}x")
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
