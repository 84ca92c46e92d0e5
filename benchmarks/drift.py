"""Drift check cost against its baseline, a full re-read of the stream, in the same run.

The Kingdee simulator runs in its own process (``tongbu simulate kingdee``) so it does not share this
process's interpreter lock. After an initial sync of the customers stream into an empty SQLite hub:

1. **baseline**: ``tongbu run kingdee_customers --full-refresh`` — what "just re-read everything"
   costs (every column, mapped, upserted as no-ops);
2. **drift check** of the unchanged stream (median of ``--repeat``): ids and ``FModifyDate`` alone at
   10,000 per request, coarse buckets on both sides, nothing to descend into;
3. ``--edits`` records back-dated behind the cursor (the incremental run misses them), then the check
   with ``--repair``: how long finding and fixing them takes, and that all were found.

    python benchmarks/drift.py [--records 100000] [--edits 100] [--repeat 3] [--json]

With ``--json`` the last line is ``{"records": N, "baseline_s": ..., "check_s": ..., "ratio": ...}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000, help="customers in the simulated ERP")
    ap.add_argument("--edits", type=int, default=100, help="records back-dated behind the cursor")
    ap.add_argument("--repeat", type=int, default=3, help="timed drift checks of the unchanged stream")
    ap.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    args = ap.parse_args(argv)
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print

    home = Path(tempfile.mkdtemp(prefix="tongbu-drift-bench-"))
    os.environ["TONGBU_HOME"] = str(home)
    os.environ.pop("TONGBU_DATABASE_URL", None)
    from connectors.kingdee.simulator import KingdeeSimulator
    from pipelines import drift
    from pipelines.project import load_project
    from pipelines.runner import Runner
    from tongbu.db import get_engine

    # Customers only are synced; the simulator seeds orders and receivables too (small, unused).
    proc = subprocess.Popen(
        [sys.executable, "-m", "tongbu.cli", "simulate", "kingdee", "--records", str(args.records)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if " listening on " not in first:
            raise SystemExit(f"simulator did not start: {first!r}")
        url = first.split(" listening on ")[1].split()[0]
        project = yaml.safe_load((ROOT / "tongbu.yaml").read_text(encoding="utf-8"))
        project["connections"] = {"kingdee": project["connections"]["kingdee"]}
        project["connections"]["kingdee"]["config"].update(
            base_url=url,
            acct_id=KingdeeSimulator.ACCT_ID,
            username=KingdeeSimulator.USERNAME,
            password="${KINGDEE_BENCH_PASSWORD}",
        )
        os.environ["KINGDEE_BENCH_PASSWORD"] = KingdeeSimulator.PASSWORD
        project["pipelines"] = {"kingdee_customers": project["pipelines"]["kingdee_customers"]}
        project["pipelines"]["kingdee_customers"]["mapping"] = str(
            ROOT / "mappings/library/kingdee_to_crm.yaml"
        )
        path = home / "tongbu.yaml"
        path.write_text(yaml.safe_dump(project, allow_unicode=True), encoding="utf-8")
        runner = Runner(load_project(path), get_engine())

        t = time.perf_counter()
        initial = runner.run("kingdee_customers")
        say(f"initial sync: {initial.rows_read:,} records in {time.perf_counter() - t:.2f}s")

        t = time.perf_counter()
        full = runner.run("kingdee_customers", full_refresh=True)
        baseline = time.perf_counter() - t
        say(
            f"baseline full re-read: {full.rows_read:,} read, {full.rows_written} written in {baseline:.2f}s "
            f"(page_size {runner.connection_config('kingdee').get('page_size')})"
        )

        times, report = [], None
        for _ in range(max(1, args.repeat)):
            t = time.perf_counter()
            report = drift.check(runner, "kingdee_customers")
            times.append(time.perf_counter() - t)
        assert report is not None and report.status == "in_sync", report.as_dict(limit=5)
        check_s = statistics.median(times)
        say(
            f"drift check (unchanged): {report.source_rows:,} source / {report.hub_rows:,} hub rows, "
            f"{report.source_requests} requests, {report.buckets_compared} buckets compared, "
            f"median {check_s:.3f}s of {[round(x, 3) for x in times]}"
        )
        ratio = baseline / check_s
        say(f"ratio baseline / drift check: {ratio:.1f}x")

        with runner.engine.connect() as conn:
            cursor = runner.state.get(conn, "kingdee", "customers") or {}
        at = dt.datetime.fromisoformat(cursor["replication_key_value"]) - dt.timedelta(seconds=30)
        edited = httpx.post(
            f"{url.rstrip('/')}/_sim/modify",
            json={
                "form": "BD_Customer",
                "count": args.edits,
                "modified_at": at.strftime("%Y-%m-%d %H:%M:%S"),
            },
        ).json()["ids"]
        missed = runner.run("kingdee_customers")
        t = time.perf_counter()
        fixed = drift.check(runner, "kingdee_customers", repair=True)
        repair_s = time.perf_counter() - t
        found = len(set(fixed.stale) & {str(i) for i in edited})
        again = drift.check(runner, "kingdee_customers")
        say(
            f"{len(edited)} back-dated edits: incremental run wrote {missed.rows_written}; check+repair found "
            f"{found}/{len(edited)} in {len(fixed.buckets)} bucket(s), re-read {fixed.repaired}, "
            f"{repair_s:.2f}s; next check: {again.status}"
        )
        result = {
            "records": report.source_rows,
            "baseline_s": round(baseline, 3),
            "check_s": round(check_s, 3),
            "ratio": round(ratio, 1),
            "check_requests": report.source_requests,
            "buckets_compared": report.buckets_compared,
            "edits": len(edited),
            "found": found,
            "repair_s": round(repair_s, 3),
            "after_repair": again.status,
        }
        if args.json:
            print(json.dumps(result))
        return result
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
