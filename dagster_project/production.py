"""Production code location: the same definitions as ``dagster_project.definitions``, on a chosen executor.

``dagster dev -w workspace.yaml`` (development) loads :mod:`dagster_project.definitions` and runs steps
with Dagster's multiprocess executor on one machine. In production the code location is this module
(``deploy/workspace.yaml``) and ``TONGBU_DAGSTER_EXECUTOR`` picks where steps run:

* ``multiprocess`` (default): one process per step, on the machine that launched the run;
* ``celery``: every step is a Celery task, executed by whichever ``dagster-celery`` worker takes it
  (broker ``TONGBU_CELERY_BROKER``, default the local RabbitMQ; result backend ``rpc://``);
* ``k8s``: every step is a Kubernetes Job (``dagster-k8s``; see docs/operations.md);
* ``in_process``: all steps in the run worker (debugging).

Nothing else differs: assets, checks, schedules, pools and the runner are the same code, the instance
(``deploy/dagster.yaml``) holds runs, events, schedules and pool slots in PostgreSQL.
"""

from __future__ import annotations

import os

import dagster as dg

from dagster_project.assets import build_definitions
from tongbu.vault import install_redaction

EXECUTOR_ENV = "TONGBU_DAGSTER_EXECUTOR"
BROKER_ENV = "TONGBU_CELERY_BROKER"
DEFAULT_BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
EXECUTORS = ("multiprocess", "celery", "k8s", "in_process")


class ExecutorChoiceError(ValueError):
    """``TONGBU_DAGSTER_EXECUTOR`` names no executor, or the one it names is not installed."""


def production_executor(name: str | None = None) -> dg.ExecutorDefinition:
    """The executor ``name`` (default ``$TONGBU_DAGSTER_EXECUTOR``, else ``multiprocess``)."""
    choice = (
        name if name is not None else os.environ.get(EXECUTOR_ENV, "")
    ).strip().lower() or "multiprocess"
    if choice == "multiprocess":
        return dg.multiprocess_executor
    if choice == "in_process":
        return dg.in_process_executor
    if choice == "celery":
        try:
            from dagster_celery import celery_executor
        except ImportError:
            raise ExecutorChoiceError(
                f"{EXECUTOR_ENV}=celery needs dagster-celery: pip install 'tongbu[prod]'"
            ) from None
        # The broker URL may carry a password: it comes from the environment of the process that
        # launches the run and is never written into run config (which Dagster stores and shows).
        broker = os.environ.get(BROKER_ENV) or DEFAULT_BROKER
        return celery_executor.configured(
            {"broker": broker, "backend": "rpc://"},
            name="celery",
        )
    if choice == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError:
            raise ExecutorChoiceError(
                f"{EXECUTOR_ENV}=k8s needs dagster-k8s: pip install dagster-k8s"
            ) from None
        return k8s_job_executor
    raise ExecutorChoiceError(
        f"{EXECUTOR_ENV}={choice!r} is not an executor; choose one of {', '.join(EXECUTORS)}"
    )


# Mask every secret the vault hands out in all log output of the code server, run and step workers.
install_redaction()

defs = build_definitions(executor=production_executor())
