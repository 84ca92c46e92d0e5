"""Tenants × pipelines through Dagster's Celery executor on PostgreSQL, for 1, 2 and 4 workers.

Each tenant has its own project file (three synthetic pipelines into ``crm/accounts``) and its own run
of ``sync_all``; all tenants' runs are launched at once (``dagster job execute`` of the production
code location, ``TONGBU_DAGSTER_EXECUTOR=celery``), their steps executed by W real ``dagster-celery``
workers over the local RabbitMQ (a fresh vhost), Dagster storage and hub on the local PostgreSQL
(fresh databases). Reported per W: wall time from launch to the last run's end, records/s, and the
checks (every tenant exact: 0 lost, 0 duplicated, 0 cross-tenant rows; every run SUCCESS).

Baseline in the same run: the in-process runner syncing the same total number of records, one
pipeline after another, into a fresh PostgreSQL hub (no Dagster, no Celery).

Usage: ``python benchmarks/celery_throughput.py [--tenants 10] [--records 100000] [--workers 1,2,4]
[--json]``. The defaults are the issue's target; on the 2-core dev machine use fewer (see
docs/benchmarks.md for what was run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from tests.helpers.dagster_prod import (  # noqa: E402
    BIN,
    CeleryWorkers,
    dagster_env,
    dagster_home,
    fresh_database,
    rabbit_vhost,
    write_project,
)

PIPELINES = 3


def _projects(where: Path, tenants: int, records: int) -> list[tuple[str, Path]]:
    where.mkdir(parents=True, exist_ok=True)
    out = []
    for t in range(tenants):
        tenant = f"t{t:02d}"
        conns = {
            f"erp{p}": {"connector": "synthetic", "config": {"records": records}} for p in range(PIPELINES)
        }
        out.append((tenant, write_project(where / f"{tenant}.yaml", tenant, conns)))
    return out


def _verify(hub_url: str, tenants: list[str], records: int) -> dict[str, object]:
    engine = create_engine(hub_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT tenant_id, source_system, count(*), count(DISTINCT source_id) FROM accounts GROUP BY 1, 2"
                )
            ).all()
    finally:
        engine.dispose()
    seen = {(r[0], r[1]): (int(r[2]), int(r[3])) for r in rows}
    expected = {(t, f"erp{p}") for t in tenants for p in range(PIPELINES)}
    exact = all(seen.get(k) == (records, records) for k in expected)
    return {"exact": exact and set(seen) == expected, "cross_tenant_rows": len(set(seen) - expected)}


def run_celery(workers: int, tenants: int, records: int, pg_base: str, tmp: Path) -> dict[str, object]:
    with (
        fresh_database(pg_base, "tongbu_bench_hub") as hub,
        fresh_database(pg_base, "tongbu_bench_dg") as dg_url,
        rabbit_vhost() as broker,
    ):
        projects = _projects(tmp / f"w{workers}", tenants, records)
        home = dagster_home(tmp / f"w{workers}" / "dh")
        # the hub schema is created once here, not raced by the first steps (measured: sync, not DDL)
        base_env = dagster_env(
            home,
            dg_url,
            hub,
            projects[0][1],
            tmp / "th",
            TONGBU_DAGSTER_EXECUTOR="celery",
            TONGBU_CELERY_BROKER=broker,
            TONGBU_PROJECTS_DIR=str(projects[0][1].parent),
        )
        subprocess.run(
            [sys.executable, "-c", "from tongbu.db import get_engine; get_engine()"],
            env=base_env,
            check=True,
        )
        # Workers serve every tenant: each run names its tenant's code location (``-a tenant_<t>``),
        # and that name travels with each step to whichever worker takes it.
        base_env.pop("TONGBU_PROJECT")
        with CeleryWorkers(workers, broker, base_env, tmp / f"w{workers}" / "celery"):
            started = time.perf_counter()
            procs = []
            for tenant, _project in projects:
                env = base_env
                procs.append(
                    subprocess.Popen(
                        [
                            str(BIN / "dagster"),
                            "job",
                            "execute",
                            "-m",
                            "dagster_project.production",
                            "-a",
                            f"tenant_{tenant}",
                            "-j",
                            "sync_all",
                        ],
                        cwd=ROOT,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                )
            failed = 0
            for p in procs:
                _, err = p.communicate()
                if p.returncode != 0:
                    failed += 1
                    print(err[-2000:], file=sys.stderr)
            wall = time.perf_counter() - started
        check = _verify(hub, [t for t, _ in projects], records)
    total = tenants * PIPELINES * records
    return {
        "workers": workers,
        "wall_s": round(wall, 2),
        "records": total,
        "rps": round(total / wall),
        "failed_runs": failed,
        **check,
    }


def run_baseline(tenants: int, records: int, pg_base: str, tmp: Path) -> dict[str, object]:
    code = r"""
import sys, time
from pipelines.project import load_project
from pipelines.runner import Runner
from tongbu.db import get_engine
engine = get_engine(sys.argv[1])
t0 = time.perf_counter()
for path in sys.argv[2:]:
    project = load_project(path)
    runner = Runner(project, engine)
    for name in project.pipelines:
        runner.run(name)
print(time.perf_counter() - t0)
"""
    with fresh_database(pg_base, "tongbu_bench_hub") as hub:
        projects = _projects(tmp / "baseline", tenants, records)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TONGBU_HOME": str(tmp / "th")}
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from tongbu.db import get_engine; get_engine(sys.argv[1])",
                hub,
            ],
            env=env,
            check=True,
        )
        out = subprocess.run(
            [sys.executable, "-c", code, hub, *(str(p) for _, p in projects)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        wall = float(out.stdout.strip().splitlines()[-1])
        check = _verify(hub, [t for t, _ in projects], records)
    total = tenants * PIPELINES * records
    return {"workers": 0, "wall_s": round(wall, 2), "records": total, "rps": round(total / wall), **check}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tenants", type=int, default=10)
    ap.add_argument("--records", type=int, default=100_000, help="records per pipeline")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument(
        "--database-url",
        default=os.environ.get(
            "TONGBU_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
        ),
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        results.append(run_baseline(args.tenants, args.records, args.database_url, tmp))
        print(f"baseline (in-process runner, sequential): {results[-1]}", flush=True)
        for w in (int(x) for x in args.workers.split(",")):
            results.append(run_celery(w, args.tenants, args.records, args.database_url, tmp))
            r = results[-1]
            print(
                f"celery, {w} worker(s): {r} ({r['rps'] / results[0]['rps']:.2f}x the baseline)", flush=True
            )
    if args.json:
        print(
            json.dumps(
                {
                    "tenants": args.tenants,
                    "pipelines": PIPELINES,
                    "records_per_pipeline": args.records,
                    "results": results,
                }
            )
        )


if __name__ == "__main__":
    main()
