"""Real production plumbing for tests and benchmarks: a Dagster instance on PostgreSQL, a RabbitMQ
virtual host of its own, and ``dagster-celery`` worker processes.

Nothing here is mocked: the instance is ``deploy/dagster.yaml`` in a temporary ``DAGSTER_HOME``, the
broker is the local RabbitMQ (a fresh vhost per use, so parallel sessions never take each other's
tasks) and the workers are ``celery -A dagster_celery.app worker`` processes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RABBIT = os.environ.get("TONGBU_TEST_RABBITMQ", "127.0.0.1:5672")


class ServiceMissing(RuntimeError):
    """A local service the test needs is not there (the caller fails in CI, skips elsewhere)."""


@contextlib.contextmanager
def fresh_database(base_url: str, prefix: str = "tongbu_dg") -> Iterator[str]:
    """A new, empty database on the server of ``base_url``, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with contextlib.suppress(Exception), admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def dagster_home(where: Path) -> Path:
    """A DAGSTER_HOME holding the repository's production ``deploy/dagster.yaml``, unchanged."""
    where.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "deploy" / "dagster.yaml", where / "dagster.yaml")
    return where


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def rabbit_vhost() -> Iterator[str]:
    """A broker URL on a fresh RabbitMQ virtual host, deleted afterwards."""
    if shutil.which("rabbitmqctl") is None:
        raise ServiceMissing("rabbitmqctl not found (RabbitMQ is not installed here)")
    vhost = f"tongbu_t_{uuid.uuid4().hex[:10]}"
    try:
        _rabbitmqctl("add_vhost", vhost)
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise ServiceMissing(f"RabbitMQ at {RABBIT} is not usable: {exc}") from None
    try:
        yield f"pyamqp://guest:guest@{RABBIT}/{vhost}"
    finally:
        with contextlib.suppress(Exception):
            _rabbitmqctl("delete_vhost", vhost)


def write_project(
    path: Path, tenant: str, connections: dict[str, dict[str, Any]], target: str = "accounts"
) -> Path:
    """A project file with one synthetic pipeline ``<connection>_accounts`` per connection."""
    mapping = str(ROOT / "mappings/library/synthetic_to_crm.yaml")
    doc = {
        "tenant": tenant,
        "connections": connections,
        "pipelines": {
            f"{name}_{target}": {
                "source": {"connection": name, "stream": "records"},
                "mapping": mapping,
                "target": {"object": target},
                "schedule": None,
            }
            for name in connections
        },
    }
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


class CeleryWorkers:
    """``n`` real ``dagster-celery`` worker processes (one task at a time each) on ``broker``."""

    def __init__(self, n: int, broker: str, env: dict[str, str], logs: Path) -> None:
        self.n, self.broker, self.env, self.logs = n, broker, env, logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, timeout: float = 120.0) -> CeleryWorkers:
        self.logs.mkdir(parents=True, exist_ok=True)
        for i in range(self.n):
            log = open(self.logs / f"worker{i}.log", "wb")  # noqa: SIM115 - closed with the process
            self.procs.append(
                subprocess.Popen(
                    [
                        str(BIN / "celery"),
                        "-A",
                        "dagster_celery.app",
                        "-b",
                        self.broker,
                        "worker",
                        "--concurrency=1",
                        "--prefetch-multiplier=1",
                        "-Q",
                        "dagster",
                        "-n",
                        f"w{i}@%h",
                        "--without-gossip",
                        "--without-mingle",
                        "-l",
                        "INFO",
                    ],
                    cwd=ROOT,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
        self._await_ready(timeout)
        return self

    def _await_ready(self, timeout: float) -> None:
        from celery import Celery

        app = Celery("ping", broker=self.broker)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                dead = [p.pid for p in self.procs if p.poll() is not None]
                if dead:
                    raise RuntimeError(f"celery worker(s) {dead} exited: {self.log_tail()}")
                replies = app.control.ping(timeout=1.0)
                if len(replies) >= self.n:
                    return
            raise RuntimeError(f"{self.n} celery workers not ready in {timeout}s: {self.log_tail()}")
        finally:
            app.close()

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-chars:] for p in sorted(self.logs.glob("worker*.log"))
        )

    def pids(self) -> set[int]:
        """The worker processes and their pool children (which execute the tasks)."""
        out = {p.pid for p in self.procs}
        for p in self.procs:
            kids = Path(f"/proc/{p.pid}/task/{p.pid}/children")
            if kids.exists():
                out |= {int(x) for x in kids.read_text().split()}
        return out

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)

    def __enter__(self) -> CeleryWorkers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def dagster_env(
    home: Path, dagster_pg: str, hub_url: str, project: Path, tongbu_home: Path, **extra: str
) -> dict[str, str]:
    """The environment every process of the deployment shares (webserver, run and Celery workers)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TONGBU_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(home),
        TONGBU_DAGSTER_PG_URL=dagster_pg,
        TONGBU_DATABASE_URL=hub_url,
        TONGBU_PROJECT=str(project),
        TONGBU_HOME=str(tongbu_home),
        PYTHONPATH=str(ROOT),
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **extra,
    )
    return env


def execute_job(job: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``dagster job execute`` of the production code location (steps go where its executor sends them)."""
    return subprocess.run(
        [str(BIN / "dagster"), "job", "execute", "-m", "dagster_project.production", "-j", job],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
