"""The runner end to end on the synthetic tap: batches, cursors, quarantine, replay, locks, crashes, pipes."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from pipelines.project import Project, load_project
from pipelines.replay import replay
from pipelines.runner import Runner
from tongbu.hub.store import HubStore
from tongbu.state.store import PipelineLocked, StateStore

ROOT = Path(__file__).resolve().parent.parent
MAPPING = ROOT / "mappings/library/synthetic_to_crm.yaml"


@pytest.fixture(autouse=True, params=["process", "thread"])
def reader_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every runner test runs with the forked reader process and with the in-process writer thread."""
    monkeypatch.setenv("TONGBU_READER", request.param)
    return request.param


def test_a_failing_source_fails_the_run_with_its_message(hub_engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.synthetic.tap import SyntheticRecords

    def broken(self, context):
        yield {"id": 1, "name": "x", "grade": "A", "status": 0, "updated_at": "2024-01-01T00:00:00+00:00"}
        raise ConnectionResetError("source hung up")

    monkeypatch.setattr(SyntheticRecords, "get_records", broken)
    with pytest.raises((ConnectionResetError, RuntimeError), match="source hung up"):
        Runner(project(10), hub_engine).run("synth_accounts")
    with hub_engine.connect() as conn:
        assert StateStore(hub_engine).get(conn, "synth", "records") is None


def project(records: int, changed: int = 0, mapping: Path = MAPPING, batch: int = 1000) -> Project:
    p = Project.model_validate(
        {
            "connections": {
                "synth": {"connector": "synthetic", "config": {"records": records, "changed": changed}}
            },
            "pipelines": {
                "synth_accounts": {
                    "source": {"connection": "synth", "stream": "records"},
                    "mapping": str(mapping),
                    "target": {"object": "accounts"},
                    "batch_size": batch,
                }
            },
            "root": ROOT,
        }
    )
    for name, spec in p.pipelines.items():
        spec.name = name
    return p


def hub_count(runner: Runner) -> int:
    with runner.engine.connect() as conn:
        return HubStore(runner.engine).count(conn, "accounts", source_system="synth")


def test_full_then_incremental_then_full_refresh(hub_engine) -> None:
    r = Runner(project(5500), hub_engine).run("synth_accounts")
    assert (r.rows_read, r.rows_written, r.rows_quarantined, r.batches) == (5500, 5500, 0, 6)
    assert r.cursor_after["replication_key_value"] == "2024-01-01T01:31:39+00:00"  # record 5499

    again = Runner(project(5500), hub_engine).run("synth_accounts")
    assert (again.rows_read, again.rows_written) == (0, 0)

    changed = Runner(project(5500, changed=55), hub_engine).run("synth_accounts")
    assert (changed.rows_read, changed.rows_written) == (55, 55)

    full = Runner(project(5500, changed=55), hub_engine).run("synth_accounts", full_refresh=True)
    assert (full.rows_read, full.rows_written, full.rows_unchanged) == (5500, 0, 5500)
    assert hub_count(Runner(project(1), hub_engine)) == 5500


def test_bad_records_are_quarantined_and_replayed_after_the_fix(tmp_path: Path, hub_engine) -> None:
    strict = tmp_path / "strict.yaml"
    # Status 1 is missing from the code table: every odd record fails mapping with a reason.
    strict.write_text(MAPPING.read_text(encoding="utf-8").replace(', "1": active', ""), encoding="utf-8")
    runner = Runner(project(1000, mapping=strict), hub_engine)
    r = runner.run("synth_accounts")
    assert (r.rows_read, r.rows_written, r.rows_quarantined) == (1000, 500, 500)
    [first] = runner.quarantine.list("synth_accounts", limit=1)
    assert "status" in first["reason"] and first["payload"]["id"] % 2 == 1 and first["source_id"]
    # The cursor moved past the quarantined records: they are kept, not re-read forever.
    assert r.cursor_after["replication_key_value"].endswith("00:16:39+00:00")

    shutil.copy(MAPPING, strict)  # the fix
    fixed = Runner(project(1000, mapping=strict), hub_engine)
    assert replay(fixed, pipeline="synth_accounts") == {"replayed": 500, "failed": 0}
    assert hub_count(fixed) == 1000 and fixed.quarantine.list("synth_accounts") == []


def test_a_crash_mid_run_keeps_cursor_and_rows_consistent(
    hub_engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = Runner(project(5000), hub_engine)
    calls = {"n": 0}
    real = HubStore.write

    def flaky(self, conn, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("database went away")
        return real(self, conn, *a, **kw)

    monkeypatch.setattr(HubStore, "write", flaky)
    with pytest.raises(ConnectionError):
        runner.run("synth_accounts")
    with hub_engine.connect() as conn:
        cursor = StateStore(hub_engine).get(conn, "synth", "records")
    assert hub_count(runner) == 2000 and cursor["replication_key_value"].endswith("00:33:19+00:00")
    monkeypatch.setattr(HubStore, "write", real)
    resumed = Runner(project(5000), hub_engine).run("synth_accounts")
    assert resumed.rows_read == 3000 and hub_count(runner) == 5000


def test_two_runs_of_one_pipeline_never_interleave(hub_engine) -> None:
    started, release = threading.Event(), threading.Event()
    runner = Runner(project(3000), hub_engine)

    def slow_progress(_r) -> None:
        started.set()
        release.wait(10)

    runner.progress = slow_progress
    t = threading.Thread(target=runner.run, args=("synth_accounts",))
    t.start()
    assert started.wait(10)
    try:
        with pytest.raises(PipelineLocked, match="already running"):
            Runner(project(3000), hub_engine).run("synth_accounts")
    finally:
        release.set()
        t.join(30)
    assert hub_count(runner) == 3000


def test_pipe_mode_gives_the_same_result(hub_engine) -> None:
    r = Runner(project(3000, batch=1000), hub_engine).run("synth_accounts", mode="pipe")
    assert hub_count(Runner(project(1), hub_engine)) == 3000
    assert r.rows_written == 3000 and r.cursor_after["replication_key_value"].endswith("00:49:59+00:00")
    inc = Runner(project(3000, changed=30), hub_engine).run("synth_accounts", mode="pipe")
    assert inc.rows_written == 30 and inc.rows_read <= 31  # the boundary record may be re-read


def test_project_file_errors_name_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "tongbu.yaml"
    bad.write_text(
        "pipelines:\n  p:\n    source: {connection: nope, stream: s}\n    mapping: m.yaml\n"
        "    target: {object: accounts}\n    schedule: every 5 minutes\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match=r"tongbu.yaml: pipelines.p.schedule"):
        load_project(bad)


def test_the_shipped_project_file_loads() -> None:
    p = load_project(ROOT / "tongbu.yaml")
    assert {"kingdee_customers", "kingdee_sales_orders", "kingdee_receivables"} <= set(p.pipelines)
    assert p.connection("kingdee").config["password"].startswith("vault:")


def test_hub_lookups_resolve_during_a_run(tmp_path: Path, hub_engine) -> None:
    """A ``lookup`` step reads the hub through the reader's own connection (also in a forked reader)."""
    with hub_engine.begin() as conn:
        HubStore(hub_engine).upsert(
            conn,
            "products",
            [
                {"source_id": f"P{i}", "name": region, "code": f"R{i}"}
                for i, region in enumerate(("华东", "华南", "华北", "西南", "华中", "西北", "东北"))
            ],
            source_system="catalog",
        )
    mapping = tmp_path / "lookup.yaml"
    mapping.write_text(
        MAPPING.read_text(encoding="utf-8")
        + (
            "  - {target: extra.region_code, source: region,"
            " transform: [{lookup: {object: products, by: name, return: code, on_missing: error}}]}\n"
        ),
        encoding="utf-8",
    )
    r = Runner(project(1200, mapping=mapping), hub_engine).run("synth_accounts")
    assert (r.rows_written, r.rows_quarantined) == (1200, 0)
    with hub_engine.connect() as conn:
        row = HubStore(hub_engine).get(conn, "accounts", "synth", "1")
    assert row["region"] == "华南" and row["extra"] == {"region_code": "R1"}


@pytest.mark.parametrize("mode", ["inprocess", "pipe"])
def test_an_optional_source_field_never_seen_in_the_sample_warns_once(
    tmp_path: Path, hub_engine, caplog: pytest.LogCaptureFixture, mode: str, reader_mode: str
) -> None:
    if mode == "pipe" and reader_mode == "thread":
        pytest.skip("pipe mode has no reader thread/process choice")
    typo = tmp_path / "typo.yaml"
    typo.write_text(
        MAPPING.read_text(encoding="utf-8")
        .replace("{target: phone, source: phone}", "{target: phone, source: phnoe}")
        .replace("{target: owner, source: owner}", "{target: owner, source: meta.owner}"),
        encoding="utf-8",
    )
    with caplog.at_level("WARNING", logger="tongbu.runner"):
        r = Runner(project(2500, mapping=typo, batch=400), hub_engine).run("synth_accounts", mode=mode)
    assert r.rows_written == 2500  # the run goes on: the column is just empty
    warnings = r.extra["warnings"]
    assert len(warnings) == 2, warnings
    assert "source field 'phnoe' (mapped to 'phone') is absent from all 1,000 sampled records" in warnings[0]
    assert "did you mean 'phone'?" in warnings[0]
    assert "'meta.owner'" in warnings[1] and "check the field name" in warnings[1]
    assert sum("phnoe" in rec.getMessage() for rec in caplog.records) == 1  # once per run, not per batch
    # A correct mapping warns about nothing.
    ok = Runner(project(10), hub_engine).run("synth_accounts", full_refresh=True)
    assert "warnings" not in ok.extra


def test_an_indexed_source_path_is_not_reported_absent() -> None:
    from connectors.kit.sampling import absent_source_fields

    sample = [{"variants": [{"sku": "A-1"}]}, {"variants": []}]
    optional = {"variants.0.sku": "code", "variants.1.sku": "spec", "variants.0.nope": "name"}
    notes = absent_source_fields(optional, sample)
    assert [n.split("'")[1] for n in notes] == ["variants.1.sku", "variants.0.nope"]
