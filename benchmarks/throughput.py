"""Throughput of the sync path: synthetic tap → 10-field mapping → CRM hub on SQLite.

Measured in one run, each phase in its own fresh subprocess (so peak memory is per phase):

* ``raw``: a raw ``sqlite3.executemany`` upsert of the already-mapped rows (the floor);
* ``inprocess``: the in-process runner, full sync of N records into an empty hub;
* ``reupsert``: the in-process runner again, a --full-refresh of all N records into the populated hub;
* ``incremental``: after 1 % of the source changed, an incremental run (cost vs. the full run);
* ``pipe``: the same tap and target as a Singer subprocess pipe (``tap-synthetic | target-crm``);
* ``inprocess_small``: the in-process runner on N/10 records, to show memory is flat in N.

Usage: ``python benchmarks/throughput.py [--records 1000000] [--pipe-records N] [--json]``.
With ``--json`` the last line is
``{"records", "inprocess_rps", "reupsert_rps", "subprocess_pipe_rps", "raw_insert_rps", "peak_rss_mb", ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _project(records: int, changed: int = 0):
    from pipelines.project import Project

    return Project.model_validate(
        {
            "connections": {
                "synthetic": {"connector": "synthetic", "config": {"records": records, "changed": changed}}
            },
            "pipelines": {
                "bench": {
                    "source": {"connection": "synthetic", "stream": "records"},
                    "mapping": str(ROOT / "mappings/library/synthetic_to_crm.yaml"),
                    "target": {"object": "accounts"},
                    "batch_size": 5000,
                }
            },
            "root": ROOT,
        }
    )


def _peak_mb() -> float:
    # The largest of this process and its children (the runner's reader process, the pipe's tap and
    # target), so forking work out cannot hide memory.
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def phase_runner(db: str, records: int, changed: int, full_refresh: bool, mode: str) -> dict:
    """Run the pipeline once in this process and report its figures."""
    from pipelines.runner import Runner
    from tongbu.db import get_engine

    engine = get_engine(f"sqlite:///{db}")
    project = _project(records, changed)
    for spec in project.pipelines.values():
        spec.name = "bench"
    runner = Runner(project, engine)
    # Every phase runs in a fresh interpreter; warm the imports a long-running scheduler (Dagster, the
    # CLI in a loop) already has, so the figure is the run and not Python's start-up. Cold start is
    # reported separately.
    t_cold = time.perf_counter()
    import singer_sdk  # noqa: F401

    import connectors.synthetic.tap  # noqa: F401

    runner.mapping(project.pipeline("bench"))
    cold = time.perf_counter() - t_cold
    t0 = time.perf_counter()
    res = runner.run("bench", full_refresh=full_refresh, mode=mode)
    secs = time.perf_counter() - t0
    return {
        "read": res.rows_read,
        "written": res.rows_written,
        "unchanged": res.rows_unchanged,
        "quarantined": res.rows_quarantined,
        "seconds": secs,
        "rps": res.rows_read / secs,
        "peak_rss_mb": _peak_mb(),
        "warmup_s": cold,
    }


def phase_raw(db: str, records: int) -> dict:
    """The floor: pre-mapped tuples upserted with sqlite3's executemany, no framework at all."""
    from connectors.synthetic.tap import SyntheticRecords

    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute(
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, tenant_id TEXT, source_system TEXT, source_id TEXT,"
        " row_hash TEXT, name TEXT, credit_code TEXT, grade TEXT, industry TEXT, region TEXT, phone TEXT,"
        " owner TEXT, status TEXT, source_modified_at TEXT, UNIQUE (tenant_id, source_system, source_id))"
    )
    sql = (
        "INSERT INTO accounts (tenant_id, source_system, source_id, row_hash, name, credit_code, grade, industry,"
        " region, phone, owner, status, source_modified_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
        " ON CONFLICT (tenant_id, source_system, source_id) DO UPDATE SET name=excluded.name,"
        " credit_code=excluded.credit_code, grade=excluded.grade, industry=excluded.industry,"
        " region=excluded.region, phone=excluded.phone, owner=excluded.owner, status=excluded.status,"
        " source_modified_at=excluded.source_modified_at, row_hash=excluded.row_hash"
        " WHERE accounts.row_hash <> excluded.row_hash"
    )
    gen = SyntheticRecords.__new__(SyntheticRecords)
    # Pre-build the rows outside the timed region: this phase measures only the database floor.
    rows = [
        ("default", "synthetic", str(i), "h", *list(r.values())[1:9], r["updated_at"])
        for i, r in ((i, gen._record(i, i, False)) for i in range(records))
    ]
    t0 = time.perf_counter()
    for i in range(0, len(rows), 5000):
        con.executemany(sql, rows[i : i + 5000])
        con.commit()
    secs = time.perf_counter() - t0
    return {"read": records, "seconds": secs, "rps": records / secs, "peak_rss_mb": _peak_mb()}


