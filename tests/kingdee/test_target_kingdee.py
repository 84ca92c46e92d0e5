"""target-kingdee as a plain Singer target (a subprocess reading stdin) against the simulator."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCHEMA = {
    "type": "SCHEMA",
    "stream": "accounts",
    "schema": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": ["string", "null"]},
            "phone": {"type": ["string", "null"]},
            "credit_code": {"type": ["string", "null"]},
        },
    },
    "key_properties": ["id"],
}


def run_target(
    sim, tmp_path: Path, records: list[dict], extra: dict | None = None
) -> subprocess.CompletedProcess:
    c = sim.credentials()
    config = {
        "base_url": sim.base_url,
        "acct_id": c["acct_id"],
        "username": c["username"],
        "password": c["password"],
        "state_db": str(tmp_path / "ledger.sqlite"),
        "max_retries": 1,
        **(extra or {}),
    }
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(config))
    lines = [SCHEMA, *({"type": "RECORD", "stream": "accounts", "record": r} for r in records)]
    return subprocess.run(
        [sys.executable, "-m", "connectors.kingdee.target", "--config", str(cfg)],
        input="\n".join(json.dumps(m, ensure_ascii=False) for m in lines) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "TONGBU_HOME": str(tmp_path)},
    )


def results(tmp_path: Path) -> list[tuple]:
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        return db.execute(
            "SELECT hub_id, external_id, op, success, error_class, error_message FROM write_results ORDER BY id"
        ).fetchall()


def test_new_records_in_one_batch_save_then_only_changes(sim, tmp_path) -> None:
    records = [{"id": i, "name": f"目标公司{i}", "phone": f"021-{i}"} for i in range(1, 6)]
    done = run_target(sim, tmp_path, records)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (sim.stats()["batch_saves"], sim.stats()["saves"]) == (1, 0)
    assert sim.counts()["BD_Customer"] == 13
    created = results(tmp_path)
    assert [(r[2], r[3]) for r in created] == [("create", 1)] * 5 and all(r[1] for r in created)
    # The same records again: no write at all; one changed: exactly one Save of that one field.
    records[2]["phone"] = "021-changed"
    sim.reset_stats()
    done = run_target(sim, tmp_path, records)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (sim.stats()["saves"], sim.stats()["batch_saves"], sim.stats()["fields_written"]) == (1, 0, 1)
    ext = created[2][1]
    assert next(t for t in sim.truth("BD_Customer") if str(t["FCUSTID"]) == ext)["FTEL"] == "021-changed"
    assert [r[2] for r in results(tmp_path)[5:]] == [
        "unchanged",
        "unchanged",
        "update",
        "unchanged",
        "unchanged",
    ]


def test_a_lost_batch_answer_is_found_again_not_duplicated(sim, tmp_path) -> None:
    records = [{"id": i, "name": f"丢包公司{i}"} for i in range(1, 4)]
    sim.set_faults("lost_response=1")
    done = run_target(sim, tmp_path, records)
    sim.set_faults(None)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [r[4] for r in results(tmp_path)] == ["transient"] * 3
    done = run_target(sim, tmp_path, records)
    assert done.returncode == 0
    names = [t["FName"] for t in sim.truth("BD_Customer") if t["FName"].startswith("丢包公司")]
    assert sorted(names) == ["丢包公司1", "丢包公司2", "丢包公司3"]  # applied once, found by intent
    assert sim.stats()["batch_saves"] == 1


def test_a_refused_record_is_reported_with_kingdee_reason_and_the_rest_written(sim, tmp_path) -> None:
    taken = sim.truth("BD_Customer", limit=1)[0]["FNumber"]
    records = [{"id": 1, "name": "好公司"}, {"id": 2, "name": None}, {"id": 3, "name": "另一家"}]
    done = run_target(sim, tmp_path, records)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = results(tmp_path)
    assert [(r[0], r[3]) for r in rows] == [("1", 1), ("2", 0), ("3", 1)]
    assert rows[1][4] == "rejected" and "FName" in rows[1][5]
    assert "Traceback" not in done.stderr
    assert taken  # untouched
