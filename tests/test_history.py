"""Historical migration (issue 18 item 6): years of a Kingdee simulator's history as monthly partitions,
each cleaned → transformed → loaded → verified by sampling against the source, with a report per
partition; and the Dagster partitioned asset and off-peak schedule that drive it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest
import yaml
from sqlalchemy import select, update

from connectors.kingdee.simulator import KingdeeSimulator
from pipelines.history import HistoryMismatch, backfill_window, reports
from pipelines.project import load_project
from pipelines.runner import Runner
from tongbu.hub.store import hub_table
from tongbu.state.store import StateStore

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sim():
    # Customers modified from 2023-01 to 2025-06: two and a half years, 30 monthly windows.
    with KingdeeSimulator(records=240, orders=0, receivables=0, seed=9) as s:
        yield s


def _project(tmp_path: Path, sim: KingdeeSimulator, sample: int = 20) -> Path:
    creds = sim.credentials()
    config = {
        "base_url": sim.base_url,
        **{k: creds[k] for k in ("acct_id", "username", "password")},
        "page_size": 100,
    }
    path = tmp_path / "tongbu.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "tenant": "acme",
                "connections": {"erp": {"connector": "kingdee", "config": config}},
                "pipelines": {
                    "erp_customers": {
                        "source": {"connection": "erp", "stream": "customers"},
                        "mapping": str(ROOT / "mappings/library/kingdee_to_crm.yaml"),
                        "target": {"object": "accounts"},
                        "schedule": None,
                        "history": {
                            "start": "2023-01-01",
                            "end": "2025-07-01",
                            "sample": sample,
                            "per_batch": 3,
                        },
                    }
                },
            }
        ),
        encoding="utf-8",
    )
    return path


def _month(key: str) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.fromisoformat(key).replace(tzinfo=dt.UTC)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start, end


def test_history_loads_month_by_month_and_every_partition_verifies(tmp_path: Path, sim, hub_engine) -> None:
    runner = Runner(load_project(_project(tmp_path, sim)), hub_engine)
    keys = [f"{y}-{m:02d}-01" for y in (2023, 2024, 2025) for m in range(1, 13)][:30]
    for key in keys:
        report = backfill_window(runner, "erp_customers", key, *_month(key), sample=20)
        assert report.verified and report.hub_rows == report.source_rows - report.rows_quarantined
    rows = reports(runner, "erp_customers")
    assert [r["partition_key"] for r in rows] == keys and {r["status"] for r in rows} == {"verified"}
    assert sum(r["source_rows"] for r in rows) == sim.counts()["BD_Customer"] == 240
    assert sum(r["sampled"] for r in rows) >= 200 and sum(r["sample_mismatches"] for r in rows) == 0
    t = hub_table("accounts")
    with hub_engine.connect() as conn:
        in_hub = conn.execute(select(t.c.source_id).where(t.c.tenant_id == "acme")).scalars().all()
        # the live incremental cursor is the live sync's: history never moves it
        assert StateStore(hub_engine, "acme").get(conn, "erp", "customers") is None
    assert len(in_hub) == len(set(in_hub)) == 240

    # Re-running a partition is idempotent: everything unchanged, still verified.
    again = backfill_window(runner, "erp_customers", keys[5], *_month(keys[5]), sample=20)
    assert again.verified and again.rows_written == 0 and again.rows_unchanged == again.source_rows

    # A hub row that no longer matches its source is found by the sampled verification.
    busiest = max(rows, key=lambda r: r["source_rows"])
    start, end = _month(busiest["partition_key"])
    naive = hub_engine.dialect.name == "sqlite"
    lo, hi = (start.replace(tzinfo=None), end.replace(tzinfo=None)) if naive else (start, end)
    with hub_engine.begin() as conn:
        conn.execute(
            update(t)
            .where(t.c.tenant_id == "acme", t.c.source_modified_at >= lo, t.c.source_modified_at < hi)
            .values(name="篡改的名称", row_hash="tampered")
        )
    with pytest.raises(HistoryMismatch, match="sampled records differ"):
        backfill_window(
            runner, "erp_customers", busiest["partition_key"], start, end, sample=5, verify_only=True
        )
    [bad] = [r for r in reports(runner, "erp_customers") if r["partition_key"] == busiest["partition_key"]]
    assert bad["status"] == "mismatch" and bad["sample_mismatches"] == bad["sampled"] == 5
    # … and re-running the partition repairs it.
    assert backfill_window(runner, "erp_customers", busiest["partition_key"], start, end).verified


def test_dagster_history_partitions_and_the_off_peak_batches(tmp_path: Path, sim, monkeypatch) -> None:
    from dagster_project.assets import build_definitions
    from dagster_project.history import history_key, next_batch, partitions_for

    monkeypatch.setenv("TONGBU_PROJECT", str(_project(tmp_path, sim, sample=10)))
    defs = build_definitions()
    job = defs.resolve_job_def("history_erp_customers")
    instance = dg.DagsterInstance.ephemeral()
    for key in ("2023-01-01", "2023-02-01"):
        result = job.execute_in_process(instance=instance, partition_key=key)
        assert result.success
        [m] = result.asset_materializations_for_node("history__erp__customers")
        md = {k: v.value for k, v in m.metadata.items()}
        assert md["status"] == "verified" and md["partition_key"] == key and md["sampled"] > 0
    schedule = defs.resolve_schedule_def("history_erp_customers_off_peak")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED  # a migration is started on purpose
    spec = load_project(Path(str(tmp_path / "tongbu.yaml"))).pipeline("erp_customers")
    batch = next_batch(instance, history_key(spec), partitions_for(spec), job.name, 3)
    # The oldest partitions not yet loaded, three per off-peak tick.
    assert [r.partition_key for r in batch] == ["2023-03-01", "2023-04-01", "2023-05-01"]
    assert len(partitions_for(spec).get_partition_keys()) == 30
    # The live sync job never carries history partitions.
    assert history_key(spec) not in defs.resolve_job_def("sync_all").asset_layer.executable_asset_keys
