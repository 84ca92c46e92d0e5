"""tap-crm reads the hub incrementally; tap-crm | target-crm copies a hub into another, exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from connectors.crm.tap import TapCRM
from tongbu.db import get_engine
from tongbu.hub.store import HubStore

BIN = Path(sys.executable).parent


def _seed(url: str, n: int) -> None:
    engine = get_engine(url)
    rows = [
        {"source_id": f"SO{i}", "order_no": f"XSDD{i:05d}", "amount": Decimal("12345678901234.56")}
        for i in range(n)
    ]
    with engine.begin() as conn:
        HubStore(engine).upsert(conn, "sales_orders", rows, source_system="kingdee")


def test_tap_crm_reads_in_bookmark_order_and_resumes_after_the_bookmark(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    _seed(url, 30)
    tap = TapCRM(config={"database_url": url, "page_size": 7}, parse_env_config=False)
    stream = tap.streams["sales_orders"]
    records = list(stream.get_records(None))
    assert len(records) == 30 and [r["id"] for r in records] == sorted(r["id"] for r in records)
    assert records[0]["amount"] == Decimal("12345678901234.56")  # money stays exact
    bookmark = stream.cursor_for_record(records[19])
    resumed = TapCRM(
        config={"database_url": url, "page_size": 7},
        state={"bookmarks": {"sales_orders": bookmark}},
        parse_env_config=False,
    )
    rest = list(resumed.streams["sales_orders"].get_records(None))
    assert [r["id"] for r in rest] == [r["id"] for r in records[20:]]


def test_tap_crm_pipes_into_target_crm(tmp_path: Path) -> None:
    src, dst = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    _seed(src, 25)
    (tmp_path / "tap.json").write_text(json.dumps({"database_url": src}), encoding="utf-8")
    (tmp_path / "target.json").write_text(
        json.dumps({"database_url": dst, "source_system": "hub_a"}), encoding="utf-8"
    )
    tap = subprocess.Popen(
        [str(BIN / "tap-crm"), "--config", "tap.json"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    out = subprocess.run(
        [str(BIN / "target-crm"), "--config", "target.json"],
        stdin=tap.stdout,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    tap.wait(60)
    assert out.returncode == 0, out.stderr[-2000:]
    engine = get_engine(dst)
    with engine.connect() as conn:
        hub = HubStore(engine)
        assert hub.count(conn, "sales_orders", source_system="hub_a") == 25
        row = hub.get(conn, "sales_orders", "hub_a", "SO3")
    assert row["order_no"] == "XSDD00003" and row["amount"] == Decimal("12345678901234.56")
