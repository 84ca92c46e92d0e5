"""Throughput of the sync path: synthetic tap → 10-field mapping → CRM hub on SQLite (and PostgreSQL).

Measured in one run, each phase in its own fresh subprocess (so peak memory is per phase):

* ``raw``: the database floor for rows of the same width — on SQLite a raw ``sqlite3.executemany``
  upsert of the already-mapped rows; on PostgreSQL its own ``COPY`` of them (text format, batches of
  5,000, each committed) into a table with the hub table's columns and indexes;
* ``inprocess``: the in-process runner, full sync of N records into an empty hub;
* ``reupsert``: the in-process runner again, a --full-refresh of all N records into the populated hub;
* ``incremental``: after 1 % of the source changed, an incremental run (cost vs. the full run);
* ``pipe``: the same tap and target as a Singer subprocess pipe (``tap-synthetic | target-crm``);
* ``inprocess_small``: the in-process runner on N/10 records, to show memory is flat in N.

Usage: ``python benchmarks/throughput.py [--records 1000000] [--pipe-records N]
[--database-url postgresql+psycopg2://user@host/db] [--json]``.

With ``--database-url`` every phase runs a second time on that PostgreSQL server, each in a fresh
database the benchmark creates next to the given one (``tongbu_bench_<random>``, dropped afterwards;
the role needs ``CREATEDB``), so nothing is written into the database the URL names. With ``--json``
the last line is ``{"records", "inprocess_rps", "reupsert_rps", "subprocess_pipe_rps",
"raw_insert_rps", "peak_rss_mb", ..., "postgresql": {same keys, "copy_floor_rps", "inprocess_vs_copy"}}``
(the top-level keys are the SQLite figures).
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


def _url(db: str) -> str:
    return db if "://" in db else f"sqlite:///{db}"


def phase_runner(db: str, records: int, changed: int, full_refresh: bool, mode: str) -> dict:
    """Run the pipeline once in this process and report its figures."""
    from pipelines.runner import Runner
    from tongbu.db import get_engine

    engine = get_engine(_url(db))
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


def phase_copy(url: str, records: int) -> dict:
    """The PostgreSQL floor: its own COPY of pre-built rows of the same width, batches of 5,000."""
    import io

    import psycopg2
    from sqlalchemy.engine import make_url

    from connectors.synthetic.tap import SyntheticRecords

    u = make_url(url)
    con = psycopg2.connect(
        host=u.host, port=u.port or 5432, user=u.username, password=u.password, dbname=u.database
    )
    cur = con.cursor()
    # The hub's accounts table as far as these rows go: same columns, key, unique and index.
    cur.execute(
        "CREATE TABLE floor_accounts (id serial PRIMARY KEY, tenant_id varchar(64) NOT NULL,"
        " source_system varchar(32) NOT NULL, source_id varchar(128) NOT NULL, row_hash varchar(32) NOT NULL,"
        " name varchar(255), credit_code varchar(18), grade varchar(32), industry varchar(64),"
        " region varchar(64), phone varchar(32), owner varchar(64), status varchar(32),"
        " source_modified_at timestamptz, created_at timestamptz NOT NULL DEFAULT now(),"
        " updated_at timestamptz NOT NULL DEFAULT now(), UNIQUE (tenant_id, source_system, source_id));"
        " CREATE INDEX ON floor_accounts (credit_code)"
    )
    con.commit()
    gen = SyntheticRecords.__new__(SyntheticRecords)
    # Pre-build the COPY text outside the timed region: this phase measures only the database floor.
    chunks = []
    for start in range(0, records, 5000):
        lines = []
        for i in range(start, min(start + 5000, records)):
            r = gen._record(i, i, False)
            vals = list(r.values())[1:9]
            lines.append(
                "\t".join(["default", "synthetic", str(i), "0" * 32, *map(str, vals), r["updated_at"]])
            )
        chunks.append("\n".join(lines) + "\n")
    sql = (
        "COPY floor_accounts (tenant_id, source_system, source_id, row_hash, name, credit_code, grade,"
        " industry, region, phone, owner, status, source_modified_at) FROM STDIN"
    )
    t0 = time.perf_counter()
    for chunk in chunks:
        cur.copy_expert(sql, io.StringIO(chunk), size=1 << 22)
        con.commit()
    secs = time.perf_counter() - t0
    con.close()
    return {"read": records, "seconds": secs, "rps": records / secs, "peak_rss_mb": _peak_mb()}


class _PgDatabases:
    """Fresh databases on the server of ``url`` for the PostgreSQL phases, dropped afterwards."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine

        self.base = url
        self.admin = create_engine(url, isolation_level="AUTOCOMMIT")
        self.tag = os.urandom(4).hex()
        self.names: list[str] = []

    def new(self, name: str) -> str:
        from sqlalchemy import text
        from sqlalchemy.engine import make_url

        db = f"tongbu_bench_{self.tag}_{name}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{db}"'))
        self.names.append(db)
        return make_url(self.base).set(database=db).render_as_string(hide_password=False)

    def drop(self) -> None:
        from sqlalchemy import text

        with self.admin.connect() as conn:
            for db in self.names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        self.admin.dispose()


