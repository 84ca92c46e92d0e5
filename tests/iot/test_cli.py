"""``tongbu iot register | unlinked | cases`` and the one-line errors of ``tongbu iot run``."""

from __future__ import annotations

import json
import time
from pathlib import Path

from typer.testing import CliRunner

from connectors.iot.ingest import IotWriter
from connectors.iot.payloads import Decoder
from tongbu.cli import app
from tongbu.db import get_engine


def test_register_links_devices_and_the_lists_show_the_rest(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    now = int(time.time() * 1000)
    items = [
        r
        for dn in ("SN-A", "SN-B")
        for r in Decoder().decode(f"/sys/pk/{dn}/thing/event/Fault/post",
                                  json.dumps({"id": "1", "params": {"value": {"ErrorCode": 4}, "time": now}}).encode())
    ]  # fmt: skip
    with get_engine().begin() as conn:
        IotWriter().write(conn, items)
    (tmp_path / "reg.csv").write_text("serial,account\nSN-A,ACC-7\n", encoding="utf-8")
    runner = CliRunner()
    out = runner.invoke(app, ["iot", "register", "reg.csv"])
    assert out.exit_code == 0 and "1 registration records loaded; 1 devices linked" in out.output
    out = runner.invoke(app, ["iot", "unlinked"])
    assert "SN-B" in out.output and "SN-A" not in out.output and "1 unlinked devices" in out.output
    out = runner.invoke(app, ["iot", "cases"])
    assert out.output.count("\topen\t") == 2 and "2 open cases" in out.output
    (tmp_path / "bad.csv").write_text("SN-C\n", encoding="utf-8")
    out = runner.invoke(app, ["iot", "register", "bad.csv"])
    assert out.exit_code == 1 and "bad.csv:1: expected serial,account" in out.output


def test_run_without_a_broker_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tongbu.yaml").write_text(
        "connections:\n  iot:\n    connector: iot\n    config: {broker: 'mqtt://127.0.0.1:1'}\n",
        encoding="utf-8",
    )
    out = CliRunner().invoke(app, ["iot", "run"])
    assert out.exit_code == 1 and "no MQTT broker at mqtt://127.0.0.1:1" in out.output
    assert "Traceback" not in out.output
    (tmp_path / "tongbu.yaml").write_text(
        "connections:\n  iot:\n    connector: iot\n    config: {brokr: 'mqtt://127.0.0.1:1'}\n",
        encoding="utf-8",
    )
    out = CliRunner().invoke(app, ["iot", "run"])
    assert out.exit_code != 0 and "brokr" in out.output and "Traceback" not in out.output
