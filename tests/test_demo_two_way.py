"""``tongbu demo --two-way`` as a user runs it: every claim shown, no secret in its output or files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from connectors.kingdee.simulator import KingdeeSimulator
from tongbu.demo_two_way import run_two_way_demo

ROOT = Path(__file__).resolve().parent.parent


def test_two_way_demo_from_the_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "TONGBU_PROJECT": str(ROOT / "tongbu.yaml"), "COLUMNS": "120"}
    out = subprocess.run(
        [sys.executable, "-m", "tongbu.cli", "demo", "--two-way"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for shown in (
        "merged field by field",
        "review queue: conflict",
        "0 write calls to Kingdee",
        "bill number",
    ):
        assert shown in out.stdout
    password = KingdeeSimulator.PASSWORD
    assert password not in out.stdout and password not in out.stderr
    for path in Path(os.environ["TONGBU_HOME"]).rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), f"password found in {path}"


def test_two_way_demo_figures(monkeypatch) -> None:
    monkeypatch.setenv("TONGBU_PROJECT", str(ROOT / "tongbu.yaml"))
    figures = run_two_way_demo(records=12)
    assert figures["echo_writes"] == 0
    assert figures["merged"]["erp_updates"] == 1
    assert figures["order"]["erp_status"] == "approved" and figures["order"]["erp_number"]