def _summary(r: dict[str, dict], n: int, pipe_n: int) -> dict:
    return {
        "records": n,
        "inprocess_rps": round(r["inprocess"]["rps"]),
        "reupsert_rps": round(r["reupsert"]["rps"]),
        "subprocess_pipe_rps": round(r["pipe"]["rps"]),
        "raw_insert_rps": round(r["raw"]["rps"]),
        "peak_rss_mb": round(r["inprocess"]["peak_rss_mb"], 1),
        "peak_rss_mb_at_tenth": round(r["inprocess_small"]["peak_rss_mb"], 1),
        "inprocess_small_rps": round(r["inprocess_small"]["rps"]),
        "inprocess_vs_pipe": round(r["inprocess"]["rps"] / r["pipe"]["rps"], 2),
        "reupsert_vs_first": round(r["reupsert"]["rps"] / r["inprocess"]["rps"], 2),
        "inprocess_vs_raw": round(r["inprocess"]["rps"] / r["raw"]["rps"], 2),
        "incremental_records": r["incremental"]["read"],
        "incremental_written": r["incremental"]["written"],
        "incremental_cost_vs_full": round(r["incremental"]["seconds"] / r["inprocess"]["seconds"], 4),
        "import_warmup_s": round(r["incremental"]["warmup_s"], 3),
        "pipe_records": pipe_n,
    }


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
    ap.add_argument(
        "--database-url", help="Also run every phase on this PostgreSQL server (fresh databases, dropped)"
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
    if a.phase == "copy":
        print(json.dumps(phase_copy(a.db, a.records)))
        return
    if a.phase:
        print(json.dumps(phase_runner(a.db, a.records, a.changed, a.full_refresh, a.phase)))
        return

    n = a.records
    pipe_n = a.pipe_records or n
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="tongbu-bench-") as tmp:
        os.environ["TONGBU_HOME"] = tmp
        backends = ["sqlite"] + (["postgresql"] if a.database_url else [])
        for backend in backends:
            r: dict[str, dict] = {}
            pg = _PgDatabases(a.database_url) if backend == "postgresql" else None

            def say(name: str, r: dict[str, dict] = r, backend: str = backend) -> None:
                x = r[name]
                print(
                    f"{backend:>10} {name:>16}: {x['read']:>9,} records in {x['seconds']:7.2f} s ="
                    f" {x['rps']:>10,.0f} rec/s, peak RSS {x['peak_rss_mb']:6.1f} MB",
                    file=sys.stderr,
                    flush=True,
                )

            try:
                if pg is None:
                    dbs = {k: f"{tmp}/{k}.db" for k in ("raw", "hub", "pipe", "small")}
                    r["raw"] = _sub(["--phase", "raw", "--db", dbs["raw"], "--records", str(n)])
                else:
                    dbs = {k: pg.new(k) for k in ("raw", "hub", "pipe", "small")}
                    r["raw"] = _sub(["--phase", "copy", "--db", dbs["raw"], "--records", str(n)])
                say("raw")
                hub = dbs["hub"]
                r["inprocess"] = _sub(["--phase", "inprocess", "--db", hub, "--records", str(n)])
                say("inprocess")
                r["reupsert"] = _sub(
                    ["--phase", "inprocess", "--db", hub, "--records", str(n), "--full-refresh"]
                )
                say("reupsert")
                r["incremental"] = _sub(
                    [
                        "--phase",
                        "inprocess",
                        "--db",
                        hub,
                        "--records",
                        str(n),
                        "--changed",
                        str(max(n // 100, 1)),
                    ]
                )
                say("incremental")
                r["pipe"] = _sub(["--phase", "pipe", "--db", dbs["pipe"], "--records", str(pipe_n)])
                say("pipe")
                r["inprocess_small"] = _sub(
                    ["--phase", "inprocess", "--db", dbs["small"], "--records", str(max(n // 10, 1))]
                )
                say("inprocess_small")
            finally:
                if pg is not None:
                    pg.drop()
            results[backend] = _summary(r, n, pipe_n)

    out = results["sqlite"]
    if "postgresql" in results:
        p = results["postgresql"]
        p["copy_floor_rps"] = p.pop("raw_insert_rps")
        p["inprocess_vs_copy"] = p.pop("inprocess_vs_raw")
        p["inprocess_vs_sqlite"] = round(p["inprocess_rps"] / out["inprocess_rps"], 2)
        out["postgresql"] = p
    if a.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            if isinstance(v, dict):
                for k2, v2 in v.items():
                    print(f"{k + '.' + k2:>37}: {v2}")
            else:
                print(f"{k:>37}: {v}")


if __name__ == "__main__":
    main()
