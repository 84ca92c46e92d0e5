"""Bad Singer input to tongbu's targets: one clear line per bad message, no traceback, nothing lost.

A corpus of broken messages is interleaved with good ones and piped into the real ``target-crm``
process: every bad message is named on stderr (input line, stream, problem), the good records land,
the bad ones are in the quarantine with the reason, and the final STATE is the last good one.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from connectors.kit.singer_input import MAX_LINE_BYTES, SingerInputReader, check_message
from connectors.wecom.simulator import WeComSimulator
from connectors.wecom.target import TargetWeCom
from tongbu.db import get_engine
from tongbu.hub.store import hub_table
from tongbu.state.models import QuarantinedRecord

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = {
    "type": "SCHEMA",
    "stream": "accounts",
    "key_properties": ["source_id"],
    "schema": {"properties": {"source_id": {"type": "string"}, "name": {"type": "string"}}},
}


def record(source_id: str, name: str = "华东贸易有限公司", stream: str = "accounts") -> dict:
    return {"type": "RECORD", "stream": stream, "record": {"source_id": source_id, "name": name}}


def line(message: object) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode("utf-8")


# (raw input line, stream named in the error or None, words the error must contain)
BAD: list[tuple[bytes, str | None, str]] = [
    (b"this is not json", None, "not valid JSON"),
    (b"[1, 2, 3]", None, "a JSON array is not a Singer message"),
    (b'"RECORD"', None, "a JSON string is not a Singer message"),
    (line({"type": "RECORDS", "stream": "accounts"}), None, "unknown message type 'RECORDS'"),
    (line({"stream": "accounts", "record": {}}), None, "no 'type'"),
    (line(record("C1", stream="contacts")), "contacts", "RECORD before any usable SCHEMA"),
    (
        line({"type": "RECORD", "stream": "accounts", "record": "oops"}),
        "accounts",
        "'record' is a JSON string",
    ),
    (line({"type": "RECORD", "stream": "accounts", "record": [1]}), "accounts", "'record' is a JSON array"),
    (line({"type": "RECORD", "record": {"source_id": "X"}}), None, "RECORD without a 'stream'"),
    (line({"type": "RECORD", "stream": 7, "record": {}}), None, "'stream' must be a non-empty string"),
    (line({"type": "STATE", "value": "not-an-object"}), None, "STATE 'value' is a JSON string"),
    (line({"type": "STATE"}), None, "STATE without a 'value'"),
    (line({"type": "SCHEMA", "stream": "accounts", "schema": "x"}), "accounts", "'schema' must be an object"),
    (
        b'{"type": "RECORD", "stream": "accounts", "record": {"source_id": "\xff\xfe"}}',
        None,
        "not valid UTF-8",
    ),
    (line(record("BIG", "大" * (MAX_LINE_BYTES // 3 + 10))), None, "over the 16,777,216-byte limit"),
]


def corpus() -> tuple[bytes, list[tuple[int, str | None, str]]]:
    """Good and bad lines interleaved; returns the input and (line number, stream, words) per bad one."""
    lines: list[bytes] = [line(SCHEMA)]
    expected: list[tuple[int, str | None, str]] = []
    for i, (raw, stream, words) in enumerate(BAD):
        lines.append(line(record(f"A{i}")))
        lines.append(raw)
        expected.append((len(lines), stream, words))
    lines.append(line({"type": "STATE", "value": {"bookmarks": {"accounts": "A-last"}}}))
    lines.append(b"")  # a blank line is not an error
    return b"\n".join(lines) + b"\n", expected


def test_every_bad_message_is_one_line_and_nothing_is_lost(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    (tmp_path / "target.json").write_text(json.dumps({"database_url": url, "source_system": "erp"}))
    data, expected = corpus()
    out = subprocess.run(
        [sys.executable, "-m", "connectors.crm.target", "--config", "target.json"],
        input=data,
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "TONGBU_HOME": str(tmp_path / "home"), "PATH": ""},
    )
    stderr = out.stderr.decode("utf-8", errors="replace")
    assert out.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    reported = [ln for ln in stderr.splitlines() if "bad Singer message" in ln]
    assert len(reported) == len(expected), "\n".join(reported)
    for shown, (number, stream, words) in zip(reported, expected, strict=True):
        assert shown.startswith(f"target-crm: bad Singer message at input line {number}"), shown
        assert words in shown, shown
        if stream is not None:
            assert f"stream {stream!r}" in shown, shown
        assert len(shown) < 300, "one short line, not the input echoed back"
    # The state is the last good one (the bad STATE lines never advanced it).
    assert json.loads(out.stdout.decode().strip().splitlines()[-1]) == {"bookmarks": {"accounts": "A-last"}}
    engine = get_engine(url)
    with engine.connect() as conn:
        accounts = hub_table("accounts")
        landed = set(conn.execute(select(accounts.c.source_id)).scalars())
        quarantined = conn.execute(select(QuarantinedRecord.__table__)).mappings().all()
    assert landed == {f"A{i}" for i in range(len(BAD))}
    # Every bad message except the two STATEs is in the quarantine, with its line and reason.
    assert len(quarantined) == len(BAD) - 2
    assert {q["stage"] for q in quarantined} == {"input"}
    by_line = {q["payload"]["input_line"]: q for q in quarantined}
    for number, _stream, words in expected:
        if "STATE" in words:
            assert number not in by_line
        else:
            assert words in by_line[number]["reason"]
    big = next(q for q in quarantined if "limit" in q["reason"])
    assert big["payload"]["truncated"] is True and len(big["payload"]["raw"]) <= 64 * 1024
    oops = next(q for q in quarantined if "'record' is a JSON string" in q["reason"])
    assert oops["payload"]["message"]["record"] == "oops" and oops["stream"] == "accounts"


def test_check_message_accepts_what_the_spec_allows() -> None:
    schemas = {"accounts"}
    assert check_message(record("A1"), schemas) == (None, "accounts")
    assert check_message(SCHEMA, set()) == (None, "accounts")
    assert check_message({"type": "STATE", "value": {}}, schemas) == (None, None)
    assert check_message({"type": "ACTIVATE_VERSION", "stream": "accounts", "version": 3}, schemas)[0] is None
    assert check_message({"type": "ACTIVATE_VERSION", "stream": "accounts", "version": True}, schemas)[0]


@pytest.mark.wecom_sim(records=10, seed=3)
def test_target_wecom_reports_bad_messages_and_writes_the_good_ones(
    sim: WeComSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    ext = next(sim.external_userids())
    schema = {
        "type": "SCHEMA",
        "stream": "contact_tags",
        "key_properties": ["external_userid"],
        "schema": {"properties": {"external_userid": {"type": "string"}, "tag_group": {"type": "string"}}},
    }
    good = {"external_userid": ext, "tag_group": "客户等级", "tags": ["B类客户"]}
    lines = [
        json.dumps({"type": "SCHEMA", "stream": "orders", "schema": {"properties": {}}}),
        json.dumps(schema),
        json.dumps({"type": "RECORD", "stream": "contact_tags", "record": "oops"}),
        "not json",
        json.dumps({"type": "RECORD", "stream": "orders", "record": {}}),
        json.dumps({"type": "RECORD", "stream": "contact_tags", "record": good}, ensure_ascii=False),
    ]
    config = {
        "corp_id": sim.corp_id,
        "corp_secret": sim.credentials()["corp_secret"],
        "base_url": sim.base_url,
    }
    target = TargetWeCom(config=config, parse_env_config=False)
    target.listen(io.StringIO("\n".join(lines) + "\n"))
    err = [ln for ln in capsys.readouterr().err.splitlines() if "bad Singer message" in ln]
    assert [e.split(": ", 2)[1] for e in err] == [
        "bad Singer message at input line 1, stream 'orders'",
        "bad Singer message at input line 3, stream 'contact_tags'",
        "bad Singer message at input line 4",
        "bad Singer message at input line 5, stream 'orders'",
    ]
    assert "writes the stream 'contact_tags', not 'orders'" in err[0]
    assert target.writer.stats.failed == 4 and target.writer.stats.records == 1
    tags = {t["tag_name"] for f in sim.contact_detail(ext)["follow_user"] for t in f["tags"]}
    assert "B类客户" in tags
    assert isinstance(target.message_reader, SingerInputReader)
