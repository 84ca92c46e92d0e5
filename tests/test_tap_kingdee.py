"""tap-kingdee against the simulator: the SDK's standard tests, cursor semantics, fault recovery."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from connectors.kingdee.client import (
    KingdeeAuthError,
    KingdeeClient,
    KingdeeError,
    normalize_kingdee_datetime,
    to_filter_literal,
)
from connectors.kingdee.simulator import KingdeeSimulator
from connectors.kingdee.tap import TapKingdee
from connectors.kit.server import free_port

TAP_EXE = Path(sys.executable).with_name("tap-kingdee")
STREAMS = ("customers", "sales_orders", "receivables")
FORM = {"customers": "BD_Customer", "sales_orders": "SAL_SaleOrder", "receivables": "AR_receivable"}
ID = {"customers": "FCUSTID", "sales_orders": "FID", "receivables": "FID"}

# get_tap_test_class needs the config when the module is imported, so the module's simulator gets
# its port now and starts in the autouse fixture below.
SIM_PORT = free_port()
SIM = KingdeeSimulator(records=40, seed=3)
CONFIG = SIM.tap_config(page_size=9, lookback_seconds=0)
CONFIG["base_url"] = f"http://127.0.0.1:{SIM_PORT}"


@pytest.fixture(scope="module", autouse=True)
def module_simulator() -> Iterator[KingdeeSimulator]:
    SIM.start("127.0.0.1", SIM_PORT)
    yield SIM
    SIM.close()


TestTapKingdeeStandard = get_tap_test_class(
    TapKingdee, config=CONFIG, suite_config=SuiteConfig(max_records_limit=500)
)


def fast(sim: KingdeeSimulator, **overrides: Any) -> dict[str, Any]:
    """Config for a fault test: short timeouts and backoff so recovery is quick."""
    return sim.tap_config(
        **{
            "lookback_seconds": 0,
            "request_timeout": 0.5,
            "backoff_base": 0.01,
            "backoff_max": 0.05,
            "max_retries": 12,
            **overrides,
        }
    )


def read(
    config: dict[str, Any], stream: str, cursor: Any = "unset", state: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    tap = TapKingdee(config=config, state=state)
    st = tap.streams[stream]
    if cursor != "unset":
        st.start_cursor_from(cursor)
    return list(st.get_records(None))


def key(stream: str, record: dict[str, Any]) -> tuple[str, int]:
    return record["FModifyDate"], record[ID[stream]]


def assert_strictly_ascending(stream: str, records: list[dict[str, Any]]) -> None:
    keys = [key(stream, r) for r in records]
    assert all(a < b for a, b in zip(keys, keys[1:], strict=False)), "records are not strictly ascending"


def truth_ids(sim: KingdeeSimulator, stream: str) -> list[int]:
    return sorted(t[ID[stream]] for t in sim.truth(FORM[stream]))


# -- full and incremental reads -----------------------------------------------------------------------
@pytest.mark.parametrize("stream", STREAMS)
def test_full_read_equals_the_source(stream: str) -> None:
    records = read(CONFIG, stream)
    assert_strictly_ascending(stream, records)
    assert sorted(r[ID[stream]] for r in records) == truth_ids(SIM, stream)
    truth = {t[ID[stream]]: t for t in SIM.truth(FORM[stream])}
    for r in records:
        t = truth[r[ID[stream]]]
        assert r["FModifyDate"] == normalize_kingdee_datetime(t["FModifyDate"])
        assert r["FModifyDate"].endswith("+08:00")
        assert (
            r["FBillNo" if stream != "customers" else "FNumber"]
            == t["FBillNo" if stream != "customers" else "FNumber"]
        )


def test_sales_order_lines_are_whole_across_page_boundaries() -> None:
    records = read({**CONFIG, "page_size": 3}, "sales_orders")  # smaller than the longest order (4 lines)
    truth = {t["FID"]: t for t in SIM.truth("SAL_SaleOrder")}
    assert len(records) == len(truth)
    for r in records:
        lines = truth[r["FID"]]["lines"]
        assert [ln["FEntryID"] for ln in r["lines"]] == [ln["FSaleOrderEntry_FEntryID"] for ln in lines]
        assert [ln["FQty"] for ln in r["lines"]] == [ln["FSaleOrderEntry_FQty"] for ln in lines]
        assert r["FCustId_FNumber"].startswith("CUST")
    assert any(len(r["lines"]) == 4 for r in records)


def test_incremental_run_returns_exactly_the_changed_records() -> None:
    with KingdeeSimulator(records=30, seed=8) as sim:
        cfg = fast(sim, page_size=4)
        for stream in STREAMS:
            first = read(cfg, stream)
            tap = TapKingdee(config=cfg)
            cursor = tap.streams[stream].cursor_for_record(first[-1])
            assert read(cfg, stream, cursor=cursor) == []
            changed = sim.modify(FORM[stream], 5)
            again = read(cfg, stream, cursor=cursor)
            assert sorted(r[ID[stream]] for r in again) == changed["ids"]
            assert {r["FModifyDate"] for r in again} == {normalize_kingdee_datetime(changed["FModifyDate"])}
            # The same cursor handed over as Singer state gives the same answer.
            assert read(cfg, stream, state={"bookmarks": {stream: cursor}}) == again
            # The short form the runner may keep works too.
            short = {"FModifyDate": cursor["replication_key_value"], "FID": cursor["tiebreak_value"]}
            assert read(cfg, stream, cursor=short) == again


def test_resume_from_any_record_loses_and_repeats_nothing() -> None:
    with KingdeeSimulator(records=60, seed=5, faults="same_second=0.5") as sim:
        cfg = fast(sim, page_size=7)
        for stream in STREAMS:
            full = read(cfg, stream)
            assert (
                len(full) == 60
                and sum(r["FModifyDate"] == "2024-06-28T18:00:00.000+08:00" for r in full) == 30
            )
            tap = TapKingdee(config=cfg)
            for cut in (0, 13, 29, 30, 44, 59):  # inside and at the edges of the same-second block
                rest = read(cfg, stream, cursor=tap.streams[stream].cursor_for_record(full[cut]))
                assert [r[ID[stream]] for r in rest] == [r[ID[stream]] for r in full[cut + 1 :]], (
                    stream,
                    cut,
                )


def test_lookback_window_catches_a_late_commit() -> None:
    with KingdeeSimulator(records=20, seed=9) as sim:
        full = read(fast(sim), "customers")
        cursor = TapKingdee(config=fast(sim)).streams["customers"].cursor_for_record(full[-1])
        # A transaction stamped 2 s before the bookmark that committed after the last read.
        late = to_filter_literal(
            dt.datetime.fromisoformat(cursor["replication_key_value"]) - dt.timedelta(seconds=2)
        )
        changed = sim.modify("customers", 1, modified_at=late)
        assert read(fast(sim, lookback_seconds=0), "customers", cursor=cursor) == []
        seen = read(fast(sim, lookback_seconds=5), "customers", cursor=cursor)
        assert changed["ids"][0] in {r["FCUSTID"] for r in seen}
        assert full[-1]["FCUSTID"] in {r["FCUSTID"] for r in seen}  # the window re-reads; targets upsert


def test_start_date_and_stream_filters() -> None:
    truth = SIM.truth("BD_Customer")
    cut = sorted(t["FModifyDate"] for t in truth)[20]
    records = read({**CONFIG, "start_date": cut.replace("T", " ")[:19] + "+08:00"}, "customers")
    assert sorted(r["FCUSTID"] for r in records) == sorted(
        t["FCUSTID"] for t in truth if t["FModifyDate"][:19] >= cut[:19]
    )
    audited = read({**CONFIG, "filters": {"customers": "FDocumentStatus = 'C'"}}, "customers")
    assert sorted(r["FCUSTID"] for r in audited) == sorted(
        t["FCUSTID"] for t in truth if t["FDocumentStatus"] == "C"
    )


def test_singer_state_keeps_both_cursor_parts_and_never_goes_back() -> None:
    tap = TapKingdee(config=CONFIG)
    tap.sync_all()
    for stream in STREAMS:
        bookmark = tap.state["bookmarks"][stream]
        last = max(key(stream, r) for r in read(CONFIG, stream))
        assert bookmark["replication_key"] == "FModifyDate"
        assert (bookmark["replication_key_value"], bookmark["tiebreak_value"]) == last
        assert bookmark["tiebreak_key"] == ID[stream] and "progress_markers" not in bookmark
    # A second run from that state (with a lookback that re-reads old rows) keeps the bookmark.
    again = TapKingdee(config={**CONFIG, "lookback_seconds": 3600 * 24 * 365}, state=tap.state)
    again.sync_all()
    assert (
        again.state["bookmarks"]["customers"]["tiebreak_value"]
        == tap.state["bookmarks"]["customers"]["tiebreak_value"]
    )


# -- faults --------------------------------------------------------------------------------------------------
def test_sync_completes_with_exact_counts_under_every_fault(caplog: pytest.LogCaptureFixture) -> None:
    faults = "throttle=0.2,session_expiry=3,http_5xx=0.15,timeout=0.08,hang=3"
    with KingdeeSimulator(records=80, seed=21, faults=faults) as sim:
        cfg = fast(sim, page_size=9, request_timeout=0.3)
        caplog.set_level(logging.INFO, logger="tongbu.kingdee")
        for stream in STREAMS:
            records = read(cfg, stream)
            assert_strictly_ascending(stream, records)
            assert sorted(r[ID[stream]] for r in records) == truth_ids(sim, stream)
        stats = sim.stats()
        assert stats["throttled"] > 0 and stats["session_lost"] > 0 and stats["http_5xx"] > 0
        assert stats["timeouts"] > 0 and stats["sessions_expired"] > 0
    for secret in (KingdeeSimulator.PASSWORD, KingdeeSimulator.APP_SECRET):
        assert secret not in caplog.text
    assert "retry" in caplog.text and "session lost" in caplog.text


def test_client_relogs_in_once_when_the_session_is_lost() -> None:
    with KingdeeSimulator(records=5) as sim:
        client = KingdeeClient(
            sim.base_url, acct_id=sim.ACCT_ID, username=sim.USERNAME, password=sim.PASSWORD
        )
        assert len(client.execute_bill_query("BD_Customer", ["FNumber"])) == 5
        sim.expire_sessions()
        assert len(client.execute_bill_query("BD_Customer", ["FNumber"])) == 5
        assert client.stats["logins"] == 2 and client.stats["relogins"] == 1 and client.stats["retries"] == 0


def test_client_gives_up_with_a_clear_error() -> None:
    with KingdeeSimulator(records=5, faults="throttle=1") as sim:
        sleeps: list[float] = []
        client = KingdeeClient(
            sim.base_url,
            acct_id=sim.ACCT_ID,
            username=sim.USERNAME,
            password=sim.PASSWORD,
            max_retries=3,
            backoff_base=1,
            backoff_max=3,
            sleep=sleeps.append,
        )
        with pytest.raises(KingdeeError) as err:
            client.execute_bill_query("BD_Customer", ["FNumber"])
        assert "giving up after 4 attempts" in str(err.value) and "MsgCode 14" in str(err.value)
        assert err.value.msg_code == 14
        # full jitter: retry n waits uniform(0, min(backoff_max, backoff_base * 2**(n-1)))
        assert len(sleeps) == 3 and 0 <= sleeps[0] <= 1 and 0 <= sleeps[1] <= 2 and 0 <= sleeps[2] <= 3


def test_client_does_not_retry_a_bad_query() -> None:
    with KingdeeSimulator(records=5) as sim:
        client = KingdeeClient(
            sim.base_url,
            acct_id=sim.ACCT_ID,
            username=sim.USERNAME,
            app_id=sim.APP_ID,
            app_secret=sim.APP_SECRET,
        )
        with pytest.raises(KingdeeError, match="字段不存在") as err:
            client.execute_bill_query("BD_Customer", ["FNope"])
        assert err.value.msg_code == 9 and client.stats["retries"] == 0
        assert client.view("BD_Customer", number="CUST0000001")["Number"] == "CUST0000001"


def test_secrets_stay_out_of_reprs_and_errors() -> None:
    with KingdeeSimulator(records=5) as sim:
        client = KingdeeClient(sim.base_url, acct_id=sim.ACCT_ID, username=sim.USERNAME, password="S3cret!pw")
        assert "S3cret" not in repr(client)
        with pytest.raises(KingdeeAuthError) as err:
            client.login()
        assert "S3cret" not in str(err.value) and "demo" in str(err.value)
        app = KingdeeClient(
            sim.base_url,
            acct_id=sim.ACCT_ID,
            username=sim.USERNAME,
            app_id=sim.APP_ID,
            app_secret="topsecret-value",
        )
        assert "topsecret" not in repr(app)
    with pytest.raises(ValueError, match="password, or app_id and app_secret"):
        KingdeeClient("http://x", acct_id="a", username="u")


def test_malformed_rows_pass_through_and_stay_schema_valid() -> None:
    with KingdeeSimulator(records=60, seed=4, faults="malformed=0.3") as sim:
        tap = TapKingdee(config=fast(sim))
        raw_bad = {
            "2019-02-30T00:00:00",
            "￥12,000.00",
            "N/A",
            "1,2O4.5",
            "0000-00-00",
            "2024-13-45T00:00:00",
            "2024-02-30T00:00:00",
        }
        for stream in STREAMS:
            st = tap.streams[stream]
            validator = jsonschema.Draft7Validator(
                st.schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
            )
            records = list(st.get_records(None))
            truth = {t[ID[stream]]: t for t in sim.truth(FORM[stream])}
            assert len(records) == len(truth)
            seen_bad = 0
            for r in records:
                assert not list(validator.iter_errors(r)), r
                values = set(map(str, r.values())) | {
                    str(v) for ln in r.get("lines", []) for v in ln.values()
                }
                if truth[r[ID[stream]]]["_malformed"] and values & raw_bad:
                    seen_bad += 1
            assert seen_bad > 0
        missing_name = [r for r in tap.streams["customers"].get_records(None) if r["FName"] is None]
        assert missing_name


# -- plain Singer programs ------------------------------------------------------------------------------------
def run_tap(*args: str) -> subprocess.CompletedProcess[str]:
    assert TAP_EXE.exists(), "run `.venv/bin/pip install -e .` to install the tap-kingdee entry point"
    return subprocess.run([str(TAP_EXE), *args], capture_output=True, text=True, timeout=60, check=True)


def test_cli_about_and_discover(tmp_path: Path) -> None:
    about = json.loads(run_tap("--about", "--format", "json").stdout)
    assert about["name"] == "tap-kingdee"
    settings = about["settings"]["properties"]
    assert settings["password"]["secret"] is True and settings["app_secret"]["secret"] is True
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(CONFIG))
    catalog = json.loads(run_tap("--discover", "--config", str(cfg)).stdout)
    entries = {s["tap_stream_id"]: s for s in catalog["streams"]}
    assert set(entries) == set(STREAMS)
    assert entries["customers"]["replication_key"] == "FModifyDate"
    assert entries["sales_orders"]["schema"]["properties"]["lines"]["type"] == ["array", "null"]


def test_cli_sync_emits_records_and_resumable_state(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(CONFIG))
    out = run_tap("--config", str(cfg)).stdout
    messages = [json.loads(line) for line in out.splitlines() if line.strip()]
    records = [m for m in messages if m["type"] == "RECORD"]
    for stream in STREAMS:
        assert sorted(m["record"][ID[stream]] for m in records if m["stream"] == stream) == truth_ids(
            SIM, stream
        )
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    final = states[-1]["bookmarks"]
    assert set(final) >= set(STREAMS) and all("tiebreak_value" in final[s] for s in STREAMS)
    state = tmp_path / "state.json"
    state.write_text(json.dumps(states[-1]))
    rerun = [
        json.loads(line) for line in run_tap("--config", str(cfg), "--state", str(state)).stdout.splitlines()
    ]
    assert [m for m in rerun if m["type"] == "RECORD"] == []
