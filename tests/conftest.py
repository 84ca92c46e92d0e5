"""Shared fixtures: an isolated TONGBU_HOME per test, SQLite and (real) PostgreSQL hub engines."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tongbu.db import dispose_engines, get_engine

#: shared fixtures that live with their helpers (``smtp_server``: a real local SMTP server)
pytest_plugins = ["tests.helpers.smtp"]

PG_ENV = "TONGBU_TEST_POSTGRES_URL"
PG_DEFAULT = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def services_required() -> bool:
    """CI (``.ci/run``) sets this: a missing service is then a failure, never a silent skip."""
    return bool(os.environ.get("TONGBU_REQUIRE_SERVICES") or os.environ.get("CI"))


@pytest.fixture(autouse=True)
def tongbu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own TONGBU_HOME (and so its own SQLite hub) and no leaked DB URL."""
    home = tmp_path / "tongbu-home"
    monkeypatch.setenv("TONGBU_HOME", str(home))
    # Master key files go to a per-test config folder, never the developer's ~/.config.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    for var in ("TONGBU_MASTER_KEY", "TONGBU_MASTER_KEY_FILE", "TONGBU_VAULT_PASSPHRASE", "TONGBU_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("TONGBU_DATABASE_URL", raising=False)
    yield home
    dispose_engines()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the local server, dropped afterwards."""
    base = os.environ.get(PG_ENV) or PG_DEFAULT
    name = f"tongbu_t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any connection problem: fail in CI, skip on a laptop
        where = make_url(base).render_as_string()
        if services_required() or os.environ.get(PG_ENV):
            pytest.fail(f"PostgreSQL at {where} is required but unreachable: {exc}")
        pytest.skip(f"no PostgreSQL at {where} (set {PG_ENV} to point the tests at one)")
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def hub_engine(request: pytest.FixtureRequest, tongbu_home: Path):
    """The hub engine, once on the embedded SQLite and once on the real local PostgreSQL."""
    if request.param == "sqlite":
        return get_engine()
    return get_engine(request.getfixturevalue("pg_url"))


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A bare folder with ``home/`` as TONGBU_HOME and no master key configured (vault tests)."""
    monkeypatch.setenv("TONGBU_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for var in (
        "TONGBU_MASTER_KEY",
        "TONGBU_MASTER_KEY_FILE",
        "TONGBU_VAULT_PASSPHRASE",
        "TONGBU_DATABASE_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    yield tmp_path
    dispose_engines()


@pytest.fixture
def sim(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A running WeCom simulator, stopped afterwards; ``@pytest.mark.wecom_sim(records=, seed=)`` sizes it.

    The mark may sit on the module (``pytestmark``) or on one test; the closest one wins. Modules that
    simulate another system (Kingdee) define their own ``sim`` fixture, which takes precedence.
    """
    from connectors.wecom.simulator import WeComSimulator

    mark = request.node.get_closest_marker("wecom_sim")
    options = {"records": 200, "seed": 1, **(mark.kwargs if mark else {})}
    simulator = WeComSimulator(**options)
    simulator.start()
    try:
        yield simulator
    finally:
        simulator.stop()
