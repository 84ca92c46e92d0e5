"""Run tongbu's Alembic migrations programmatically.

Every feature owns its tables in its own migration file under ``tongbu/migrations/versions``; several
may branch from the foundation revision, so we always upgrade to ``heads`` (all branch tips).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    """An Alembic config bound to ``engine`` (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade_to_head(engine: Engine) -> None:
    """Bring the database behind ``engine`` to the newest schema; a no-op when it is current."""
    cfg = alembic_config(engine)
    if _is_current(cfg, engine):
        return  # the common case: no write lock taken, nothing to do
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            # pysqlite runs DDL outside any transaction (it only opens one before DML), so a kill in
            # the middle of a migration left half a schema that no later run could upgrade
            # ("table … already exists"). An explicit BEGIN makes the whole upgrade one transaction.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")


def _is_current(cfg: Config, engine: Engine) -> bool:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    return current == set(ScriptDirectory.from_config(cfg).get_heads())
