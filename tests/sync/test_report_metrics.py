"""What a cycle reports beyond its counts: drift found by reconciliation, write calls and echoes,
write amplification (Dagster checks and the CLI read these)."""

from __future__ import annotations

import random

from memory_spoke import MemorySpoke
from test_engine import account_pair, uscc

from pipelines.sync.engine import SyncEngine
from tongbu.hub.api import CrmApi


def _world(hub_engine, n: int):
    erp = MemorySpoke("erp")
    sync = SyncEngine(hub_engine, account_pair(), [erp])
    api = CrmApi(hub_engine)
    for i in range(n):
        erp.user_create({"name": f"客户{i}", "credit_code": uscc(i), "phone": f"0{i}"})
    sync.run()
    return erp, sync, api


def test_reconciliation_reports_exactly_the_out_of_band_edits_as_drift(hub_engine) -> None:
    erp, sync, api = _world(hub_engine, 30)
    tampered = sorted(erp.records)[::10]
    for ext in tampered:
        erp.out_of_band(ext, phone="改过")
    erp.user_edit(sorted(erp.records)[1], phone="a normal edit")  # the feed shows it: not drift
    assert sync.run().drift == 0  # the change feed cannot see out-of-band edits
    report = sync.run(reconcile=True)
    assert report.drift == len(tampered)
    assert sync.run(reconcile=True).drift == 0  # repaired: nothing left


def test_write_amplification_is_one_and_no_write_echoes(hub_engine) -> None:
    erp, sync, api = _world(hub_engine, 40)
    rng = random.Random(3)
    hub_ids = sorted(r["hub_id"] for r in _links(hub_engine))
    exts = sorted(erp.records)
    for _ in range(60):
        if rng.random() < 0.5:
            api.update("accounts", rng.choice(hub_ids), {"address": f"地址{rng.randrange(999)}"}, author="u")
        else:
            erp.user_edit(rng.choice(exts), phone=f"1{rng.randrange(999)}")
    report = sync.run()
    erp_counts = report.direction("erp")
    assert erp_counts.writes == erp_counts.updated > 0
    assert erp_counts.echoes == 0 and report.write_amplification == 1.0
    again = sync.run()  # the writes come back through the feed: nothing is sent anywhere
    assert again.direction("erp").writes == 0 and again.direction("hub").updated == 0
    assert again.write_amplification == 1.0


def _links(hub_engine):
    from sqlalchemy import select

    from tongbu.hub.models import RecordLink

    with hub_engine.connect() as conn:
        return conn.execute(select(RecordLink.__table__)).mappings().all()
