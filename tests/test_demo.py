"""The demo end to end, as a user runs it: no secret in its output or outside the vault."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from connectors.kingdee.simulator import KingdeeSimulator

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_and_never_shows_the_erp_password(tmp_path: Path) -> None:
    env = {**os.environ, "TONGBU_PROJECT": str(ROOT / "tongbu.yaml"), "COLUMNS": "120"}
    out = subprocess.run(
        [sys.executable, "-m", "tongbu.cli", "-v", "demo", "--records", "400", "--change", "20"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "hub vs ERP truth" in out.stdout and "NO" not in out.stdout
    assert out.stdout.count("yes") == 3
    password = KingdeeSimulator.PASSWORD
    home = Path(os.environ["TONGBU_HOME"])
    assert password not in out.stdout and password not in out.stderr
    for path in home.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), f"password found in {path}"


def test_shops_demo_runs_end_to_end_without_showing_a_secret(tmp_path: Path) -> None:
    from connectors.shopify.simulator import ShopifySimulator
    from connectors.youzan.simulator import YouzanSimulator

    env = {**os.environ, "COLUMNS": "120"}
    out = subprocess.run(
        [sys.executable, "-m", "tongbu.cli", "-v", "demo", "--shops", "--records", "200"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "status cancelled" in out.stdout and "status refunded" in out.stdout
    assert "shop: 40 matched" in out.stdout and "yz: 40 matched" in out.stdout
    assert "'shopify': 200" in out.stdout and "'youzan': 200" in out.stdout
    for secret in (ShopifySimulator.CLIENT_SECRET, YouzanSimulator.CLIENT_SECRET):
        assert secret not in out.stdout and secret not in out.stderr
