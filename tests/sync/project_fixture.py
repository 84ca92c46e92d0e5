"""A project file whose two-way syncs reach a running Kingdee simulator (CLI, REST and Dagster tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def write_sync_project(tmp_path: Path, sim, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repository's tongbu.yaml with the Kingdee connection pointed at ``sim`` (password by env)."""
    project = yaml.safe_load((ROOT / "tongbu.yaml").read_text(encoding="utf-8"))
    creds = sim.credentials()
    project["connections"] = {
        "kingdee": {
            "connector": "kingdee",
            "config": {
                "base_url": sim.base_url,
                "acct_id": creds["acct_id"],
                "username": creds["username"],
                "password": "${KINGDEE_TEST_PASSWORD}",
                "max_retries": 2,
                "backoff_base": 0.01,
            },
        }
    }
    project["pipelines"] = {}
    monkeypatch.setenv("KINGDEE_TEST_PASSWORD", creds["password"])
    for sync in project["syncs"].values():
        sync["declaration"] = str(ROOT / sync["declaration"])
        sync["enabled"] = True  # off in the shipped file (it runs the one-way pipelines instead)
    path = tmp_path / "tongbu.yaml"
    path.write_text(yaml.safe_dump(project, allow_unicode=True), encoding="utf-8")
    return path
