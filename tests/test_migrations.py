"""Migrations: the migrated schema equals the models, and upgrading keeps the data."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

import tongbu.models  # noqa: F401  (every table on Base.metadata)
from tongbu.db import Base
from tongbu.migrate import alembic_config, upgrade_to_head


def test_migrated_schema_matches_the_models(hub_engine) -> None:
    with hub_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
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
