"""The IoT writer on SQLite and PostgreSQL: applied once, monotonic run hours, cases, quarantine, links."""

from __future__ import annotations

import json
import time

from sqlalchemy import func, select

from connectors.iot.ingest import IotWriter, register_devices
from connectors.iot.linking import forget_order_index, unlinked_devices
from connectors.iot.models import DeviceUsageDaily, IotQuarantine
from connectors.iot.payloads import Decoder
from tongbu.hub.models import Account, Device, SalesOrder, SalesOrderLine, ServiceCase

NOW = time.time()
T0 = int(NOW * 1000) - 3_600_000


def alink(dn: str, mid: int, ts: int, **props: object) -> tuple[str, bytes]:
    body = {"id": str(mid), "version": "1.0", "sys": {"ack": 0}, "method": "thing.event.property.post",
            "params": {k: {"value": v, "time": ts} for k, v in props.items()}}  # fmt: skip
    return f"/sys/pk1/{dn}/thing/event/property/post", json.dumps(body).encode()


def fault(dn: str, mid: int, ts: int, code: int) -> tuple[str, bytes]:
    body = {"id": str(mid), "version": "1.0", "method": "thing.event.Fault.post",
            "params": {"value": {"ErrorCode": code}, "time": ts}}  # fmt: skip
    return f"/sys/pk1/{dn}/thing/event/Fault/post", json.dumps(body).encode()


def apply(engine, messages, writer=None):
    decoder = Decoder(clock=lambda: NOW)
    readings, rejected = [], []
    for topic, payload in messages:
        for item in decoder.decode(topic, payload):
            (readings if hasattr(item, "dedup_key") else rejected).append(item)
    writer = writer or IotWriter()
    with engine.begin() as conn:
        return writer.write(conn, readings, rejected, received_at=NOW)


def device(engine, name: str):
    with engine.connect() as conn:
        return (
            conn.execute(select(Device.__table__).where(Device.__table__.c.source_id == name))
            .mappings()
            .one()
        )


def test_run_hours_survive_a_reset_and_late_messages_move_nothing(hub_engine) -> None:
    r = apply(hub_engine, [alink("D1", 1, T0, RunHours=100.0), alink("D1", 2, T0 + 1000, RunHours=101.5)])
    assert r.applied == 2 and r.resets == 0
    # the counter resets (firmware update), then a late message from before the reset arrives
    r = apply(hub_engine, [alink("D1", 3, T0 + 2000, RunHours=0.5), alink("D1", 4, T0 + 3000, RunHours=1.0)])
    assert r.resets == 1
    r = apply(hub_engine, [alink("D1", 5, T0 + 1500, RunHours=101.7)])
    assert r.late == 1
    d = device(hub_engine, "D1")
    assert float(d["run_hours"]) == 102.5  # 100 + 1.5 + 0.5 + 0.5
    assert float(d["run_hours_raw"]) == 1.0 and d["run_hours_resets"] == 1
    with hub_engine.connect() as conn:
        usage = conn.execute(select(func.sum(DeviceUsageDaily.__table__.c.run_hours))).scalar_one()
    assert float(usage) == 2.5


def test_a_redelivered_message_is_applied_once(hub_engine) -> None:
    msgs = [alink("D2", 7, T0, RunHours=10.0), alink("D2", 8, T0 + 10, RunHours=11.0)]
    apply(hub_engine, msgs)
    again = apply(hub_engine, msgs + [alink("D2", 8, T0 + 10, RunHours=11.0)])
    assert (again.applied, again.duplicates) == (0, 3)
    assert float(device(hub_engine, "D2")["run_hours"]) == 11.0


def test_future_and_invalid_timestamps_are_quarantined_with_the_reason(hub_engine) -> None:
    r = apply(hub_engine, [alink("D3", 1, int(NOW * 1000) + 86_400_000, RunHours=1.0),
                           alink("D3", 2, 1234, RunHours=1.0), ("/sys/pk1/D3/thing/event/property/post", b"{")])  # fmt: skip
    assert r.quarantined == 3 and r.applied == 0
    with hub_engine.connect() as conn:
        reasons = sorted(conn.execute(select(IotQuarantine.__table__.c.reason)).scalars())
    assert any("in the future" in x for x in reasons)
    assert any("before 2000" in x for x in reasons)
    assert any("not JSON" in x for x in reasons)


def test_a_fault_opens_one_case_until_the_clear_event_closes_it(hub_engine) -> None:
    with hub_engine.begin() as conn:
        conn.execute(Account.__table__.insert().values(source_system="kingdee", source_id="A9", row_hash="x",
                                                       name="华东机械有限公司", owner="zhangsan"))  # fmt: skip
        register_devices(conn, "default", [("D4", "A9")], "test")
    r = apply(hub_engine, [fault("D4", 1, T0, 3), fault("D4", 2, T0 + 100, 3)])
    assert [c.action for c in r.cases] == ["opened", "repeated"]
    assert r.cases[0].owner == "zhangsan" and r.cases[0].account_ref == "A9"
    r = apply(hub_engine, [fault("D4", 3, T0 + 200, 0), fault("D4", 4, T0 + 300, 5)])
    assert [c.action for c in r.cases] == ["closed", "opened"]
    cases = ServiceCase.__table__
    with hub_engine.connect() as conn:
        rows = conn.execute(select(cases.c.status, cases.c.occurrences, cases.c.account_ref)
                            .order_by(cases.c.id)).all()  # fmt: skip
    assert [tuple(r) for r in rows] == [("closed", 2, "A9"), ("open", 1, "A9")]


def test_devices_link_through_erp_order_line_serials_else_are_listed(hub_engine) -> None:
    forget_order_index()
    with hub_engine.begin() as conn:
        conn.execute(SalesOrder.__table__.insert().values(source_system="kingdee", source_id="O1", row_hash="x",
                                                          account_ref="A1"))  # fmt: skip
        conn.execute(SalesOrderLine.__table__.insert().values(
            source_system="kingdee", source_id="L1", row_hash="x", order_source_id="O1",
            extra={"serial_numbers": "SN-100, SN-101"}))  # fmt: skip
    apply(hub_engine, [alink("SN-101", 1, T0, RunHours=1.0), alink("SN-999", 1, T0, RunHours=1.0)])
    assert device(hub_engine, "SN-101")["account_ref"] == "A1"
    with hub_engine.connect() as conn:
        assert [d["source_id"] for d in unlinked_devices(conn, "default")] == ["SN-999"]
