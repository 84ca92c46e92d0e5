"""Issue 17 on the command line: every pipeline runs and is reported, tenants and TONGBU_PROJECT are
honoured everywhere, a damaged hub is refused in one line, config typos are errors, lines never wrap."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from pipelines.project import ProjectError, load_project
from tongbu.cli import app
from tongbu.db import dispose_engines, get_engine

ROOT = Path(__file__).resolve().parent.parent
MAPPING = ROOT / "mappings/library/synthetic_to_crm.yaml"


def pipeline(mapping: str = "m.yaml", **extra: Any) -> dict[str, Any]:
    return {
        "source": {"connection": "synth", "stream": "records"},
        "mapping": mapping,
        "target": {"object": "accounts"},
        **extra,
    }


def write_project(
    folder: Path,
    *,
    tenant: str | None = None,
    config: dict[str, Any] | None = None,
    pipelines: dict[str, Any] | None = None,
    mapping_text: str | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "m.yaml").write_text(mapping_text or MAPPING.read_text(encoding="utf-8"), encoding="utf-8")
    doc: dict[str, Any] = {
        "connections": {"synth": {"connector": "synthetic", "config": config or {"records": 30}}},
        "pipelines": pipelines or {"synth_accounts": pipeline()},
    }
    if tenant:
        doc["tenant"] = tenant
    path = folder / "tongbu.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def lines_with(output: str, text: str) -> list[str]:
    return [line for line in output.splitlines() if text in line]


# -- item 4: run every pipeline ------------------------------------------------------------------


def test_run_without_names_runs_every_pipeline_and_reports_each(tmp_path: Path) -> None:
    from tongbu.state.store import PipelineLock

    project = write_project(
        tmp_path,
        pipelines={
            "a_broken": pipeline(mapping="missing.yaml"),
            "b_locked": pipeline(),
            "c_good": pipeline(),
        },
    )
    lock = PipelineLock(get_engine(), "b_locked", tenant="default")
    lock.holder = "otherhost:1:abcdef"  # a live run elsewhere
    lock.acquire()
    cli = CliRunner()
    res = cli.invoke(app, ["run", "--project", str(project), "--json"])
    assert res.exit_code == 1, res.output  # one failed: 1 wins over 3 (locked)
    assert "Traceback" not in res.output
    [broken] = lines_with(res.output, "pipeline a_broken failed")
    assert "missing.yaml" in broken
    [locked] = lines_with(res.output, "pipeline b_locked is locked")
    assert "otherhost:1:abcdef" in locked
    outcomes = {o["pipeline"]: o for o in json.loads(res.stdout.strip().splitlines()[-1])}
    assert outcomes["a_broken"]["status"] == "failed" and outcomes["b_locked"]["status"] == "locked"
    assert outcomes["c_good"]["status"] == "success" and outcomes["c_good"]["rows_written"] == 30

    # Only a lock in the way: exit 3, and the other pipeline still ran.
    project = write_project(tmp_path, pipelines={"b_locked": pipeline(), "d_good": pipeline()})
    res = cli.invoke(app, ["run", "--project", str(project)])
    assert res.exit_code == 3, res.output
    assert lines_with(res.output, "pipeline b_locked is locked") and "d_good" in res.output


def test_a_run_that_quarantined_every_record_exits_4(tmp_path: Path) -> None:
    strict = MAPPING.read_text(encoding="utf-8").replace(
        'map: {"0": inactive, "1": active}', 'map: {"7": inactive}'
    )
    project = write_project(tmp_path, mapping_text=strict)
    res = CliRunner().invoke(app, ["run", "--project", str(project)])
    assert res.exit_code == 4, res.output
    [line] = lines_with(res.output, "all 30 records read were quarantined")
    assert "tongbu quarantine list --pipeline synth_accounts" in line


# -- item 5: typos are errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"records": 5, "recods": 4},
            "unknown key 'recods' for connector 'synthetic' (did you mean 'records'?)",
        ),
        ({"chaged": 1}, "unknown key 'chaged' for connector 'synthetic' (did you mean 'changed'?)"),
        ({"zzz_qqq": 1}, "unknown key 'zzz_qqq' for connector 'synthetic' (known: "),
    ],
)
def test_unknown_connection_config_keys_are_one_line_errors(
    tmp_path: Path, config: dict[str, Any], expected: str
) -> None:
    project = write_project(tmp_path, config=config)
    res = CliRunner().invoke(app, ["run", "--project", str(project)])
    assert res.exit_code == 1, res.output
    [line] = lines_with(res.output, "error:")
    assert f"connections.synth.config: {expected}" in line and "Traceback" not in res.output


def test_shipped_connectors_keys_are_checked_against_their_schema(tmp_path: Path) -> None:
    shipped = yaml.safe_load((ROOT / "tongbu.yaml").read_text(encoding="utf-8"))
    load_project(ROOT / "tongbu.yaml")  # the shipped file is valid
    shipped["connections"]["kingdee"]["config"]["page_sise"] = 100
    shipped["connections"]["kingdee"]["config"]["lookback_secods"] = 9
    path = tmp_path / "tongbu.yaml"
    path.write_text(yaml.safe_dump(shipped), encoding="utf-8")
    with pytest.raises(ProjectError) as caught:
        load_project(path)
    text = str(caught.value)
    assert "connections.kingdee.config: unknown key" in text and "\n" not in text
    assert "unknown key 'page_sise' for connector 'kingdee' (did you mean 'page_size'?)" in text
    assert "unknown key 'lookback_secods' for connector 'kingdee' (did you mean 'lookback_seconds'?)" in text


@pytest.mark.parametrize(
    ("where", "cron"),
    [("pipeline", "0 0 30 2 *"), ("pipeline", "61 * * * *"), ("rescan", "0 */6 * * 9"), ("rescan", "hourly")],
)
def test_bad_cron_strings_are_one_line_errors(tmp_path: Path, where: str, cron: str) -> None:
    shipped = yaml.safe_load((ROOT / "tongbu.yaml").read_text(encoding="utf-8"))
    if where == "pipeline":
        shipped["pipelines"]["kingdee_customers"]["schedule"] = cron
        field = "pipelines.kingdee_customers.schedule"
    else:
        shipped["connections"]["wecom"]["config"]["rescan_schedule"] = cron
        field = "connections.wecom.config.rescan_schedule"
    path = tmp_path / "tongbu.yaml"
    path.write_text(yaml.safe_dump(shipped), encoding="utf-8")
    res = CliRunner().invoke(app, ["run", "--project", str(path)])
    assert res.exit_code == 1
    [line] = lines_with(res.output, "error:")
    assert field in line and f"{cron!r} is not a valid cron expression" in line


def test_project_files_are_bounded(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    # "Billion laughs" inside a connection config, where ${ENV} expansion would walk all 1e9 values.
    levels = ["      a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"      a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb.write_text(
        "connections:\n  synth:\n    connector: synthetic\n    config:\n" + "\n".join(levels) + "\n",
        encoding="utf-8",
    )
    started = time.perf_counter()
    with pytest.raises(ProjectError, match="expands to more than"):
        load_project(bomb)
    assert time.perf_counter() - started < 5  # refused before anything is expanded (1e9 values)

    deep = tmp_path / "deep.yaml"
    deep.write_text("connections: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(ProjectError, match="nested"):
        load_project(deep)

    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * 1_100_000 + "\n", encoding="utf-8")
    with pytest.raises(ProjectError, match="more than the 1,000,000 allowed"):
        load_project(big)

    # Ordinary anchors (shared settings) still work.
    ok = write_project(tmp_path / "ok")
    text = ok.read_text(encoding="utf-8").replace("records: 30", "records: &n 30\n      changed: *n")
    ok.write_text(text, encoding="utf-8")
    assert load_project(ok).connection("synth").config == {"records": 30, "changed": 30}


# -- item 6: tenant and TONGBU_PROJECT -----------------------------------------------------------


def test_every_command_uses_the_projects_tenant_and_tongbu_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    strict = MAPPING.read_text(encoding="utf-8").replace(', "1": active', "")  # odd records quarantined
    project = write_project(tmp_path / "proj", tenant="acme", mapping_text=strict)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("TONGBU_PROJECT", str(project))
    cli = CliRunner()
    res = cli.invoke(app, ["run", "--json"])
    assert res.exit_code == 0, res.output
    [run] = json.loads(res.stdout.strip().splitlines()[-1])
    assert (run["rows_written"], run["rows_quarantined"]) == (15, 15)

    res = cli.invoke(app, ["state", "show"])
    assert res.exit_code == 0 and "acme" in res.output and "synth" in res.output, res.output
    res = cli.invoke(app, ["quarantine", "list", "--json"])
    rows = json.loads(res.stdout)
    assert len(rows) == 15 and {r["tenant_id"] for r in rows} == {"acme"}

    # The same commands for another project (tenant default) see none of acme's data.
    other = write_project(tmp_path / "other")
    res = cli.invoke(app, ["quarantine", "list", "--json", "--project", str(other)])
    assert json.loads(res.stdout) == []
    res = cli.invoke(app, ["state", "reset", "synth", "--yes", "--project", str(other)])
    assert "removed 0 cursor(s) of tenant default" in res.output

    res = cli.invoke(app, ["state", "reset", "synth", "--yes"])
    assert res.exit_code == 0 and "removed 1 cursor(s) of tenant acme" in res.output
    res = cli.invoke(app, ["state", "show"])
    assert "synth" not in res.output.split("cursors", 1)[1]

    write_project(tmp_path / "proj", tenant="acme")  # fix the mapping, then replay in acme
    res = cli.invoke(app, ["quarantine", "replay"])
    assert res.exit_code == 0 and "replayed 15" in res.output, res.output


def test_vault_commands_default_to_the_projects_tenant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.helpers.vault import key_text, new_key_source
    from tongbu.vault import Vault

    key = new_key_source()
    Vault.initialize(key_source=key)
    dispose_engines()
    monkeypatch.setenv("TONGBU_MASTER_KEY", key_text(key))
    project = write_project(
        tmp_path / "proj", tenant="acme", config={"records": 10, "password": "vault:synth.password"}
    )
    monkeypatch.setenv("TONGBU_PROJECT", str(project))
    cli = CliRunner()
    res = cli.invoke(app, ["vault", "set", "synth.password"], input="s3cret-value\n")
    assert res.exit_code == 0 and "acme/synth.password" in res.output, res.output
    res = cli.invoke(app, ["vault", "list", "--json"])
    assert [i["tenant"] for i in json.loads(res.stdout)] == ["acme"], res.output
    res = cli.invoke(app, ["vault", "list", "--json", "--tenant", "default"])
    assert json.loads(res.stdout) == []
    res = cli.invoke(app, ["run", "--json"])  # the run finds the secret in its tenant
    assert res.exit_code == 0, res.output


# -- item 7: a damaged hub ----------------------------------------------------------------------


def _damage(db: Path, kind: str) -> None:
    if kind == "garbage":
        db.write_bytes(os.urandom(8192))
        return
    if kind == "zero":
        db.write_bytes(b"")
        past = time.time() - 3600
        os.utime(db, (past, past))
        return
    get_engine()  # a real hub with the full schema
    dispose_engines()
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    size = db.stat().st_size
    if kind == "truncated":
        os.truncate(db, size // 2 + 100)
    else:  # pages overwritten behind an intact header
        with db.open("r+b") as fh:
            fh.seek(4096)
            fh.write(os.urandom(size - 4096))


COMMANDS = [
    ["state", "show"],
    ["state", "reset", "synth", "--yes"],
    ["quarantine", "list"],
    ["quarantine", "replay"],
    ["run"],
    ["vault", "list"],
]


@pytest.mark.parametrize("kind", ["garbage", "zero", "truncated", "pages"])
def test_a_damaged_hub_is_one_line_and_exit_2(tmp_path: Path, tongbu_home: Path, kind: str) -> None:
    project = write_project(tmp_path / "proj")
    tongbu_home.mkdir(parents=True, exist_ok=True)
    db = tongbu_home / "hub.db"
    _damage(db, kind)
    before = db.read_bytes()
    cli = CliRunner()
    for args in COMMANDS:
        dispose_engines()
        extra = ["--project", str(project)] if args[0] != "vault" else []
        res = cli.invoke(app, [*args, *extra])
        assert res.exit_code == 2, (args, res.output)
        assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, (args, res.output)
        assert f"the hub database at {db}" in res.output and "move it aside" in res.output, res.output
    assert db.read_bytes() == before  # never "repaired" or rebuilt behind the user's back


def test_a_damaged_hub_through_the_console_script(tmp_path: Path, tongbu_home: Path) -> None:
    tongbu_home.mkdir(parents=True, exist_ok=True)
    db = tongbu_home / "hub.db"
    _damage(db, "zero")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "40"}
    for args in (["state", "show"], ["quarantine", "list"], ["vault", "list"]):
        done = subprocess.run(
            [sys.executable, "-m", "tongbu.cli", *args], capture_output=True, text=True, env=env, timeout=120
        )
        assert done.returncode == 2, done.stderr
        [line] = done.stderr.strip().splitlines()
        assert "is empty (0 bytes), not a tongbu hub" in line
    assert db.stat().st_size == 0
    db.unlink()  # an absent file is still created as a new hub
    done = subprocess.run(
        [sys.executable, "-m", "tongbu.cli", "state", "show"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0 and db.stat().st_size > 0


# -- item 10: error lines do not wrap -----------------------------------------------------------


def test_error_lines_never_wrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    project = write_project(tmp_path, pipelines={"p" * 50: pipeline(mapping="m" * 60 + ".yaml")})
    res = CliRunner().invoke(app, ["run", "--project", str(project)])
    assert res.exit_code == 1
    [line] = lines_with(res.output, "error:")
    assert "m" * 60 + ".yaml" in line and "p" * 50 in line and len(line) > 120
    assert len(res.output.strip().splitlines()) == 1


def test_an_interrupted_first_migration_leaves_no_half_schema(tmp_path: Path) -> None:
    """A run killed while it creates a fresh hub's schema must not leave tables without a version."""
    from sqlalchemy import event

    from tongbu.db import make_engine
    from tongbu.migrate import upgrade_to_head

    db = tmp_path / "hub.db"
    engine = make_engine(f"sqlite:///{db}")  # as every run opens it (WAL, pragmas)
    created = {"n": 0}

    @event.listens_for(engine, "after_cursor_execute")
    def die_midway(conn, cursor, statement, *args) -> None:  # noqa: ANN001
        if statement.lstrip().upper().startswith("CREATE TABLE"):
            created["n"] += 1
            if created["n"] == 4:
                raise KeyboardInterrupt("killed mid-migration")

    with pytest.raises(KeyboardInterrupt):
        upgrade_to_head(engine)
    event.remove(engine, "after_cursor_execute", die_midway)
    dispose_engines()
    con = sqlite3.connect(db)
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    con.close()
    assert created["n"] == 4 and tables == [], tables
    get_engine(f"sqlite:///{db}")  # and the next run migrates it normally


def test_vault_commands_refuse_an_unsupported_database_in_one_plain_line(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from tongbu.cli import app

    monkeypatch.setenv("TONGBU_DATABASE_URL", "mysql+pymysql://root@127.0.0.1:3306/tongbu")
    result = CliRunner().invoke(app, ["vault", "list"])
    assert result.exit_code == 2
    out = result.output.strip()
    assert "not mysql" in out and "UnsupportedDatabase" not in out and "\n" not in out
