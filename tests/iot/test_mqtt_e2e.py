"""End to end through the local Mosquitto: the simulator's devices → the consumer → the hub, with faults."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import func, select

from connectors.iot.models import IotMessageLedger, IotQuarantine
from connectors.iot.settings import IotSettings
from connectors.iot.simulator import IotSimulator
from pipelines.iot import IotService
from tongbu.db import get_engine
from tongbu.hub.models import Device, ServiceCase


def wait_until(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def expected_keys(sim: IotSimulator) -> tuple[set[str], int]:
    """Ledger keys of the Alink messages the hub must apply, and how many messages must be quarantined."""
    keys = {e["key"] for e in sim.fleet.log if e.get("key") and e["expect"] == "applied"}
    return keys, sum(1 for e in sim.fleet.log if e["expect"] == "quarantined")


def ledger_keys(engine, prefix: str) -> set[str]:
    t = IotMessageLedger.__table__
    with engine.connect() as conn:
        return set(conn.execute(select(t.c.dedup_key).where(t.c.dedup_key.like(f"%{prefix}%"))).scalars())


def start_service(engine, address, **cfg) -> IotService:
    settings = IotSettings.from_config({"broker": address.url, "client_id": f"t-{uuid.uuid4().hex[:8]}",
                                        "batch_wait_ms": 20, **cfg})  # fmt: skip
    service = IotService(engine, settings)
    service.start()
    return service


@pytest.mark.parametrize("engine_kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_devices_with_every_fault_land_exactly(engine_kind, request, mosquitto) -> None:
    engine = get_engine() if engine_kind == "sqlite" else get_engine(request.getfixturevalue("pg_url"))
    prefix = f"E{uuid.uuid4().hex[:5].upper()}"
    service = start_service(engine, mosquitto)
    sim = IotSimulator(records=20, seed=3, broker=mosquitto.url, serial_prefix=prefix,
                       faults="counter_reset=0.1,clock_skew=0.05,duplicate_ids=0.1")  # fmt: skip
    sim.start()
    try:
        sim.tick(15, hours=0.25)
        sim.fault(f"{prefix}03000000", "Fault", 4, burst=5)  # a burst: one case
        assert sim.fleet.flush(30)
        keys, n_quarantined = expected_keys(sim)
        wait_until(lambda: keys <= ledger_keys(engine, prefix), what="every published Alink message applied")
        wait_until(lambda: service.stats.quarantined >= n_quarantined, what="quarantine")
    finally:
        sim.stop()
        service.stop()
    truth = {d["serial"]: d for d in sim.truth("devices")}
    t = Device.__table__
    with engine.connect() as conn:
        rows = {r.source_id: r for r in conn.execute(select(t).where(t.c.source_id.like(f"{prefix}%")))}
        cases = conn.execute(
            select(ServiceCase.__table__).where(ServiceCase.__table__.c.device_ref.like(f"{prefix}%"))
        ).all()
        quarantined = conn.execute(select(func.count()).select_from(IotQuarantine.__table__)
                                   .where(IotQuarantine.__table__.c.device.like(f"{prefix}%"))).scalar_one()  # fmt: skip
    assert set(rows) == set(truth)
    assert quarantined == n_quarantined > 0
    for serial, d in truth.items():
        row = rows[serial]
        # exact running hours (no reordering here), every injected reset detected
        assert float(row.run_hours) == pytest.approx(d["reported_hours"], abs=1e-6), serial
        assert row.run_hours_resets == d["resets"], serial
        assert row.firmware == d["firmware"] and row.online is True
    assert sum(d["resets"] for d in truth.values()) == sim.fleet.stats["resets"] > 0
    assert len(cases) == 1 and cases[0].occurrences == 5 and cases[0].status == "open"


@pytest.mark.slow
def test_sigkilled_consumer_and_restarted_broker_lose_nothing_and_apply_nothing_twice(tmp_path) -> None:
    """``tongbu iot run`` SIGKILLed 3 times and a private Mosquitto restarted once, while devices publish
    with duplicates, reordering and counter resets (benchmarks/iot_kills.py, at a smaller size)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "iot_kills", Path(__file__).resolve().parents[2] / "benchmarks" / "iot_kills.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    r = module.run(tmp_path / "kills", kills=3, restarts=1, rate=300, devices=20, min_gap=0.3, max_gap=1.0)
    assert r["broker_restarts"] == 1 and r["publisher_confirmed_all"]
    assert r["expected_applied"] > 0
    assert (r["lost"], r["double_applied"], r["devices_with_inflated_hours"]) == (0, 0, 0)
    assert r["resets_detected"] == r["resets_injected"] > 0
    assert r["run_hours_deficit"] == 0
