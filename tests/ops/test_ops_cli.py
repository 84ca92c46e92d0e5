"""The operator commands as a user types them: init, connections test (against the real Kingdee
simulator), discover, runs, quarantine show; errors are one plain sentence with the next step; help
shows flags as flags, fits 80 columns and lists the pipelines."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from connectors.kingdee.simulator import KingdeeSimulator
from pipelines.project import load_project
from tongbu.cli import app
from tongbu.ops_cli import shorten

ROOT = Path(__file__).resolve().parents[2]
CLASS_NAME = re.compile(r"\b[A-Z][a-zA-Z]+(Error|Exception)\b")


@pytest.fixture
def kingdee() -> Iterator[KingdeeSimulator]:
    sim = KingdeeSimulator(records=30, seed=5)
    sim.start()
    yield sim
    sim.stop()


def cli(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), input=input, env={"COLUMNS": "80"})


def one_line_error(res, *fragments: str) -> None:  # type: ignore[no-untyped-def]
    assert res.exit_code != 0, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert not CLASS_NAME.search(lines[0]) and "Traceback" not in res.output, lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def kingdee_project(tmp_path: Path, sim: KingdeeSimulator) -> Path:
    cred = sim.credentials()
    path = tmp_path / "tongbu.yaml"
    doc = {
        "connections": {
            "kingdee": {
                "connector": "kingdee",
                "config": {
                    "base_url": sim.base_url,
                    "acct_id": cred["acct_id"],
                    "username": cred["username"],
                    "password": "vault:kingdee.password",
                },
            }
        },
        "pipelines": {
            "kingdee_customers": {
                "description": "Kingdee customers → CRM accounts",
                "source": {"connection": "kingdee", "stream": "customers"},
                "mapping": str(ROOT / "mappings/library/kingdee_to_crm.yaml"),
                "target": {"object": "accounts"},
            }
        },
    }
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def test_connection_test_says_what_is_wrong_then_ok(
    tmp_path: Path, kingdee: KingdeeSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = str(kingdee_project(tmp_path, kingdee))
    # Before the vault exists: the class name never shows, the next step does.
    one_line_error(cli("run", "-p", project), "no vault yet", "tongbu vault init")
    one_line_error(cli("connections", "test", "kingdee", "-p", project), "tongbu vault init")
    res = cli("vault", "list")
    one_line_error(res, "tongbu vault init")
    monkeypatch.setenv("TONGBU_MASTER_KEY_FILE", str(tmp_path / "keys" / "master.key"))
    assert cli("vault", "init").exit_code == 0
    one_line_error(cli("connections", "test", "kingdee", "-p", project), "tongbu vault set kingdee.password")
    assert cli("vault", "set", "kingdee.password", input="wrong-password\n").exit_code == 0
    one_line_error(cli("connections", "test", "kingdee", "-p", project), "login refused")
    password = kingdee.credentials()["password"]
    assert cli("vault", "set", "kingdee.password", input=password + "\n").exit_code == 0
    res = cli("connections", "test", "kingdee", "-p", project)
    assert res.exit_code == 0 and re.search(r"kingdee: OK .* customers in \d+\.\d\d s", res.output), (
        res.output
    )
    assert password not in res.output
    res = cli("connections", "test", "kingdee", "--stream", "nope", "-p", project)
    one_line_error(res, "no stream 'nope'", "customers")
    one_line_error(cli("connections", "test", "nope", "-p", project), "no connection 'nope'", "kingdee")
    res = cli("connections", "list", "-p", project)
    assert res.exit_code == 0 and "stored" in res.output and "kingdee_customers" in res.output

    res = cli("discover", "kingdee", "-p", project)
    assert res.exit_code == 0 and "customers" in res.output and "FModifyDate" in res.output
    catalog = json.loads(cli("discover", "kingdee", "--json", "-p", project).stdout)
    assert {s["tap_stream_id"] for s in catalog["streams"]} >= {"customers", "sales_orders"}

    # A server that does not answer: one line, fast (no retries), says what to check.
    kingdee.stop()
    one_line_error(cli("connections", "test", "kingdee", "-p", project, "--timeout", "2"), "base_url")


def test_runs_and_quarantine_show(tmp_path: Path) -> None:
    mapping = (ROOT / "mappings/library/synthetic_to_crm.yaml").read_text(encoding="utf-8")
    (tmp_path / "m.yaml").write_text(mapping.replace(', "1": active', ""), encoding="utf-8")
    path = tmp_path / "tongbu.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "connections": {"synth": {"connector": "synthetic", "config": {"records": 6}}},
                "pipelines": {
                    "synth_accounts": {
                        "source": {"connection": "synth", "stream": "records"},
                        "mapping": "m.yaml",
                        "target": {"object": "accounts"},
                    }
                },
            }
        ),
        encoding="utf-8",
    )
    res = cli("runs", "-p", str(path))
    assert res.exit_code == 0 and "no runs yet" in res.output
    assert cli("run", "-p", str(path)).exit_code == 0
    one_line_error(cli("run", "nope", "-p", str(path)), "no pipeline 'nope'")
    res = cli("runs", "-p", str(path))
    assert res.exit_code == 0 and "synth_accounts" in res.output and "success" in res.output
    [run] = json.loads(cli("runs", "--json", "-p", str(path)).stdout)
    assert (run["rows_read"], run["rows_quarantined"], run["status"]) == (6, 3, "success")
    [first, *_] = json.loads(cli("quarantine", "list", "--json").stdout)
    res = cli("quarantine", "show", str(first["id"]))
    assert res.exit_code == 0 and first["reason"] in " ".join(res.output.split())
    assert '"status": 1' in res.output  # the whole payload
    one_line_error(cli("quarantine", "show", "999999"), "no quarantined record 999999", "quarantine list")


def test_shorten_never_cuts_mid_word() -> None:
    reason = "field founded_at: year 0 is out of range (the source sent 0000-00-00)"
    short = shorten(reason, 30)
    assert short == "field founded_at: year 0 is…" and len(short) <= 30
    assert shorten("x" * 50, 10) == "x" * 9 + "…"  # one long token: cut where it is
    assert shorten("short", 30) == "short"


def test_help_shows_flags_fits_80_columns_and_lists_pipelines(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TONGBU_PROJECT", str(ROOT / "tongbu.yaml"))
    for args in (
        ["--help"],
        ["run", "--help"],
        ["mappings", "suggest", "--help"],
        ["connections", "test", "--help"],
        ["runs", "--help"],
        ["quarantine", "show", "--help"],
        ["init", "--help"],
        ["discover", "--help"],
    ):
        res = cli(*args)
        assert res.exit_code == 0, (args, res.output)
        assert "<bool>" not in res.output, args
        assert max(len(line) for line in res.output.splitlines()) <= 80, args
    res = cli("run", "--help")
    assert "--full-refresh " in res.output and "kingdee_customers" in res.output
    assert "<connection>:<stream>" in cli("mappings", "suggest", "--help").output


def test_init_writes_a_commented_project_and_the_vault(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TONGBU_HOME")
    monkeypatch.setenv("TONGBU_MASTER_KEY_FILE", str(tmp_path / "keys" / "master.key"))
    res = cli("init", "acme")
    assert res.exit_code == 0, res.output
    text = (tmp_path / "acme" / "tongbu.yaml").read_text(encoding="utf-8")
    assert text.count("#") > 10 and "vault:kingdee.password" in text
    load_project(tmp_path / "acme" / "tongbu.yaml")  # valid, strict
    assert (tmp_path / "acme" / ".tongbu" / "hub.db").exists()
    assert "next:" in res.output and "tongbu vault set kingdee.password" in res.output
    monkeypatch.chdir(tmp_path)
    one_line_error(cli("init", "acme"), "exists already", "--force")


def test_after_the_demo_empty_listings_say_where_its_data_is(tongbu_home: Path) -> None:
    demo = tongbu_home / "demo"
    demo.mkdir(parents=True)
    (demo / "hub.db").write_bytes(b"")  # what `tongbu demo` leaves (its content does not matter here)
    for args in (["state", "show"], ["quarantine", "list"], ["runs"]):
        res = cli(*args)
        flat = " ".join(res.output.split())
        assert res.exit_code == 0 and str(demo / "hub.db") in flat and "TONGBU_DATABASE_URL" in flat, args
