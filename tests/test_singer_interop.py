"""tap-kingdee as a plain Singer program: piped into target-crm, and into a third-party target."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from connectors.kingdee.simulator import KingdeeSimulator
from tongbu.db import get_engine
from tongbu.hub.store import HubStore

BIN = Path(sys.executable).parent


def _pipe(tap_cmd: list[str], target_cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    tap = subprocess.Popen(tap_cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=cwd)
    assert tap.stdout is not None
    try:
        return subprocess.run(
            target_cmd, stdin=tap.stdout, capture_output=True, text=True, timeout=300, cwd=cwd
        )
    finally:
        tap.stdout.close()
        tap.wait(60)


def test_tap_kingdee_pipes_into_target_crm(tmp_path: Path) -> None:
    with KingdeeSimulator(records=300, faults="malformed=0.03,same_second=0.3", seed=9) as sim:
        (tmp_path / "tap.json").write_text(json.dumps(sim.tap_config(page_size=70)), encoding="utf-8")
        url = f"sqlite:///{tmp_path / 'hub.db'}"
        (tmp_path / "target.json").write_text(
            json.dumps({"database_url": url, "source_system": "kingdee"}), encoding="utf-8"
        )
        out = _pipe(
            [str(BIN / "tap-kingdee"), "--config", "tap.json"],
            [str(BIN / "target-crm"), "--config", "target.json"],
            tmp_path,
        )
        broken = {str(r["FCUSTID"]) for r in sim.truth("BD_Customer") if r.get("_malformed")}
    assert out.returncode == 0, out.stderr[-2000:]
    states = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert states and set(states[-1]["bookmarks"]) == {"customers", "sales_orders", "receivables"}
    engine = get_engine(url)
    with engine.connect() as conn:
        hub = HubStore(engine)
        assert hub.count(conn, "accounts", source_system="kingdee") == 300 - len(broken)
        assert (
            hub.count(conn, "sales_orders", source_system="kingdee")
            + hub.count(conn, "receivables", source_system="kingdee")
            > 500
        )


@pytest.mark.slow
def test_tap_output_is_accepted_by_a_third_party_singer_target(tmp_path: Path) -> None:
    """target-jsonl (singer-python, jsonschema 2.6) validates every record against the tap's schemas."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    pip = subprocess.run(
        [str(env_dir / "bin/pip"), "install", "-q", "target-jsonl==0.1.4"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if pip.returncode != 0:
        if os.environ.get("TONGBU_REQUIRE_SERVICES") or os.environ.get("CI"):
            pytest.fail(f"cannot install target-jsonl from the package registry: {pip.stderr[-500:]}")
        pytest.skip("target-jsonl not installable here (no package registry)")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (tmp_path / "target.json").write_text(json.dumps({"destination_path": str(out_dir)}), encoding="utf-8")
    with KingdeeSimulator(records=150, faults="malformed=0.05", seed=4) as sim:
        (tmp_path / "tap.json").write_text(json.dumps(sim.tap_config(page_size=40)), encoding="utf-8")
        out = _pipe(
            [str(BIN / "tap-kingdee"), "--config", "tap.json"],
            [str(env_dir / "bin/target-jsonl"), "--config", "target.json"],
            tmp_path,
        )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = {p.name.split("-")[0]: len(p.read_text(encoding="utf-8").splitlines()) for p in out_dir.iterdir()}
    assert lines == {"customers": 150, "sales_orders": 150, "receivables": 150}
