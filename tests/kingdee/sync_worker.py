"""A two-way sync worker for the SIGKILL test: runs accounts cycles against a hub and a simulator.

``python -m tests.kingdee.sync_worker HUB_URL SIM_URL CYCLES`` (CYCLES 0: forever). It prints
``ready`` once imported and ``cycle N`` after each cycle. A worker killed with SIGKILL leaves its
lease behind; the supervisor (the test) knows it is dead, so the next worker clears stale sync leases
before it starts, as an operator would after a crash.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from sqlalchemy import create_engine, delete

from connectors.kingdee.client import KingdeeClient
from connectors.kingdee.simulator import KingdeeSimulator
from connectors.kingdee.spoke import KingdeeSpoke
from pipelines.sync.config import build_pairs
from pipelines.sync.engine import SyncEngine
from tongbu.state.models import PipelineLockRow

ROOT = Path(__file__).resolve().parents[2]


def main(hub_url: str, sim_url: str, cycles: int) -> None:
    engine = create_engine(hub_url)
    with engine.begin() as conn:
        conn.execute(
            delete(PipelineLockRow.__table__).where(PipelineLockRow.__table__.c.pipeline.like("sync:%"))
        )
    pairs = {
        p.name: p
        for p in build_pairs(
            yaml.safe_load((ROOT / "mappings/library/sync/kingdee.yaml").read_text())["sync"]
        )
    }
    client = KingdeeClient(
        sim_url,
        acct_id=KingdeeSimulator.ACCT_ID,
        username=KingdeeSimulator.USERNAME,
        password=KingdeeSimulator.PASSWORD,
        max_retries=2,
        backoff_base=0.01,
    )
    sync = SyncEngine(engine, pairs["accounts_kingdee"], [KingdeeSpoke(client)])
    print("ready", flush=True)
    n = 0
    while cycles == 0 or n < cycles:
        sync.run()
        n += 1
        print(f"cycle {n}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
