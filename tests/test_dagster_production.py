"""Dagster for production (issue 18 item 3): the instance of ``deploy/dagster.yaml`` on the local
PostgreSQL, and sync jobs whose steps run on real ``dagster-celery`` workers over the local RabbitMQ."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import PG_DEFAULT, PG_ENV, services_required
from tests.helpers.dagster_prod import (
    CeleryWorkers,
    ServiceMissing,
    dagster_env,
    dagster_home,
    execute_job,
    fresh_database,
    rabbit_vhost,
    write_project,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
pytest.importorskip("dagster_postgres", reason="pip install 'tongbu[prod]'")


def _missing(what: str) -> None:
    if services_required():
        pytest.fail(what)
    pytest.skip(what)


@pytest.fixture
def dagster_pg(pg_url: str) -> Iterator[str]:
    """A database of its own for Dagster's storage, beside the hub's (``pg_url``)."""
    with fresh_database(os.environ.get(PG_ENV) or PG_DEFAULT) as url:
        yield url


@pytest.fixture
def broker() -> Iterator[str]:
    try:
        with rabbit_vhost() as url:
            yield url
    except ServiceMissing as exc:
        _missing(str(exc))


def _instance(env: dict[str, str]):
    import dagster as dg

    old = {k: os.environ.get(k) for k in ("DAGSTER_HOME", "TONGBU_DAGSTER_PG_URL")}
    os.environ.update(DAGSTER_HOME=env["DAGSTER_HOME"], TONGBU_DAGSTER_PG_URL=env["TONGBU_DAGSTER_PG_URL"])
    try:
        return dg.DagsterInstance.get()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _hub_counts(hub_url: str, tenant: str = "acme") -> dict[str, int]:
    engine = create_engine(hub_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT source_system, count(*), count(DISTINCT source_id) FROM accounts "
                    "WHERE tenant_id = :t GROUP BY 1"
                ),
                {"t": tenant},
            ).all()
    finally:
        engine.dispose()
    assert all(r[1] == r[2] for r in rows), f"duplicated rows in the hub: {rows}"
    return {r[0]: int(r[1]) for r in rows}


def test_the_production_instance_keeps_runs_and_events_in_postgresql(
    tmp_path: Path, pg_url: str, dagster_pg: str
) -> None:
    project = write_project(
        tmp_path / "tongbu.yaml", "acme", {"erp": {"connector": "synthetic", "config": {"records": 700}}}
    )
    env = dagster_env(dagster_home(tmp_path / "dh"), dagster_pg, pg_url, project, tmp_path / "th")
    done = execute_job("sync_erp_accounts", env)  # TONGBU_DAGSTER_EXECUTOR unset: multiprocess
    assert done.returncode == 0, done.stderr[-3000:]
    # Straight from PostgreSQL, not through Dagster: the run and its events are there.
    engine = create_engine(dagster_pg)
    try:
        with engine.connect() as conn:
            [(run_id, status, job)] = conn.execute(
                text("SELECT run_id, status, pipeline_name FROM runs")
            ).all()
            kinds = {
                r[0]: r[1]
                for r in conn.execute(
                    text("SELECT dagster_event_type, count(*) FROM event_logs WHERE run_id = :r GROUP BY 1"),
                    {"r": run_id},
                )
            }
    finally:
        engine.dispose()
    assert (status, job) == ("SUCCESS", "sync_erp_accounts")
    assert kinds.get("PIPELINE_SUCCESS", kinds.get("RUN_SUCCESS")) == 1, kinds
    assert kinds["ASSET_MATERIALIZATION"] == 2 and kinds["STEP_SUCCESS"] >= 2
    instance = _instance(env)
    [record] = instance.get_run_records()
    assert record.dagster_run.tags["tongbu/tenant"] == "acme"
    assert _hub_counts(pg_url) == {"erp": 700}


def test_a_sync_job_runs_its_steps_on_two_celery_workers(
    tmp_path: Path, pg_url: str, dagster_pg: str, broker: str
) -> None:
    conns = {f"erp{i}": {"connector": "synthetic", "config": {"records": 3000 + i}} for i in range(4)}
    project = write_project(tmp_path / "tongbu.yaml", "acme", conns)
    env = dagster_env(
        dagster_home(tmp_path / "dh"),
        dagster_pg,
        pg_url,
        project,
        tmp_path / "th",
        TONGBU_DAGSTER_EXECUTOR="celery",
        TONGBU_CELERY_BROKER=broker,
    )
    with CeleryWorkers(2, broker, env, tmp_path / "celery") as workers:
        done = execute_job("sync_all", env)
        assert done.returncode == 0, done.stderr[-3000:] + workers.log_tail()
        worker_pids = workers.pids()
    instance = _instance(env)
    [record] = instance.get_run_records()
    run_id = record.dagster_run.run_id
    assert record.dagster_run.status.value == "SUCCESS"
    starts = [
        e.dagster_event
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None and e.dagster_event.event_type_value == "STEP_START"
    ]
    by_pid: dict[int, list[str]] = {}
    for ev in starts:
        by_pid.setdefault(ev.pid, []).append(ev.step_key)
    # Every step ran in a Celery worker (never in the launching process), on at least two of them.
    assert set(by_pid) <= worker_pids, (by_pid, worker_pids)
    assert len(by_pid) >= 2, by_pid
    materialized = [
        e.dagster_event.step_materialization_data.materialization
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None and e.dagster_event.event_type_value == "ASSET_MATERIALIZATION"
    ]
    syncs = [m for m in materialized if m.asset_key.path[0].startswith("erp")]
    assert len(syncs) == 4
    for m in syncs:
        md = {k: v.value for k, v in m.metadata.items()}
        # A reader process is forked only from a worker with no foreign threads that may have
        # children (a Celery prefork child is daemonic: it reads in a thread).
        safe_to_fork = md["foreign_threads"] == 0 and not md["daemonic"]
        assert md["reader"] == ("process" if safe_to_fork else "thread"), md
    assert _hub_counts(pg_url) == {f"erp{i}": 3000 + i for i in range(4)}


def test_parallel_runs_against_one_erp_stay_within_its_pool_limit(
    tmp_path: Path, pg_url: str, dagster_pg: str, broker: str
) -> None:
    import yaml

    from connectors.kingdee.simulator import KingdeeSimulator
    from dagster_project.pools import apply_pool_limits
    from pipelines.project import load_project

    # Every API call takes 30 ms and pages are small, so three unlimited runs would overlap for sure.
    with KingdeeSimulator(records=300, orders=150, receivables=150, seed=3, faults="slow=0.03") as sim:
        creds = sim.credentials()
        config = {
            "base_url": sim.base_url,
            **{k: creds[k] for k in ("acct_id", "username", "password")},
            "page_size": 50,
            "lookback_seconds": 0,
        }
        mapping = str(Path(__file__).resolve().parent.parent / "mappings/library/kingdee_to_crm.yaml")
        streams = {"customers": "accounts", "sales_orders": "sales_orders", "receivables": "receivables"}
        project = tmp_path / "tongbu.yaml"
        project.write_text(
            yaml.safe_dump(
                {
                    "tenant": "acme",
                    "connections": {"erp": {"connector": "kingdee", "config": config, "concurrency": 1}},
                    "pipelines": {
                        f"erp_{s}": {
                            "source": {"connection": "erp", "stream": s},
                            "mapping": mapping,
                            "target": {"object": o},
                            "schedule": None,
                        }
                        for s, o in streams.items()
                    },
                }
            ),
            encoding="utf-8",
        )
        env = dagster_env(
            dagster_home(tmp_path / "dh"),
            dagster_pg,
            pg_url,
            project,
            tmp_path / "th",
            TONGBU_DAGSTER_EXECUTOR="celery",
            TONGBU_CELERY_BROKER=broker,
        )
        instance = _instance(env)
        assert apply_pool_limits(instance, load_project(project)) == {"tongbu.acme.erp": 1}
        sim.reset_stats()
        with CeleryWorkers(3, broker, env, tmp_path / "celery") as workers:
            runs = [_launch(f"sync_erp_{s}", env) for s in streams]
            for p in runs:
                out, err = p.communicate(timeout=600)
                assert p.returncode == 0, err[-3000:] + workers.log_tail()
        stats = sim.stats()
    records = instance.get_run_records()
    assert len(records) == 3 and {r.dagster_run.status.value for r in records} == {"SUCCESS"}
    assert stats["requests"] > 30  # many calls, from three runs on three workers …
    assert stats["max_in_flight"] == 1, stats  # … never two at once against this ERP
    counts = _hub_table_counts(pg_url, ("accounts", "sales_orders", "receivables"))
    assert counts == {"accounts": 300, "sales_orders": 150, "receivables": 150}


def _launch(job: str, env: dict[str, str], attribute: str | None = None):
    import subprocess

    from tests.helpers.dagster_prod import BIN, ROOT

    where = ["-m", "dagster_project.production", *(["-a", attribute] if attribute else [])]
    return subprocess.Popen(
        [str(BIN / "dagster"), "job", "execute", *where, "-j", job],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _hub_table_counts(hub_url: str, tables: tuple[str, ...], tenant: str = "acme") -> dict[str, int]:
    engine = create_engine(hub_url)
    try:
        with engine.connect() as conn:
            return {
                t: int(
                    conn.execute(
                        text(f"SELECT count(*) FROM {t} WHERE tenant_id = :t"), {"t": tenant}
                    ).scalar_one()
                )
                for t in tables
            }
    finally:
        engine.dispose()


def test_tenants_are_code_locations_served_by_the_same_celery_workers(
    tmp_path: Path, pg_url: str, dagster_pg: str, broker: str
) -> None:
    projects = tmp_path / "projects"
    projects.mkdir()
    sizes = {"acme": 1500, "bolt": 900}
    for tenant, n in sizes.items():
        conns = {f"erp{i}": {"connector": "synthetic", "config": {"records": n + i}} for i in range(2)}
        write_project(projects / f"{tenant}.yaml", tenant, conns)
    env = dagster_env(
        dagster_home(tmp_path / "dh"),
        dagster_pg,
        pg_url,
        projects / "acme.yaml",
        tmp_path / "th",
        TONGBU_DAGSTER_EXECUTOR="celery",
        TONGBU_CELERY_BROKER=broker,
        TONGBU_PROJECTS_DIR=str(projects),
    )
    env.pop("TONGBU_PROJECT")  # the workers serve every tenant: none is "theirs"
    with CeleryWorkers(2, broker, env, tmp_path / "celery") as workers:
        runs = [_launch("sync_all", env, f"tenant_{t}") for t in sizes]
        for p in runs:
            _, err = p.communicate(timeout=600)
            assert p.returncode == 0, err[-3000:] + workers.log_tail()
    instance = _instance(env)
    records = instance.get_run_records()
    assert sorted(r.dagster_run.tags["tongbu/tenant"] for r in records) == ["acme", "bolt"]
    assert {r.dagster_run.status.value for r in records} == {"SUCCESS"}
    for tenant, n in sizes.items():
        assert _hub_counts(pg_url, tenant) == {"erp0": n, "erp1": n + 1}
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            tenants = {r[0] for r in conn.execute(text("SELECT DISTINCT tenant_id FROM accounts"))}
    finally:
        engine.dispose()
    assert tenants == {"acme", "bolt"}


def test_a_tenant_location_is_refused_in_one_line_when_its_file_disagrees(
    tmp_path: Path, monkeypatch
) -> None:
    import dagster_project.production as production

    write_project(
        tmp_path / "acme.yaml", "bolt", {"erp": {"connector": "synthetic", "config": {"records": 1}}}
    )
    monkeypatch.setenv("TONGBU_PROJECTS_DIR", str(tmp_path))
    with pytest.raises(production.ExecutorChoiceError, match="declares tenant 'bolt', not 'acme'"):
        production.tenant_acme  # noqa: B018 - the attribute is the code location
    with pytest.raises(production.ExecutorChoiceError, match="not a tenant name"):
        production.tenant_definitions("../etc")


def test_a_celery_worker_killed_mid_run_and_the_run_resumed_loses_and_duplicates_nothing(
    tmp_path: Path, pg_url: str, dagster_pg: str, broker: str
) -> None:
    import signal

    n = 150_000
    project = write_project(
        tmp_path / "tongbu.yaml", "acme", {"erp": {"connector": "synthetic", "config": {"records": n}}}
    )
    raw = project.read_text(encoding="utf-8").replace(
        "schedule: null", "schedule: null\n    batch_size: 2000"
    )
    project.write_text(raw, encoding="utf-8")
    env = dagster_env(
        dagster_home(tmp_path / "dh"),
        dagster_pg,
        pg_url,
        project,
        tmp_path / "th",
        TONGBU_DAGSTER_EXECUTOR="celery",
        TONGBU_CELERY_BROKER=broker,
    )
    from tongbu.db import get_engine

    get_engine(pg_url)  # the hub's schema, so the test can watch rows arrive
    workers = CeleryWorkers(1, broker, env, tmp_path / "celery-1").start()
    launcher = _launch("sync_erp_accounts", env)
    try:
        # Wait for committed batches (rows land a batch at a time), then kill the worker and the
        # launching process, as when their machine is lost.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            done = _hub_counts(pg_url).get("erp", 0)
            if done > 0:
                break
            assert launcher.poll() is None, launcher.communicate()[1][-3000:]
            time.sleep(0.2)
        for pid in workers.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        launcher.kill()
        launcher.wait(30)
    finally:
        workers.stop()
    partial = _hub_counts(pg_url).get("erp", 0)
    assert 0 < partial < n, partial
    with CeleryWorkers(1, broker, env, tmp_path / "celery-2") as fresh:
        again = execute_job("sync_erp_accounts", env)
        assert again.returncode == 0, again.stderr[-3000:] + fresh.log_tail()
    assert _hub_counts(pg_url) == {"erp": n}  # exact: _hub_counts also fails on a duplicated source id
    instance = _instance(env)
    last = instance.get_run_records(limit=1)[0]
    [m] = [
        e.dagster_event.step_materialization_data.materialization
        for e in instance.all_logs(last.dagster_run.run_id)
        if e.dagster_event is not None
        and e.dagster_event.event_type_value == "ASSET_MATERIALIZATION"
        and e.dagster_event.step_materialization_data.materialization.asset_key.path[0] == "erp"
    ]
    md = {k: v.value for k, v in m.metadata.items()}
    # The resumed run started from the killed run's last committed cursor, not from the beginning.
    assert md["cursor_before"] and md["rows_read"] < n
