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
import re
from pathlib import Path

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


PROJECTS_ENV = "TONGBU_PROJECTS_DIR"
_TENANT_PREFIX = "tenant_"
_TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_tenants: dict[str, dg.Definitions] = {}


def tenant_project_file(tenant: str) -> Path:
    """``$TONGBU_PROJECTS_DIR/<tenant>.yaml``: the project file of one tenant of a shared deployment."""
    root = os.environ.get(PROJECTS_ENV)
    if not root:
        raise ExecutorChoiceError(
            f"tenant code locations need {PROJECTS_ENV} (a folder of <tenant>.yaml files)"
        )
    if not _TENANT_NAME.match(tenant):
        raise ExecutorChoiceError(f"{tenant!r} is not a tenant name (lower-case letters, digits, '_', '-')")
    return Path(root) / f"{tenant}.yaml"


def tenant_definitions(tenant: str) -> dg.Definitions:
    """The code location of one tenant: its own project file, the tenant checked against the file."""
    if tenant not in _tenants:
        from pipelines.project import load_project

        path = tenant_project_file(tenant)
        project = load_project(path)
        if project.tenant != tenant:
            raise ExecutorChoiceError(f"{path} declares tenant {project.tenant!r}, not {tenant!r}")
        _tenants[tenant] = build_definitions(project, executor=production_executor(), project_file=str(path))
    return _tenants[tenant]


def __getattr__(name: str) -> dg.Definitions:
    # ``-m dagster_project.production -a tenant_acme`` is tenant acme's code location. The attribute
    # name travels in every run's and step's job pointer, so a Celery worker or Kubernetes pod shared
    # by all tenants loads exactly the tenant whose step it was given (never its own TONGBU_PROJECT).
    if name.startswith(_TENANT_PREFIX):
        return tenant_definitions(name[len(_TENANT_PREFIX) :])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Mask every secret the vault hands out in all log output of the code server, run and step workers.
install_redaction()

if os.environ.get("TONGBU_PROJECT") or not os.environ.get(PROJECTS_ENV):
    #: the single-tenant location (``TONGBU_PROJECT``); tenant locations are ``tenant_<name>``
    defs = build_definitions(executor=production_executor())