def _sub(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"phase {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument(
        "--pipe-records", type=int, default=None, help="Records for the pipe phase (default: same)"
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--changed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--full-refresh", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.phase == "raw":
        print(json.dumps(phase_raw(a.db, a.records)))
        return
    if a.phase:
        print(json.dumps(phase_runner(a.db, a.records, a.changed, a.full_refresh, a.phase)))
        return

    n = a.records
    pipe_n = a.pipe_records or n
    with tempfile.TemporaryDirectory(prefix="tongbu-bench-") as tmp:
        os.environ["TONGBU_HOME"] = tmp
        r: dict[str, dict] = {}

        def say(name: str) -> None:
            x = r[name]
            print(
                f"{name:>16}: {x['read']:>9,} records in {x['seconds']:7.2f} s = {x['rps']:>10,.0f} rec/s,"
                f" peak RSS {x['peak_rss_mb']:6.1f} MB",
                file=sys.stderr,
                flush=True,
            )

        main_db = f"{tmp}/hub.db"
        r["raw"] = _sub(["--phase", "raw", "--db", f"{tmp}/raw.db", "--records", str(n)])
        say("raw")
        r["inprocess"] = _sub(["--phase", "inprocess", "--db", main_db, "--records", str(n)])
        say("inprocess")
        r["reupsert"] = _sub(["--phase", "inprocess", "--db", main_db, "--records", str(n), "--full-refresh"])
        say("reupsert")
        r["incremental"] = _sub(
            ["--phase", "inprocess", "--db", main_db, "--records", str(n), "--changed", str(max(n // 100, 1))]
        )
        say("incremental")
        r["pipe"] = _sub(["--phase", "pipe", "--db", f"{tmp}/pipe.db", "--records", str(pipe_n)])
        say("pipe")
        r["inprocess_small"] = _sub(
            ["--phase", "inprocess", "--db", f"{tmp}/small.db", "--records", str(max(n // 10, 1))]
        )
        say("inprocess_small")

    out = {
        "records": n,
        "inprocess_rps": round(r["inprocess"]["rps"]),
        "reupsert_rps": round(r["reupsert"]["rps"]),
        "subprocess_pipe_rps": round(r["pipe"]["rps"]),
        "raw_insert_rps": round(r["raw"]["rps"]),
        "peak_rss_mb": round(r["inprocess"]["peak_rss_mb"], 1),
        "peak_rss_mb_at_tenth": round(r["inprocess_small"]["peak_rss_mb"], 1),
        "inprocess_vs_pipe": round(r["inprocess"]["rps"] / r["pipe"]["rps"], 2),
        "reupsert_vs_first": round(r["reupsert"]["rps"] / r["inprocess"]["rps"], 2),
        "inprocess_vs_raw": round(r["inprocess"]["rps"] / r["raw"]["rps"], 2),
        "incremental_records": r["incremental"]["read"],
        "incremental_cost_vs_full": round(r["incremental"]["seconds"] / r["inprocess"]["seconds"], 4),
        "import_warmup_s": round(r["incremental"]["warmup_s"], 3),
        "pipe_records": pipe_n,
    }
    if a.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>26}: {v}")


if __name__ == "__main__":
    main()
