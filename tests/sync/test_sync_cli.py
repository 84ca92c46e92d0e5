"""``tongbu sync`` and ``tongbu conflicts`` as a user types them, against the Kingdee simulator."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from connectors.kingdee.simulator import KingdeeSimulator
from tests.sync.project_fixture import write_sync_project
from tongbu.cli import app
from tongbu.db import get_engine
from tongbu.hub.api import CrmApi
from tongbu.hub.models import HubChange, RecordLink


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with KingdeeSimulator(records=6, orders=2, receivables=0, seed=11) as sim:
        yield write_sync_project(tmp_path, sim, monkeypatch), sim


def _json(res) -> list[dict]:
    return json.loads(res.stdout.strip().splitlines()[-1])


def _linked(obj: str) -> dict[int, str]:
    t = RecordLink.__table__
    with get_engine().connect() as conn:
        return dict(conn.execute(select(t.c.hub_id, t.c.external_id).where(t.c.object == obj)).all())


def test_sync_dry_run_writes_nothing_then_a_run_links_and_a_second_is_unchanged(project) -> None:
    path, sim = project
    cli = CliRunner()
    res = cli.invoke(app, ["sync", "accounts_kingdee", "--dry-run", "-p", str(path)])
    assert res.exit_code == 0, res.output
    assert "dry run, nothing written" in res.stdout and "6 created" in res.stdout
    assert "would create in hub" in res.stdout
    assert _linked("accounts") == {}

    res = cli.invoke(app, ["sync", "-p", str(path), "--json"])
    assert res.exit_code == 0, res.output
    reports = {r["sync"]: r for r in _json(res)}
    assert set(reports) == {"accounts_kingdee", "sales_orders_kingdee"}
    assert reports["accounts_kingdee"]["directions"]["hub"]["created"] == 6
    assert len(_linked("accounts")) == 6

    res = cli.invoke(app, ["sync", "accounts_kingdee", "-p", str(path)])
    assert res.exit_code == 0, res.output
    line = res.stdout.strip().splitlines()[-1]
    assert line.startswith("accounts_kingdee: → hub 0 created, 0 updated")
    # the feed re-reads the records of its last millisecond (inclusive cursor): found unchanged
    assert re.search(r"→ kingdee 0 created, 0 updated, \d+ unchanged, 0 conflicted, 0 failed; ", line)


def test_a_conflict_is_listed_shown_and_resolved_with_its_author(project, monkeypatch) -> None:
    path, sim = project
    cli = CliRunner()
    assert cli.invoke(app, ["sync", "accounts_kingdee", "-p", str(path)]).exit_code == 0
    hub_id, ext = sorted(_linked("accounts").items())[0]
    CrmApi(get_engine()).update("accounts", hub_id, {"name": "CRM的名字"}, author="alice")
    sim.edit("BD_Customer", int(ext), {"FName": "ERP的名字"})

    res = cli.invoke(app, ["sync", "accounts_kingdee", "-p", str(path)])
    assert res.exit_code == 0, res.output
    assert "1 conflict(s) wait for review" in res.stderr

    res = cli.invoke(app, ["conflicts", "list", "-p", str(path), "--json"])
    (row,) = json.loads(res.stdout)
    assert (row["field"], row["hub_value"], row["system_value"]) == ("name", "CRM的名字", "ERP的名字")
    res = cli.invoke(app, ["conflicts", "list", "-p", str(path)])
    assert res.exit_code == 0 and "CRM的名字" in res.stdout

    res = cli.invoke(app, ["conflicts", "show", str(row["id"]), "-p", str(path)])
    assert res.exit_code == 0 and "by alice" in res.stdout and "conflicts resolve" in res.stdout

    for bad, message in (
        ([], "exactly one of --take"),
        (["--take", "both"], "--take must be hub or system"),
        (["--value", "{oops"], "--value is not JSON"),
    ):
        res = cli.invoke(app, ["conflicts", "resolve", str(row["id"]), *bad, "-p", str(path)])
        assert res.exit_code == 1 and message in res.stderr and "Traceback" not in res.output
    res = cli.invoke(app, ["conflicts", "resolve", "9999", "--take", "hub", "-p", str(path)])
    assert res.exit_code == 1 and "no conflict 9999" in res.stderr

    res = cli.invoke(
        app,
        ["conflicts", "resolve", str(row["id"]), "--value", '"第三个名字"', "--by", "carol", "-p", str(path)],
    )
    assert res.exit_code == 0, res.output
    assert "resolved by carol" in res.stdout
    res = cli.invoke(app, ["conflicts", "resolve", str(row["id"]), "--take", "hub", "-p", str(path)])
    assert res.exit_code == 1 and "already resolved by carol" in res.stderr

    t = HubChange.__table__
    with get_engine().connect() as conn:
        last = conn.execute(select(t).where(t.c.hub_id == hub_id).order_by(t.c.id.desc())).mappings().first()
    assert (last["author"], last["values"]) == ("carol", {"name": "第三个名字"})
    assert cli.invoke(app, ["sync", "accounts_kingdee", "-p", str(path)]).exit_code == 0
    (erp,) = [t for t in sim.truth("BD_Customer") if str(t["FCUSTID"]) == ext]
    assert erp["FName"] == "第三个名字"
    assert json.loads(cli.invoke(app, ["conflicts", "list", "-p", str(path), "--json"]).stdout) == []


def test_bad_names_and_unreachable_systems_are_one_line(project, monkeypatch) -> None:
    path, sim = project
    cli = CliRunner()
    res = cli.invoke(app, ["sync", "nope", "-p", str(path)])
    assert res.exit_code == 1 and "no sync 'nope'; known: accounts_kingdee" in res.stderr
    sim.stop()
    # A real process (CliRunner's captured streams do not outlive one invocation, logging's do).
    res = subprocess.run(
        [sys.executable, "-m", "tongbu.cli", "sync", "accounts_kingdee", "-p", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1, res.stderr
    assert "sync accounts_kingdee failed" in res.stderr and "Traceback" not in res.stderr + res.stdout
    assert os.environ["KINGDEE_TEST_PASSWORD"] not in res.stderr + res.stdout
