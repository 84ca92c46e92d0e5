"""Migrations: the migrated schema equals the models, and upgrading keeps the data."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

import tongbu.tables  # noqa: F401  (every table on Base.metadata)
from tongbu.db import Base
from tongbu.migrate import alembic_config, upgrade_to_head


def _declarable(obj, name, type_, reflected, compare_to) -> bool:  # noqa: ANN001 - Alembic's hook
    # Full-text search lives outside the models: SQLite's FTS5 virtual tables (and their shadow
    # tables) cannot be declared, PostgreSQL's is an expression index in that dialect only.
    return not (type_ in ("table", "index") and name and "_fts" in name)


def test_migrated_schema_matches_the_models(hub_engine) -> None:
    with hub_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": _declarable})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_upgrade_from_the_foundation_keeps_existing_rows(tmp_path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001_foundation")
        conn.execute(
            text(
                "INSERT INTO accounts (tenant_id, source_system, source_id, row_hash, name) "
                "VALUES ('default', 'kingdee', '1', 'h', '老客户有限公司')"
            )
        )
    upgrade_to_head(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM accounts")).scalar_one() == "老客户有限公司"
        heads = {r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))}
    assert heads == set(ScriptDirectory.from_config(cfg).get_heads())


_CHILD = """
import logging, sys, time
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(message)s")
start_at = float(sys.argv[2])
from tongbu.db import get_engine
time.sleep(max(0.0, start_at - time.time()))
get_engine(sys.argv[1])
print("ready")
"""


@pytest.mark.postgres
def test_ten_processes_starting_at_once_migrate_a_fresh_database_exactly_once(pg_url: str) -> None:
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    start_at = time.time() + 6  # every child has imported tongbu by then, and they all go at once
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, pg_url, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for _ in range(10)
    ]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 10, "\n".join(outs)
    assert all(o.rstrip().endswith("ready") for o in outs), "\n".join(outs)
    assert sum(o.count("upgraded the database schema") for o in outs) == 1, "\n".join(outs)
    with create_engine(pg_url).connect() as conn:
        heads = {r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))}
    assert heads == set(ScriptDirectory.from_config(alembic_config(create_engine(pg_url))).get_heads())


def test_a_database_tongbu_does_not_support_is_refused_in_one_line() -> None:
    from tongbu.db import UnsupportedDatabase, get_engine

    with pytest.raises(UnsupportedDatabase, match="not mysql") as err:
        get_engine("mysql+pymysql://root@127.0.0.1:3306/tongbu")
    assert "\n" not in str(err.value)
