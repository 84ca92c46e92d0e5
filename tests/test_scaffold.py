"""`tongbu new connector NAME`: names are checked, and a generated connector works at once.

The end-to-end test generates into a copy of the repository (never into this checkout), then, there:
runs the connector's standard suite in a subprocess, starts `tongbu simulate NAME`, runs its pipelines
with `tongbu run`, and finds an asset per stream in the Dagster definitions.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from tongbu.cli import app
from tongbu.scaffold import ScaffoldError, check_name, new_connector

ROOT = Path(__file__).resolve().parent.parent
IGNORE = shutil.ignore_patterns(
    ".git", "__pycache__", ".pytest_cache", "*.egg-info", ".tongbu", ".mypy_cache"
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "Acme-CRM",
            "not a valid connector name (use lower-case letters, digits and _, starting with a letter); did you mean 'acme_crm'?",
        ),
        ("9shop", "did you mean 'shop'?"),
        ("class", "not a valid connector name (it is reserved)"),
        ("kit", "not a valid connector name (it is reserved)"),
        ("registry", "not a valid connector name (it is reserved)"),
        ("kingdee", "connector 'kingdee' already exists (connectors/kingdee/); pick another name"),
    ],
)
def test_bad_or_taken_names_are_refused_in_one_line(name: str, expected: str) -> None:
    with pytest.raises(ScaffoldError) as caught:
        check_name(name, ROOT)
    assert expected in str(caught.value) and "\n" not in str(caught.value)
    res = CliRunner().invoke(app, ["new", "connector", name, "--root", str(ROOT)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert [line for line in res.output.splitlines() if line.startswith("error:")] == [
        f"error: {caught.value}"
    ]


def test_a_leftover_mapping_or_test_folder_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "connectors").mkdir()
    (tmp_path / "mappings/library").mkdir(parents=True)
    (tmp_path / "mappings/library/shop_to_crm.yaml").write_text("keep me\n", encoding="utf-8")
    with pytest.raises(ScaffoldError, match="mappings/library/shop_to_crm.yaml already exists"):
        new_connector("shop", root=tmp_path)
    assert (tmp_path / "mappings/library/shop_to_crm.yaml").read_text(encoding="utf-8") == "keep me\n"
    assert not (tmp_path / "connectors/shop").exists()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of this repository (what a fresh clone has), the generated connector's home."""
    copy = tmp_path / "clone"
    shutil.copytree(ROOT, copy, ignore=IGNORE)
    return copy


def _env(copy: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return {**env, "PYTHONPATH": str(copy), **extra}


@pytest.mark.slow
def test_generated_connector_passes_its_suite_simulates_and_runs(
    checkout: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = _env(checkout)
    made = subprocess.run(
        [sys.executable, "-m", "tongbu.cli", "new", "connector", "acme"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    for path in ("connectors/acme/tap.py", "connectors/acme/simulator/app.py", "tests/acme/test_standard.py"):
        assert f"  {path}\n" in made.stdout
    assert "next steps:" in made.stdout and "tongbu simulate acme" in made.stdout
    assert not (ROOT / "connectors/acme").exists(), "generated into the repository"

    # 1. the standard suite, as generated (the target-jsonl venv comes from this session's cache)
    cache = Path(str(request.config.cache.mkdir("x"))).parents[1]
    suite = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-o", f"cache_dir={cache}", "tests/acme"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert suite.returncode == 0, suite.stdout[-4000:]
    assert " passed" in suite.stdout and "failed" not in suite.stdout and "skipped" not in suite.stdout

    # 2. `tongbu simulate acme`, kept running for the pipeline
    sim = subprocess.Popen(
        [sys.executable, "-m", "tongbu.cli", "simulate", "acme", "--records", "60", "--seed", "4"],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stdout is not None
        first = sim.stdout.readline()
        assert first.startswith("acme simulator listening on http://127.0.0.1:"), first
        url = first.split(" on ")[1].split()[0]
        credentials = json.loads(sim.stdout.readline().removeprefix("demo credentials: "))
        assert httpx.get(f"{url}/_sim/health").json() == {"ok": True, "system": "acme"}

        # 3. a pipeline per stream in tongbu.yaml, run by `tongbu run`
        project = {
            "version": 1,
            "connections": {
                "acme": {
                    "connector": "acme",
                    "config": {
                        "base_url": url,
                        "client_id": credentials["client_id"],
                        "client_secret": "${ACME_CLIENT_SECRET}",
                        "page_size": 25,
                    },
                }
            },
            "pipelines": {
                f"acme_{stream}": {
                    "source": {"connection": "acme", "stream": stream},
                    "mapping": str(checkout / "mappings/library/acme_to_crm.yaml"),
                    "target": {"object": obj},
                }
                for stream, obj in (
                    ("customers", "accounts"),
                    ("contacts", "contacts"),
                    ("orders", "sales_orders"),
                )
            },
        }
        (tmp_path / "tongbu.yaml").write_text(yaml.safe_dump(project), encoding="utf-8")
        hub = tmp_path / "hub.db"
        run_env = _env(
            checkout,
            TONGBU_PROJECT=str(tmp_path / "tongbu.yaml"),
            TONGBU_DATABASE_URL=f"sqlite:///{hub}",
            ACME_CLIENT_SECRET=credentials["client_secret"],
        )
        run = subprocess.run(
            [sys.executable, "-m", "tongbu.cli", "run"],
            cwd=checkout,
            env=run_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        counts = httpx.get(f"{url}/_sim/counts").json()
    finally:
        sim.send_signal(signal.SIGINT)
        sim.wait(30)
    assert counts == {"customers": 60, "contacts": 60, "orders": 60}
    import sqlite3

    with sqlite3.connect(hub) as db:
        landed = {
            t: db.execute(f"SELECT COUNT(*) FROM {t} WHERE source_system = 'acme'").fetchone()[0]  # noqa: S608
            for t in ("accounts", "contacts", "sales_orders")
        }
        lines = db.execute("SELECT COUNT(*) FROM sales_order_lines").fetchone()[0]
    assert landed == {"accounts": 60, "contacts": 60, "sales_orders": 60} and lines >= 60

    # 4. Dagster: an asset per stream, upstream of the hub objects
    keys = subprocess.run(
        [
            sys.executable,
            "-c",
            "from dagster_project.assets import build_definitions\n"
            "defs = build_definitions()\n"
            "print('\\n'.join(sorted(k.to_user_string() for k in defs.resolve_all_asset_keys())))",
        ],
        cwd=checkout,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert keys.returncode == 0, keys.stderr[-2000:]
    assert {"acme/customers", "acme/contacts", "acme/orders", "crm/accounts", "crm/contacts"} <= set(
        keys.stdout.split()
    )
