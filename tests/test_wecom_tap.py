"""tap-wecom against the simulator: the SDK's standard tests, one record per contact, Singer CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from connectors.kit.server import free_port
from connectors.wecom.client import RetryPolicy, WeComClient
from connectors.wecom.records import contact_from_get, group_chat_record
from connectors.wecom.scan import ScanReport, scan_external_contacts
from connectors.wecom.simulator import WeComSimulator
from connectors.wecom.tap import TapWeCom

ROOT = Path(__file__).resolve().parent.parent

# get_tap_test_class needs the config at import time: the simulator gets its port now, starts below.
SIM_PORT = free_port()
SIM = WeComSimulator(records=250, seed=13)
CONFIG = {
    "corp_id": SIM.corp_id,
    "corp_secret": SIM.credentials()["corp_secret"],
    "base_url": f"http://127.0.0.1:{SIM_PORT}",
    "batch_limit": 30,
}


@pytest.fixture(scope="module", autouse=True)
def module_simulator() -> Iterator[WeComSimulator]:
    SIM.start("127.0.0.1", SIM_PORT)
    yield SIM
    SIM.stop()


TestTapWeComStandard = get_tap_test_class(
    TapWeCom, config=CONFIG, suite_config=SuiteConfig(max_records_limit=1000)
)


def test_external_contacts_are_one_record_per_contact_equal_to_get() -> None:
    tap = TapWeCom(config=CONFIG, parse_env_config=False)
    stream = tap.streams["external_contacts"]
    records = list(stream.get_records(None))
    ids = Counter(r["external_userid"] for r in records)
    assert len(ids) == SIM.contact_count == len(records)  # contacts followed by several reps appear once
    multi = [r for r in records if len(r["follow_user"]) > 1]
    assert multi, "the simulated corp has contacts with several follow users"
    truth = {d["external_contact"]["external_userid"]: contact_from_get(d) for d in SIM.truth_contacts()}
    assert all(truth[r["external_userid"]] == r for r in records)  # batch and get normalise identically
    assert stream.scan_report is not None and stream.scan_report.complete
    pairs = SIM.follow_pair_count
    # the fewest batch/get_by_user calls the page size allows (one block of < 100 employees)
    assert tap.client.calls["externalcontact/batch/get_by_user"] == -(-pairs // 30)


def test_corp_tags_and_group_chats() -> None:
    tap = TapWeCom(config=CONFIG, parse_env_config=False)
    tags = list(tap.streams["corp_tags"].get_records(None))
    assert {(t["group_name"], t["tag_name"]) for t in tags} >= {("客户等级", "A类客户"), ("客户来源", "展会")}
    chats = list(tap.streams["group_chats"].get_records(None))
    assert sorted(c["chat_id"] for c in chats) == sorted(SIM.group_chat_ids())
    first = chats[0]
    assert first == group_chat_record(SIM.group_chat_detail(first["chat_id"]), 0)
    assert first["external_member_count"] >= 1


def test_scan_survives_token_expiry_and_limits() -> None:
    sim = WeComSimulator(
        records=400, seed=14, faults="session_expiry=4,throttle=0.1,concurrency_rate=0.1,busy=0.05"
    )
    sim.start()
    try:
        client = WeComClient(
            sim.corp_id,
            sim.credentials()["corp_secret"],
            base_url=sim.base_url,
            retry=RetryPolicy(max_retries=11, backoff_base=0.001, backoff_max=0.01),
        )
        report = ScanReport("external_contacts")
        records = list(scan_external_contacts(client, report, batch_limit=20))
        assert report.complete and len(records) == sim.contact_count == 400
        assert client.token_fetches > 3 and client.errors[42001] > 3
        assert client.errors[45009] and client.errors[45033]
    finally:
        sim.stop()


def test_an_interrupted_scan_is_not_complete() -> None:
    client = WeComClient(SIM.corp_id, SIM.credentials()["corp_secret"], base_url=SIM.base_url)
    report = ScanReport("external_contacts")
    gen = scan_external_contacts(client, report, batch_limit=50)
    next(gen)
    gen.close()  # the consumer stops early
    assert not report.complete


def test_runs_as_a_plain_singer_program(tmp_path: Path) -> None:
    cfg = tmp_path / "wecom.json"
    cfg.write_text(json.dumps(CONFIG))
    about = subprocess.run(
        [sys.executable, "-m", "connectors.wecom.tap", "--about", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    info = json.loads(about.stdout)
    assert info["name"] == "tap-wecom" and "corp_secret" in json.dumps(info["settings"])
    out = subprocess.run(
        [sys.executable, "-m", "connectors.wecom.tap", "--config", str(cfg)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    messages = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    records = Counter(m["stream"] for m in messages if m["type"] == "RECORD")
    assert records["external_contacts"] == SIM.contact_count
    assert records["group_chats"] == len(SIM.group_chat_ids()) and records["corp_tags"] >= 19
    assert CONFIG["corp_secret"] not in out.stderr  # the secret never reaches the logs
