"""The ``tongbu`` command line: run, state, quarantine, simulate — as a user types them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import yaml
from typer.testing import CliRunner

from tongbu.cli import app

ROOT = Path(__file__).resolve().parent.parent


def write_project(tmp_path: Path, records: int, strict: bool = False) -> Path:
    mapping = (ROOT / "mappings/library/synthetic_to_crm.yaml").read_text(encoding="utf-8")
    if strict:
        mapping = mapping.replace(', "1": active', "")  # odd records fail: status 1 has no code
    (tmp_path / "m.yaml").write_text(mapping, encoding="utf-8")
    path = tmp_path / "tongbu.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "connections": {"synth": {"connector": "synthetic", "config": {"records": records}}},
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
    return path


def test_run_state_and_quarantine_commands(tmp_path: Path) -> None:
    cli = CliRunner()
    project = write_project(tmp_path, 40, strict=True)
    res = cli.invoke(app, ["run", "--project", str(project), "--json"])
    assert res.exit_code == 0, res.output
    [run] = json.loads(res.stdout.strip().splitlines()[-1])
    assert (run["rows_read"], run["rows_written"], run["rows_quarantined"]) == (40, 20, 20)

    res = cli.invoke(app, ["state", "show", "--project", str(project)])
    assert res.exit_code == 0 and "synth" in res.output and "records" in res.output

    res = cli.invoke(app, ["quarantine", "list", "--json"])
    rows = json.loads(res.stdout)
    assert len(rows) == 20 and all("status" in r["reason"] for r in rows)

    write_project(tmp_path, 40)  # fix the mapping, then replay
    res = cli.invoke(app, ["quarantine", "replay", "--project", str(project)])
    assert res.exit_code == 0 and "replayed 20" in res.output
    assert json.loads(cli.invoke(app, ["quarantine", "list", "--json"]).stdout) == []

    res = cli.invoke(app, ["state", "reset", "synth", "--yes"])
    assert res.exit_code == 0 and "removed 1" in res.output
    res = cli.invoke(app, ["run", "synth_accounts", "--project", str(project), "--json"])
    [again] = json.loads(res.stdout.strip().splitlines()[-1])
    assert (again["rows_read"], again["rows_written"]) == (40, 0)  # re-read from the start, nothing changed


def test_errors_are_one_actionable_line(tmp_path: Path) -> None:
    cli = CliRunner()
    project = write_project(tmp_path, 5)
    res = cli.invoke(app, ["run", "nope", "--project", str(project)])
    assert res.exit_code == 1
    assert "no pipeline 'nope'; known: synth_accounts" in res.output and "Traceback" not in res.output
    res = cli.invoke(app, ["simulate", "sap"])
    assert res.exit_code == 1 and "no simulator named 'sap'" in res.output


def test_every_command_has_help() -> None:
    cli = CliRunner()
    for args in (
        ["--help"],
        ["run", "--help"],
        ["state", "--help"],
        ["state", "show", "--help"],
        ["state", "reset", "--help"],
        ["quarantine", "list", "--help"],
        ["quarantine", "replay", "--help"],
        ["simulate", "--help"],
        ["demo", "--help"],
        ["serve", "--help"],
        ["vault", "--help"],
        ["mappings", "--help"],
    ):
        res = cli.invoke(app, args)
        assert res.exit_code == 0 and "Usage" in res.output, args


def test_simulate_prints_url_and_credentials_and_serves(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tongbu.cli",
            "simulate",
            "kingdee",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--records",
            "25",
            "--faults",
            "throttle=0.0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert proc.stdout is not None
        head = proc.stdout.readline() + proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", head).group(0)
        creds = json.loads(head.split("demo credentials: ", 1)[1])
        assert creds["username"] and creds["acct_id"]
        counts = httpx.get(f"{url}/_sim/counts", timeout=10).json()
        assert counts["BD_Customer"] == 25
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)


def test_suggest_path_does_not_load_the_hub_or_web_stack(tmp_path: Path) -> None:
    # `tongbu mappings suggest` on profile files runs once per table pair (and per scorer case); it
    # must not pay for SQLAlchemy or Starlette unless a hub with review history exists.
    profile = {"system": "a", "object": "t", "fields": [{"name": "customer_name", "type": "string"}]}
    src, tgt = tmp_path / "s.json", tmp_path / "t.json"
    src.write_text(json.dumps(profile), encoding="utf-8")
    tgt.write_text(json.dumps({**profile, "system": "b"}), encoding="utf-8")
    code = (
        "import sys\nfrom tongbu.cli import main\nsys.argv = ['tongbu', 'mappings', 'suggest', '--source', sys.argv[1],"
        " '--target', sys.argv[2], '--format', 'json']\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "heavy = sorted(m for m in ('sqlalchemy', 'starlette', 'dagster') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    env = {**os.environ, "TONGBU_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-c", code, str(src), str(tgt)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    # Identical names with no sample values stay just under the auto-accept threshold: a suggestion.
    [suggestion] = json.loads(done.stdout)["suggestions"]
    assert suggestion["candidates"][0]["target"] == "customer_name"
    assert "HEAVY []" in done.stderr
    # The vault's public names still resolve (loaded on first use).
    import tongbu.vault as vault

    assert callable(vault.rotate) and vault.Vault.__name__ == "Vault"
