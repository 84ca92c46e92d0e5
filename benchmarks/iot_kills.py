"""0 lost, 0 double-applied: ``tongbu iot run`` SIGKILLed again and again, and the broker restarted, while
devices publish at QoS 1; counted against the simulator's log of everything it published.

Setup: a private Mosquitto (its own port and persistence folder; the machine's broker is never
touched); the IoT simulator in this process publishing ``--rate`` messages per second from
``--devices`` devices with duplicates, out-of-order delivery and counter resets switched on; the
consumer is the real CLI, ``tongbu iot run``, as a child process on a project file, killed with
SIGKILL (no clean shutdown, whatever it had in hand) ``--kills`` times at random moments, with the
broker restarted (SIGTERM, then started again on the same persistence) ``--restarts`` times among
them. At the end one more consumer drains the queue.

Counted:

* **lost** — log entries the hub must apply whose message id is not in the hub's ledger;
* **double-applied** — the hub's per-device message counts (``device_usage_daily.messages``) above
  the number of distinct messages published for that device, and running hours above what the
  device's accepted readings imply;
* resets — counter resets injected vs detected.

    python benchmarks/iot_kills.py [--kills 10] [--restarts 3] [--rate 1000] [--devices 50] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(
    work: Path, *, kills: int = 10, restarts: int = 3, rate: float = 1000.0, devices: int = 50, seed: int = 11,
    min_gap: float = 0.5, max_gap: float = 2.0, faults: str = "duplicate_ids=0.05,out_of_order=0.05,counter_reset=0.01",
) -> dict[str, Any]:  # fmt: skip
    """The whole experiment; returns the counts."""
    from sqlalchemy import create_engine, func, select

    from connectors.iot.models import DeviceUsageDaily, IotMessageLedger
    from connectors.iot.simulator import IotSimulator
    from tests.helpers.mqtt import OwnMosquitto
    from tongbu.hub.models import Device

    work.mkdir(parents=True, exist_ok=True)
    db = work / "hub.db"
    env = {**os.environ, "TONGBU_HOME": str(work / "home"), "TONGBU_DATABASE_URL": f"sqlite:///{db}"}
    broker = OwnMosquitto(work / "mosquitto")
    broker.start()
    project = work / "tongbu.yaml"
    project.write_text(yaml.safe_dump({"connections": {"iot": {"connector": "iot", "config": {
        "broker": broker.address.url, "client_id": "tongbu-iot-killtest", "batch_wait_ms": 20}}}}))  # fmt: skip
    rng = random.Random(seed)
    tongbu = [sys.executable, "-m", "tongbu.cli"]

    def consumer() -> subprocess.Popen[bytes]:
        p = subprocess.Popen([*tongbu, "iot", "run", "-p", str(project), "--status-every", "0"], env=env,
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
        assert p.stdout is not None
        line = p.stdout.readline().decode()  # "iot consumer … on …" once connected and subscribed
        if "iot consumer" not in line:
            raise RuntimeError(f"consumer did not start: {line.strip() or p.wait(10)}")
        threading.Thread(target=p.stdout.read, daemon=True).start()  # keep the pipe drained
        return p

    proc = consumer()  # first start: creates the durable session (and the hub schema)
    sim = IotSimulator(
        records=devices, seed=seed, broker=broker.address.url, serial_prefix="KX", faults=faults
    )
    sim.start()
    stop = threading.Event()
    per_tick = devices

    def publish() -> None:
        interval = per_tick / rate
        while not stop.is_set():
            t = time.monotonic()
            sim.tick(1, hours=0.01)
            time.sleep(max(0.0, interval - (time.monotonic() - t)))

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    restart_at = set(rng.sample(range(kills), min(restarts, kills))) if kills else set()
    restarts_done = 0
    t0 = time.monotonic()
    try:
        for i in range(kills):
            time.sleep(rng.uniform(min_gap, max_gap))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            if i in restart_at:
                broker.restart()
                restarts_done += 1
            proc = consumer()
        stop.set()
        publisher.join(30)
        published_ok = sim.fleet.flush(120)
        expected = [e for e in sim.fleet.log if e["expect"] == "applied"]
        keys = {e["key"] for e in expected}
        engine = create_engine(f"sqlite:///{db}")
        ledger = IotMessageLedger.__table__
        deadline = time.monotonic() + 180
        while True:
            with engine.connect() as conn:
                have = set(
                    conn.execute(select(ledger.c.dedup_key).where(ledger.c.dedup_key.like("%KX%"))).scalars()
                )
            if keys <= have or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        sim.stop()
        broker.stop()
    usage, dev = DeviceUsageDaily.__table__, Device.__table__
    with engine.connect() as conn:
        counted = dict(
            conn.execute(select(usage.c.device, func.sum(usage.c.messages)).group_by(usage.c.device)).all()
        )
        rows = {r.source_id: r for r in conn.execute(select(dev))}
    per_device: dict[str, int] = {}
    for e in expected:
        per_device[e["device"]] = per_device.get(e["device"], 0) + 1
    truth = {d["serial"]: d for d in sim.truth("devices")}
    double = sum(max(0, int(counted.get(s, 0)) - n) for s, n in per_device.items())
    inflated = [
        s
        for s, d in truth.items()
        if s in rows and float(rows[s].run_hours or 0) > d["reported_hours"] + 1e-6
    ]
    deficit = sum(
        max(0.0, d["reported_hours"] - float(rows[s].run_hours or 0)) for s, d in truth.items() if s in rows
    )
    worst = sorted(
        (
            (
                d["reported_hours"] - float(rows[s].run_hours or 0),
                s,
                d["reported_hours"],
                float(rows[s].run_hours or 0),
                d["resets"],
                rows[s].run_hours_resets,
            )
            for s, d in truth.items()
            if s in rows
        ),
        reverse=True,
    )[:3]
    return {
        "worst_devices": worst,
        "kills": kills,
        "broker_restarts": restarts_done,
        "published_messages": len(sim.fleet.log),
        "publishes_incl_duplicates": sim.fleet.stats["published"],
        "expected_applied": len(keys),
        "lost": len(keys - have),
        "double_applied": double,
        "devices_with_inflated_hours": len(inflated),
        "run_hours_deficit": round(deficit, 3),  # hours out-of-order around a reset can cost (never gain)
        "resets_injected": sim.fleet.stats["resets"],
        "resets_detected": sum(int(rows[s].run_hours_resets or 0) for s in truth if s in rows),
        "publisher_confirmed_all": published_ok,
        "seconds": round(elapsed, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--restarts", type=int, default=3)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--devices", type=int, default=50)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    result = run(Path(tempfile.mkdtemp(prefix="tongbu-iot-kills-")), kills=args.kills, restarts=args.restarts,
                 rate=args.rate, devices=args.devices)  # fmt: skip
    for k, v in result.items():
        print(f"{k:>28}: {v}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
