"""What a Dagster run costs on top of the sync it runs, with the real Dagster instance and launcher.

Set-up (not timed): a synthetic source of N records (default 5,000) is fully synced into a seed hub;
the source then "edits" all N records, so every measured run is an **incremental sync of N rows**.
Each trial starts from a fresh copy of the seed hub.

Measured in one run, each variant ``--trials`` times, as ``dagster dev`` runs things: a code server
(``dagster api grpc``) per variant already up, a persistent ``DAGSTER_HOME`` instance with its
default run launcher (a fresh run-worker process per run), and the run submitted with ``dagster job
launch`` against that server. Figures per trial:

* ``tongbu_s`` — the sync's own duration (the runner's ``sync_runs.duration_s``);
* ``run_s`` — from the run's launch to its end, as the Dagster UI reports it (instance run stats);
* ``overhead_s`` — ``run_s - tongbu_s``: what Dagster costs on top of the sync;
* ``worker_start_s`` — launch to RUN_START (worker process start + code location load);
* ``steps`` — how many step processes / steps ran.

Variants: ``before`` = the definitions as they were (multiprocess executor: one Python process per
step — stream asset, hub object asset, the reconciliation check — each importing Dagster and tongbu,
the project file parsed on every call); ``after`` = ``dagster_project.definitions`` as shipped
(in-process executor, project parsed once per process). Also reported: the cold cost of one Python
process importing the code location (``import_s``), which each extra process pays.

Usage: ``python benchmarks/dagster_overhead.py [--records 5000] [--trials 3] [--json]``.
Target (issue 15): ``after`` overhead within 3 s of tongbu's own duration.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BEFORE_DEFS = '''
"""The code location as it was before issue 15: multiprocess executor, project parsed per call."""
import dagster as dg

import dagster_project.assets as assets
from pipelines.project import load_project

# undo the per-process project cache: every resource call parses and checks the file again
assets.load_project_cached = lambda path=None, strict=True: load_project(path, strict=strict)
defs = assets.build_definitions(executor=dg.multiprocess_executor)
'''


def _project_yaml(records: int, changed: int) -> str:
    import yaml

    return yaml.safe_dump(
        {
            "connections": {
                "synthetic": {"connector": "synthetic", "config": {"records": records, "changed": changed}}
            },
            "pipelines": {
                "bench": {
                    "source": {"connection": "synthetic", "stream": "records"},
                    "mapping": str(ROOT / "mappings/library/synthetic_to_crm.yaml"),
                    "target": {"object": "accounts"},
                    "schedules": False,
                }
            },
        }
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _seed(work: Path, records: int, env: dict[str, str]) -> Path:
    """The hub after a full sync of the unedited source (in a subprocess: its own engine cache)."""
    seed = work / "seed.db"
    (work / "seed.yaml").write_text(_project_yaml(records, 0), encoding="utf-8")
    code = (
        "from pipelines.project import load_project; from pipelines.runner import Runner; "
        "from tongbu.db import get_engine; from tongbu.migrate import upgrade_to_head; "
        f"e = get_engine({f'sqlite:///{seed}'!r}); upgrade_to_head(e); "
        f"r = Runner(load_project({str(work / 'seed.yaml')!r}), e).run('bench'); "
        "assert r.rows_written == r.rows_read > 0, r"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env)
    return seed


def _import_seconds(env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import dagster_project.definitions"], check=True, cwd=ROOT, env=env
    )
    return time.perf_counter() - t0


def _start_server(target: list[str], port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster", "api", "grpc", *target, "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        ok = subprocess.run(
            [sys.executable, "-m", "dagster", "api", "grpc-health-check", "-p", str(port)],
            cwd=ROOT,
            env=env,
            capture_output=True,
        )
        if ok.returncode == 0:
            return proc
        if proc.poll() is not None:
            raise RuntimeError(f"code server exited: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("code server did not come up in 180 s")


def _trial(variant: str, port: int, work: Path, seed: Path, hub: Path, env: dict[str, str]) -> dict:
    import dagster as dg
    from sqlalchemy import create_engine, text

    # A fresh inode for the hub: the code server's engine keeps whatever it had open untouched.
    tmp = hub.with_suffix(".tmp")
    shutil.copyfile(seed, tmp)
    for suffix in ("-wal", "-shm"):
        Path(str(hub) + suffix).unlink(missing_ok=True)
    os.replace(tmp, hub)
    ws = work / f"ws_{variant}.yaml"
    ws.write_text(
        f"load_from:\n  - grpc_server: {{host: 127.0.0.1, port: {port}, location_name: {variant}}}\n",
        encoding="utf-8",
    )
    run_id = str(uuid.uuid4())
    subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "job",
            "launch",
            "-w",
            str(ws),
            "-j",
            "sync_bench",
            "--run-id",
            run_id,
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    instance = dg.DagsterInstance.get()
    deadline = time.monotonic() + 600
    while True:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} did not finish in 600 s")
        time.sleep(0.1)  # a benchmark polling the instance, as the UI does
    if run.status != dg.DagsterRunStatus.SUCCESS:
        raise RuntimeError(f"{variant} run {run_id} ended {run.status}")
    stats = instance.get_run_stats(run_id)
    steps = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records
    engine = create_engine(f"sqlite:///{hub}")
    with engine.connect() as conn:
        tongbu_s, read = conn.execute(
            text(
                "SELECT duration_s, rows_read FROM sync_runs WHERE status='success' ORDER BY id DESC LIMIT 1"
            )
        ).one()
    engine.dispose()
    run_s = stats.end_time - stats.launch_time
    return {
        "rows": int(read),
        "tongbu_s": round(float(tongbu_s), 3),
        "run_s": round(run_s, 3),
        "overhead_s": round(run_s - float(tongbu_s), 3),
        "worker_start_s": round(stats.start_time - stats.launch_time, 3),
        "steps": len(steps),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tongbu-dagster-bench-"))
    home = work / "dagster_home"
    home.mkdir()
    # Launch at once: `dagster dev`'s queue adds up to `run_queue.dequeue_interval_seconds` (5 s by
    # default, 1 s with docs/dagster.yaml) before the launch, which this benchmark leaves out.
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
        "telemetry:\n  enabled: false\n",
        encoding="utf-8",
    )
    hub = work / "hub.db"
    (work / "tongbu.yaml").write_text(_project_yaml(args.records, args.records), encoding="utf-8")
    (work / "before_defs.py").write_text(BEFORE_DEFS, encoding="utf-8")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "TONGBU_HOME": str(work / "tongbu_home"),
        "TONGBU_PROJECT": str(work / "tongbu.yaml"),
        "TONGBU_DATABASE_URL": f"sqlite:///{hub}",
        "PYTHONPATH": str(ROOT),
    }
    os.environ.update({k: env[k] for k in ("DAGSTER_HOME", "TONGBU_HOME")})
    seed = _seed(work, args.records, env)
    shutil.copyfile(seed, hub)
    import_s = _import_seconds(env)
    servers = {}
    results: dict[str, list[dict]] = {"before": [], "after": []}
    try:
        for variant, target in (
            ("before", ["-f", str(work / "before_defs.py"), "-a", "defs"]),
            ("after", ["-m", "dagster_project.definitions", "-a", "defs"]),
        ):
            port = _free_port()
            servers[variant] = (port, _start_server(target, port, env, work / f"{variant}.log"))
        # Interleave the variants so a machine-load change hits both alike.
        for _ in range(args.trials):
            for variant, (port, _proc) in servers.items():
                results[variant].append(_trial(variant, port, work, seed, hub, env))
    finally:
        for _port, proc in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
    summary: dict = {"records": args.records, "trials": args.trials, "import_s": round(import_s, 3)}
    for variant, rows in results.items():
        summary[variant] = {
            key: round(statistics.median(r[key] for r in rows), 3)
            for key in ("tongbu_s", "run_s", "overhead_s", "worker_start_s", "steps")
        }
        summary[variant]["trials"] = rows
    summary["overhead_ratio_before_over_after"] = round(
        summary["before"]["overhead_s"] / max(summary["after"]["overhead_s"], 1e-3), 2
    )
    summary["target_met"] = summary["after"]["overhead_s"] <= 3.0
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(summary))
        return
    print(f"incremental sync of {args.records:,} rows, {args.trials} trials each (medians)")
    print(f"one process importing the code location: {import_s:.2f} s")
    for variant in ("before", "after"):
        s = summary[variant]
        print(
            f"{variant:>6}: run {s['run_s']:6.2f} s  tongbu {s['tongbu_s']:5.2f} s  overhead "
            f"{s['overhead_s']:5.2f} s  (worker start {s['worker_start_s']:.2f} s, {s['steps']:.0f} steps)"
        )
    print(
        f"overhead before/after: {summary['overhead_ratio_before_over_after']}x; "
        f"target (after overhead <= 3 s): {'met' if summary['target_met'] else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
