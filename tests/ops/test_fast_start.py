"""A run's fixed costs: the schema check reads the migration heads without importing every migration,
and the project file is parsed once per process while it is unchanged."""

from __future__ import annotations

from pathlib import Path

from alembic.script import ScriptDirectory

from pipelines.project import load_project_cached
from tongbu.db import get_engine, script_heads
from tongbu.migrate import alembic_config


def test_script_heads_agree_with_alembic() -> None:
    engine = get_engine()
    assert script_heads() == set(ScriptDirectory.from_config(alembic_config(engine)).get_heads())


def test_project_is_parsed_again_only_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "tongbu.yaml"
    path.write_text("tenant: a\n", encoding="utf-8")
    first = load_project_cached(path)
    assert load_project_cached(path) is first
    path.write_text("tenant: bb\n", encoding="utf-8")  # size changes even if mtime granularity is coarse
    second = load_project_cached(path)
    assert second is not first and second.tenant == "bb"
