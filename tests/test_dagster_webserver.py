"""``dagster dev -w workspace.yaml`` (the real webserver and daemon): it lists the assets, and a run
launched through its GraphQL API (what the UI's "Materialize" button sends) performs the sync and
records the metadata."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from connectors.kit.server import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _gql(url: str, query: str, variables: dict | None = None) -> dict:
    res = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
    res.raise_for_status()
    body = res.json()
    assert "errors" not in body, body
    return body["data"]


@pytest.mark.slow
def test_webserver_lists_assets_and_a_launched_run_syncs(tmp_path: Path) -> None:
    project = tmp_path / "tongbu.yaml"
    project.write_text(
        yaml.safe_dump(
            {
                "connections": {"synth": {"connector": "synthetic", "config": {"records": 700}}},
                "pipelines": {
                    "synth_accounts": {
                        "source": {"connection": "synth", "stream": "records"},
                        "mapping": str(ROOT / "mappings/library/synthetic_to_crm.yaml"),
                        "target": {"object": "accounts"},
                        # No schedule: the daemon must not start a run of its own at a
                        # quarter-hour tick while the test runs (that run would sync
                        # first and leave ours with nothing to read).
                        "schedule": None,
                    }
                },
            }
        ),
        encoding="utf-8",
    )
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    port = free_port()
    env = {**os.environ, "TONGBU_PROJECT": str(project), "DAGSTER_HOME": str(dagster_home)}
    web = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # its own process group: webserver, daemon, code server
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert web.poll() is None and time.monotonic() < deadline, "webserver did not start"
            time.sleep(0.5)
        nodes = _gql(url, "{ assetNodes { assetKey { path } groupName } }")["assetNodes"]
        assert {("/".join(n["assetKey"]["path"]), n["groupName"]) for n in nodes} == {
            ("synth/records", "synth"),
            ("crm/accounts", "crm"),
        }
        # Launch the pipeline's job, as the UI's "Materialize" button or a schedule would.
        launched = _gql(
            url,
            """
            mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
              __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
            {
                "p": {
                    "selector": {
                        "repositoryLocationName": "dagster_project.definitions",
                        "repositoryName": "__repository__",
                        "jobName": "sync_synth_accounts",
                    }
                }
            },
        )
        assert launched["launchRun"]["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["launchRun"]["run"]["runId"]
        status = ""
        while status not in ("SUCCESS", "FAILURE", "CANCELED"):
            assert time.monotonic() < deadline + 120, f"run still {status}"
            time.sleep(1)
            status = _gql(
                url, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id}
            )["runOrError"]["status"]
        assert status == "SUCCESS"
        mats = _gql(
            url,
            """{ assetOrError(assetKey: {path: ["synth", "records"]}) { ... on Asset {
              assetMaterializations(limit: 1) { runId metadataEntries { label
                ... on IntMetadataEntry { intValue } ... on JsonMetadataEntry { jsonString } } } } } }""",
        )
        [mat] = mats["assetOrError"]["assetMaterializations"]
        assert mat["runId"] == run_id
        entries = {e["label"]: e for e in mat["metadataEntries"]}
        assert entries["rows_read"]["intValue"] == 700 and entries["rows_written"]["intValue"] == 700
        assert "replication_key_value" in entries["cursor_after"]["jsonString"]
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        try:
            web.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(web.pid, signal.SIGKILL)
