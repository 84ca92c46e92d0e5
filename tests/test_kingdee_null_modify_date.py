"""Rows whose FModifyDate is NULL: every one is read, through a resume, and reaches the hub.

Before the fix a page ending on a NULL row continued from ``'1900-01-01 00:00:00'``, a comparison NULL
fails, so with 30 of 50 rows NULL and a page size of 10 the tap read 30 rows and the hub got 30.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.kingdee.simulator import KingdeeSimulator
from connectors.kingdee.tap import TapKingdee
from pipelines.project import load_project
from pipelines.runner import Runner
from tests.test_kingdee_e2e import hub_ids, write_project
from tongbu.db import get_engine

NULL_MODIFY_DATE = "1900-01-01T00:00:00.000+08:00"  # what a record carries for a NULL
FAULT = "null_modify_date=30"
STREAMS = {
    "customers": ("BD_Customer", "FCUSTID"),
    "sales_orders": ("SAL_SaleOrder", "FID"),
    "receivables": ("AR_receivable", "FID"),
}


def config(sim: KingdeeSimulator, **extra: Any) -> dict[str, Any]:
    return sim.tap_config(**{"page_size": 10, "lookback_seconds": 0, **extra})


def ids(records: list[dict[str, Any]], key: str) -> list[int]:
    return [r[key] for r in records]


@pytest.fixture(scope="module")
def sim() -> Any:
    with KingdeeSimulator(records=50, seed=5, faults=FAULT) as s:
        yield s


def test_the_fault_makes_30_of_50_rows_null(sim: KingdeeSimulator) -> None:
    for form, _key in STREAMS.values():
        rows = sim.truth(form)
        assert len(rows) == 50 and sum(r["FModifyDate"] is None for r in rows) == 30


@pytest.mark.parametrize("stream", list(STREAMS))
def test_every_row_is_read_once_in_order(sim: KingdeeSimulator, stream: str) -> None:
    form, key = STREAMS[stream]
    records = list(TapKingdee(config=config(sim)).streams[stream].get_records(None))
    assert sorted(ids(records, key)) == sorted(r[key] for r in sim.truth(form))
    keys = [(r["FModifyDate"], r[key]) for r in records]
    assert keys == sorted(set(keys)), "not strictly ascending"
    assert sum(r["FModifyDate"] == NULL_MODIFY_DATE for r in records) == 30
    if stream == "sales_orders":
        lines = (
            {t["FID"]: len(t["lines"]) for t in sim.truth(form)} if "lines" in sim.truth(form)[0] else None
        )
        if lines:
            assert {r["FID"]: len(r["lines"]) for r in records} == lines


@pytest.mark.parametrize("stop_after", [5, 29, 30, 31])
def test_resume_inside_and_after_the_null_pass(sim: KingdeeSimulator, stop_after: int) -> None:
    first = list(TapKingdee(config=config(sim)).streams["customers"].get_records(None))
    tap = TapKingdee(config=config(sim))
    stream = tap.streams["customers"]
    stream.start_cursor_from(stream.cursor_for_record(first[stop_after - 1]))
    rest = list(stream.get_records(None))
    assert ids(rest, "FCUSTID") == ids(first[stop_after:], "FCUSTID")


@pytest.mark.parametrize("lookback", [0, 5])
def test_singer_state_resumes_inside_the_null_pass(sim: KingdeeSimulator, lookback: int) -> None:
    state = {
        "bookmarks": {
            "customers": {
                "replication_key": "FModifyDate",
                "replication_key_value": NULL_MODIFY_DATE,
                "tiebreak_key": "FCUSTID",
                "tiebreak_value": 0,
            }
        }
    }
    tap = TapKingdee(config=config(sim, lookback_seconds=lookback), state=state)
    records = list(tap.streams["customers"].get_records(None))
    assert len(records) == 50 and len({r["FCUSTID"] for r in records}) == 50


def test_all_50_reach_the_hub(tmp_path: Path, sim: KingdeeSimulator) -> None:
    project = load_project(write_project(tmp_path, sim, page_size=10, lookback_seconds=0))
    engine = get_engine()
    result = Runner(project, engine).run("kingdee_customers")
    in_hub = hub_ids(engine, "accounts")
    truth = {str(r["FCUSTID"]) for r in sim.truth("BD_Customer")}
    assert len(in_hub) == 50 and set(in_hub) == truth, result
    # an incremental run afterwards neither loses nor re-reads the NULL rows
    again = Runner(project, engine).run("kingdee_customers")
    assert len(hub_ids(engine, "accounts")) == 50 and again.rows_read == 0
