"""Drift detection: back-dated edits, late inserts and hard deletes the incremental sync cannot see are
found bucket by bucket, named, repaired through the pipeline, and a second check is clean."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from connectors.kingdee.drift import KingdeeDriftSource
from connectors.kingdee.simulator import KingdeeSimulator
from connectors.kit.drift import Digest, bucket_digests, from_ms, row_digest, to_ms
from pipelines import drift
from pipelines.project import load_project
from pipelines.runner import Runner
from tests.test_kingdee_e2e import write_project
from tongbu.hub.store import hub_table

CST = dt.timezone(dt.timedelta(hours=8))


def _cursor(runner: Runner, stream: str) -> dt.datetime:
    with runner.engine.connect() as conn:
        cur = runner.state.get(conn, "kingdee", stream)
    assert cur is not None
    return dt.datetime.fromisoformat(cur["replication_key_value"])


def _literal(moment: dt.datetime) -> str:
    return moment.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S.%f")[:23]


def _hub(runner: Runner, obj: str) -> dict[str, dict[str, Any]]:
    t = hub_table(obj)
    with runner.engine.connect() as conn:
        return {
            r["source_id"]: dict(r)
            for r in conn.execute(select(t).where(t.c.source_system == "kingdee")).mappings()
        }


def _ms_of(row: dict[str, Any]) -> int:
    return to_ms(row["source_modified_at"])


def _truth_ms(rec: dict[str, Any]) -> int:
    return to_ms(dt.datetime.fromisoformat(rec["FModifyDate"]).replace(tzinfo=CST))


@pytest.fixture
def sim():
    with KingdeeSimulator(records=279, orders=60, receivables=0, seed=3) as s:
        s.start()
        yield s


def _runner(tmp_path: Path, sim: KingdeeSimulator, engine) -> Runner:
    return Runner(load_project(write_project(tmp_path, sim, page_size=100, lookback_seconds=5)), engine)


def test_backdated_edits_are_missed_by_the_sync_then_found_named_and_repaired(
    tmp_path: Path, sim: KingdeeSimulator, hub_engine
) -> None:
    runner = _runner(tmp_path, sim, hub_engine)
    runner.run("kingdee_customers")
    back = _literal(_cursor(runner, "customers") - dt.timedelta(seconds=30))
    edited = {str(i) for i in sim.modify("BD_Customer", 40, modified_at=back)["ids"]}
    late = {str(i) for i in sim.insert("BD_Customer", 5, modified_at=back)["ids"]}
    before = _hub(runner, "accounts")

    # The scenario: the incremental run (lookback 5 s) reads none of them.
    second = runner.run("kingdee_customers")
    assert second.rows_written == 0
    after_run = _hub(runner, "accounts")
    assert all(after_run[i]["phone"] == before[i]["phone"] for i in edited)
    assert not late & after_run.keys()

    report = drift.check(runner, "kingdee_customers")
    assert report.status == "drift"
    assert set(report.stale) == edited and set(report.missing) == late and not report.deleted
    # Every new time lies in a named bucket, and so does every edited record's old time.
    named = [(b.start_ms, b.start_ms + b.width_ms) for b in report.buckets]
    new_ms = to_ms(dt.datetime.fromisoformat(back).replace(tzinfo=CST))
    assert any(lo <= new_ms < hi for lo, hi in named)
    for sid in edited:
        assert any(lo <= _ms_of(before[sid]) < hi for lo, hi in named), sid
    assert all(b.name.endswith(("/30d", "/1d", "/1h", "/1m", "/1s")) for b in report.buckets)

    cursor = _cursor(runner, "customers")
    fixed = drift.check(runner, "kingdee_customers", repair=True)
    assert fixed.status == "repaired" and fixed.repaired["reread"] == 45
    hub = _hub(runner, "accounts")
    truth = {str(r["FCUSTID"]): r for r in sim.truth("BD_Customer")}
    for sid in edited | late:
        assert _ms_of(hub[sid]) == _truth_ms(truth[sid]), sid
        assert hub[sid]["name"] == truth[sid]["FName"]
    assert _cursor(runner, "customers") == cursor  # the repair never moves the cursor
    again = drift.check(runner, "kingdee_customers")
    assert again.status == "in_sync" and again.drifted == 0 and not again.buckets


def test_hard_deletes_are_reported_then_soft_deleted_by_policy(
    tmp_path: Path, sim: KingdeeSimulator, hub_engine
) -> None:
    runner = _runner(tmp_path, sim, hub_engine)
    runner.run("kingdee_customers")
    gone = {str(i) for i in sim.delete("BD_Customer", 7)["ids"]}
    assert runner.run("kingdee_customers").rows_written == 0

    report = drift.check(runner, "kingdee_customers", repair=True)  # default policy: report only
    assert set(report.deleted) == gone and not report.missing and not report.stale
    assert all(_hub(runner, "accounts")[s]["deleted_at"] is None for s in gone)

    report = drift.check(runner, "kingdee_customers", repair=True, deletes="soft-delete")
    assert report.repaired["soft_deleted"] == 7
    hub = _hub(runner, "accounts")
    assert all(hub[s]["deleted_at"] is not None for s in gone)
    assert drift.check(runner, "kingdee_customers").status == "in_sync"

    # A hub row soft-deleted although the source still holds it is missing, and the repair revives it.
    alive = sorted(set(hub) - gone)[:3]
    with runner.engine.begin() as conn:
        runner.hub.mark_deleted(conn, "accounts", alive, source_system="kingdee")
    report = drift.check(runner, "kingdee_customers", repair=True)
    assert report.missing == alive and report.repaired["reread"] == 3
    assert all(_hub(runner, "accounts")[s]["deleted_at"] is None for s in alive)
    assert drift.check(runner, "kingdee_customers").status == "in_sync"


def test_backdated_order_edits_repair_their_lines(tmp_path: Path, sim: KingdeeSimulator, hub_engine) -> None:
    runner = _runner(tmp_path, sim, hub_engine)
    runner.run("kingdee_customers")
    runner.run("kingdee_sales_orders")
    back = _literal(_cursor(runner, "sales_orders") - dt.timedelta(seconds=60))
    edited = {str(i) for i in sim.modify("SAL_SaleOrder", 9, modified_at=back)["ids"]}
    runner.run("kingdee_sales_orders")
    report = drift.check(runner, "kingdee_sales_orders", repair=True)
    assert set(report.stale) == edited and report.repaired["written"] == 9
    lines = hub_table("sales_order_lines")
    truth = {str(r["FID"]): r for r in sim.truth("SAL_SaleOrder")}
    with runner.engine.connect() as conn:
        for sid in edited:
            first = truth[sid]["lines"][0]
            qty = conn.execute(
                select(lines.c.qty).where(lines.c.source_id == str(first["FSaleOrderEntry_FEntryID"]))
            ).scalar_one()
            assert float(qty) == pytest.approx(float(first["FSaleOrderEntry_FQty"]))
    assert drift.check(runner, "kingdee_sales_orders").status == "in_sync"


def test_unchanged_stream_is_one_coarse_pass(tmp_path: Path, hub_engine) -> None:
    with KingdeeSimulator(records=3000, orders=0, receivables=0, seed=5) as sim:
        sim.start()
        runner = _runner(tmp_path, sim, hub_engine)
        runner.run("kingdee_customers")
        report = drift.check(runner, "kingdee_customers")
        assert report.status == "in_sync" and report.source_rows == report.hub_rows >= 2990
        # One page of ids (10,000 per request) and the empty page after it; nothing descended.
        assert report.source_requests == 2
        assert report.buckets_compared <= 32
        # A single back-dated edit makes the check descend to a fine bucket around it.
        back = _literal(_cursor(runner, "customers") - dt.timedelta(seconds=40))
        [sid] = [str(i) for i in sim.modify("BD_Customer", 1, modified_at=back)["ids"]]
        report = drift.check(runner, "kingdee_customers", leaf_rows=4)
        assert report.stale == [sid]
        assert len(report.buckets) == 2  # where the record was, and where it is now
        for b in report.buckets:
            assert b.width_ms < drift.WIDTHS[0]
            assert max(b.source.count, b.hub.count) <= 4 or b.width_ms == drift.SECOND


def test_hub_digests_are_identical_on_sqlite_and_postgresql(tmp_path: Path, pg_url: str) -> None:
    from tongbu.db import get_engine

    with KingdeeSimulator(records=400, orders=0, receivables=0, seed=9) as sim:
        sim.start()
        digests = []
        for i, engine in enumerate((get_engine(), get_engine(pg_url))):
            (tmp_path / str(i)).mkdir()
            runner = _runner(tmp_path / str(i), sim, engine)
            runner.run("kingdee_customers")
            side = drift.HubSide(engine, runner.tenant, "accounts", "kingdee")
            digests.append(side.buckets([(None, None)], drift.DAY))
            src = KingdeeDriftSource(runner.make_tap("kingdee").streams["customers"])
            assert src.buckets([(None, None)], drift.DAY) == digests[-1]
        assert digests[0] == digests[1] and sum(d.count for d in digests[0].values()) == 400


def test_digest_is_order_independent_and_sensitive_to_time_and_id() -> None:
    rows = [("1", 1000), ("2", 2000), ("3", 2500)]
    a = bucket_digests(rows, 10_000)
    assert a == bucket_digests(list(reversed(rows)), 10_000)
    assert a != bucket_digests([("1", 1001), ("2", 2000), ("3", 2500)], 10_000)
    assert a != bucket_digests([("4", 1000), ("2", 2000), ("3", 2500)], 10_000)
    d = Digest()
    d.add("1", 5)
    assert d.hash == row_digest("1", 5) and d.count == 1
    naive = dt.datetime(2025, 1, 2, 3, 4, 5, 678_901)
    assert to_ms(naive) == to_ms(naive.replace(tzinfo=dt.UTC)) == to_ms(from_ms(to_ms(naive)))


def test_not_applicable_and_never_synced_are_reported(tmp_path: Path, sim: KingdeeSimulator) -> None:
    from tongbu.db import get_engine

    runner = _runner(tmp_path, sim, get_engine())
    assert drift.check(runner, "kingdee_customers").status == "never_synced"
    with pytest.raises(ValueError, match="deletes must be one of"):
        drift.check(runner, "kingdee_customers", deletes="purge")
    # A mapping without source_modified_at cannot be bucketed: said so, not silently "in sync".
    mapping = yaml.safe_load(Path("mappings/library/kingdee_to_crm.yaml").read_text(encoding="utf-8"))
    for m in mapping["mappings"]:
        m["fields"] = [f for f in m["fields"] if f.get("target") != "source_modified_at"]
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(mapping, allow_unicode=True), encoding="utf-8")
    project = yaml.safe_load((tmp_path / "tongbu.yaml").read_text(encoding="utf-8"))
    project["pipelines"]["kingdee_customers"]["mapping"] = str(tmp_path / "m.yaml")
    (tmp_path / "tongbu.yaml").write_text(yaml.safe_dump(project, allow_unicode=True), encoding="utf-8")
    other = Runner(load_project(tmp_path / "tongbu.yaml"), get_engine())
    report = drift.check(other, "kingdee_customers")
    assert report.status == "not_applicable" and "source_modified_at" in (report.note or "")


def test_cli_reports_drift_with_exit_2_and_repairs(
    tmp_path: Path, sim: KingdeeSimulator, monkeypatch
) -> None:
    from tongbu.cli import app
    from tongbu.db import get_engine

    runner = _runner(tmp_path, sim, get_engine())
    runner.run("kingdee_customers")
    back = _literal(_cursor(runner, "customers") - dt.timedelta(seconds=30))
    edited = {str(i) for i in sim.modify("BD_Customer", 12, modified_at=back)["ids"]}
    project = str(tmp_path / "tongbu.yaml")
    cli = CliRunner()
    res = cli.invoke(app, ["drift", "check", "kingdee_customers", "-p", project, "--json"])
    assert res.exit_code == 2, res.output
    [rep] = json.loads(res.stdout)
    assert set(rep["stale"]) == edited and rep["buckets"]
    res = cli.invoke(app, ["drift", "check", "kingdee_customers", "-p", project, "--repair"])
    assert res.exit_code == 0 and "repaired" in res.output, res.output
    res = cli.invoke(app, ["drift", "check", "-p", project])  # every enabled pipeline
    assert res.exit_code == 0, res.output
    res = cli.invoke(app, ["drift", "check", "nope", "-p", project])
    assert res.exit_code == 1 and "Traceback" not in res.output
    res = cli.invoke(app, ["drift", "check", "-p", project, "--deletes", "purge"])
    assert res.exit_code == 1 and "--deletes" in res.output


def test_dagster_check_fails_on_drift_and_repairs_when_enabled(
    tmp_path: Path, sim: KingdeeSimulator, monkeypatch
) -> None:
    from dagster_project.assets import build_definitions
    from tongbu.db import get_engine

    runner = _runner(tmp_path, sim, get_engine())
    runner.run("kingdee_customers")
    runner.run("kingdee_sales_orders")
    runner.run("kingdee_receivables")
    back = _literal(_cursor(runner, "customers") - dt.timedelta(seconds=30))
    sim.modify("BD_Customer", 6, modified_at=back)
    monkeypatch.setenv("TONGBU_PROJECT", str(tmp_path / "tongbu.yaml"))
    defs = build_definitions()
    schedule = defs.resolve_schedule_def("drift_check_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    job = defs.resolve_job_def("drift_check")

    def evaluations() -> dict[str, Any]:
        result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
        return {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}

    first = evaluations()
    assert not first["kingdee/customers"].passed
    assert first["kingdee/customers"].metadata["stale"].value == 6
    assert first["kingdee/sales_orders"].passed
    monkeypatch.setenv("TONGBU_DRIFT_REPAIR", "1")
    second = evaluations()
    assert second["kingdee/customers"].passed and second["kingdee/customers"].metadata["status"].value == (
        "repaired"
    )
    monkeypatch.delenv("TONGBU_DRIFT_REPAIR")
    assert evaluations()["kingdee/customers"].passed


def test_merge_ranges_joins_overlapping_and_touching() -> None:
    from connectors.kit.drift import merge_ranges

    assert merge_ranges([(5, 9), (0, 2), (2, 4), (8, 12), (20, 20)]) == [(0, 4), (5, 12)]
    assert merge_ranges([(None, 3), (1, 5), (10, None), (12, 14)]) == [(None, 5), (10, None)]
    assert merge_ranges([]) == []


def test_kingdee_time_parsing_matches_the_stream_normalisation() -> None:
    from connectors.kingdee.tap import _normalize_modify_date

    src = KingdeeDriftSource.__new__(KingdeeDriftSource)
    src.form_id = "BD_Customer"
    for raw in (
        "2024-05-02T10:11:12.34",
        "2024-05-02T10:11:12.3",
        "2024-05-02T10:11:12",
        "2024-05-02 10:11:12.345",
        "2024-05-02T10:11:12.1234567",
        None,
    ):
        expected = to_ms(dt.datetime.fromisoformat(_normalize_modify_date(raw, "BD_Customer", 1)))
        assert src._ms(raw, 1) == expected, raw
    with pytest.raises(Exception, match="not a timestamp"):
        src._ms("2024-13-02T10:11:12", 1)


def test_an_edit_that_stays_in_its_bucket_is_found_by_the_hash(
    tmp_path: Path, sim: KingdeeSimulator, hub_engine
) -> None:
    from sqlalchemy import update

    runner = _runner(tmp_path, sim, hub_engine)
    runner.run("kingdee_customers")
    hub = _hub(runner, "accounts")
    # The hub holds a version 1 ms older than the source's: same bucket at every width, same count.
    sid = sorted(hub)[7]
    t = hub_table("accounts")
    older = hub[sid]["source_modified_at"] - dt.timedelta(milliseconds=1)
    with runner.engine.begin() as conn:
        conn.execute(update(t).where(t.c.source_id == sid).values(source_modified_at=older))
    report = drift.check(runner, "kingdee_customers", repair=True)
    assert report.stale == [sid] and [b.width_ms for b in report.buckets] == [drift.WIDTHS[0]]
    assert drift.check(runner, "kingdee_customers").status == "in_sync"


def test_a_record_leaving_the_filtered_stream_counts_as_gone(tmp_path: Path, sim: KingdeeSimulator) -> None:
    from tongbu.db import get_engine

    runner = _runner(tmp_path, sim, get_engine())
    runner.run("kingdee_customers")
    # A hub row no Kingdee id can name (another system's id under this source system) is "deleted".
    t = hub_table("accounts")
    row = dict(next(iter(_hub(runner, "accounts").values())))
    with runner.engine.begin() as conn:
        conn.execute(
            t.insert().values(
                **{k: v for k, v in row.items() if k not in ("id", "created_at", "updated_at", "source_id")},
                source_id="X-1; DROP",
            )
        )
    assert drift.check(runner, "kingdee_customers").deleted == ["X-1; DROP"]
    # With a stream filter that now excludes some records, they have left the stream: gone, not stale.
    project = yaml.safe_load((tmp_path / "tongbu.yaml").read_text(encoding="utf-8"))
    project["connections"]["kingdee"]["config"]["filters"] = {"customers": "FCUSTID <> 100003"}
    (tmp_path / "tongbu.yaml").write_text(yaml.safe_dump(project, allow_unicode=True), encoding="utf-8")
    filtered = Runner(load_project(tmp_path / "tongbu.yaml"), get_engine())
    report = drift.check(filtered, "kingdee_customers")
    assert sorted(report.deleted) == ["100003", "X-1; DROP"] and not report.stale and not report.missing
