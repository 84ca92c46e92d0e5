"""SIGKILL at random points of a bi-directional run (a worker subprocess), at least 20 times, with
edits on both sides between the kills → 0 duplicates, 0 lost edits, links and bases consistent."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select, text

from connectors.kingdee.simulator import KingdeeSimulator
from tongbu.hub.api import CrmApi
from tongbu.hub.models import RecordLink

ROOT = Path(__file__).resolve().parents[2]
KILLS = 22


def start(hub_url: str, sim: KingdeeSimulator, cycles: int = 0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.kingdee.sync_worker", hub_url, sim.base_url, str(cycles)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def wait_ready(proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == "ready":
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode} before it was ready")
    raise AssertionError("worker not ready in time")


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_sigkill_at_random_points_loses_nothing_and_duplicates_nothing(hub_engine) -> None:
    rng = random.Random(20)
    hub_url = hub_engine.url.render_as_string(hide_password=False)
    api = CrmApi(hub_engine)
    with KingdeeSimulator(records=12, orders=0, receivables=0, seed=9) as sim:
        # What the CRM has before the first run: 8 new companies (created in Kingdee by the run).
        crm_new = [
            api.create(
                "accounts", {"name": f"断电测试公司{i}", "phone": f"010-{5000_0000 + i}"}, author="alice"
            )
            for i in range(8)
        ]
        expected_phone: dict[int, str] = {h: f"010-{5000_0000 + i}" for i, h in enumerate(crm_new)}
        expected_industry: dict[int, str] = {}
        proc = start(hub_url, sim)
        wait_ready(proc)
        deadline = time.monotonic() + 60
        while sim.stats()["saves"] + sim.stats()["unaudits"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)  # the first kill comes only after the first write landed
        assert sim.stats()["saves"] > 0, "no write reached Kingdee"
        kill(proc)
        kills = 1
        stop_at = time.monotonic() + 240  # bounded in time, whatever the machine's speed
        while kills < KILLS and time.monotonic() < stop_at:
            with hub_engine.connect() as conn:
                hub_ids = [
                    r[0] for r in conn.execute(text("SELECT id FROM accounts WHERE deleted_at IS NULL"))
                ]
                linked = {
                    r.hub_id: r.external_id
                    for r in conn.execute(
                        select(RecordLink.__table__).where(RecordLink.__table__.c.state == "linked")
                    )
                }
            for _ in range(2):  # CRM edits the phone, the ERP edits the industry: disjoint fields
                h = rng.choice(hub_ids)
                expected_phone[h] = f"021-{rng.randrange(10**7, 10**8)}"
                api.update("accounts", h, {"phone": expected_phone[h]}, author="alice")
            for h in rng.sample(sorted(linked), min(2, len(linked))):
                expected_industry[h] = f"行业{rng.randrange(10**6)}"
                sim.edit("BD_Customer", int(linked[h]), {"FDomains": expected_industry[h]})
            proc = start(hub_url, sim)
            wait_ready(proc)
            time.sleep(rng.uniform(0.0, 1.2))
            kill(proc)
            kills += 1
        assert kills >= 20, f"only {kills} kills in the time box"
        done = start(hub_url, sim, cycles=3)
        assert done.wait(timeout=180) == 0

        every = {str(t["FCUSTID"]): t for t in sim.truth("BD_Customer")}
        # A customer forbidden (voided) before the sync ever saw it is not imported.
        truth = {k: t for k, t in every.items() if t["FForbidStatus"] == "A"}
        with hub_engine.connect() as conn:
            links = (
                conn.execute(select(RecordLink.__table__).where(RecordLink.__table__.c.object == "accounts"))
                .mappings()
                .all()
            )
            rows = {
                r["id"]: dict(r)
                for r in conn.execute(text("SELECT * FROM accounts WHERE deleted_at IS NULL")).mappings()
            }
        # 0 duplicates: one Kingdee customer per CRM company, one link per entity and per record.
        assert len(every) == 12 + len(crm_new)
        assert sorted(t["FName"] for t in every.values() if t["FName"].startswith("断电测试公司")) == [
            f"断电测试公司{i}" for i in range(8)
        ]
        assert len(rows) == len(truth)
        assert all(link["state"] == "linked" for link in links)
        assert (
            len({link["hub_id"] for link in links})
            == len(links)
            == len({link["external_id"] for link in links})
            == len(rows)
        )
        by_hub = {link["hub_id"]: link for link in links}
        for hub_id, row in rows.items():
            k = truth[by_hub[hub_id]["external_id"]]
            # 0 lost edits, both systems equal, bases equal to what Kingdee holds.
            assert row["phone"] == k["FTEL"] == expected_phone.get(hub_id, row["phone"]), hub_id
            assert (
                row["industry"] == (k["FDomains"] or None) == expected_industry.get(hub_id, row["industry"])
            ), hub_id
            assert by_hub[hub_id]["snapshot"]["phone"] == k["FTEL"]
