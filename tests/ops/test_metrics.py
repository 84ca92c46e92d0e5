"""Prometheus metrics: ``tongbu serve`` at ``/metrics`` (real callbacks from the WeCom simulator, a real
HTTP server, scraped with httpx and parsed with prometheus_client's own parser) and the runner's
per-pipeline rows and durations (also written to a node-exporter text file)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.kit.server import BackgroundServer
from connectors.wecom.simulator import WeComSimulator
from pipelines.project import Project
from pipelines.runner import Runner
from tests.helpers.wecom import serve_config
from tongbu import metrics
from tongbu.serve.app import build_app

pytestmark = pytest.mark.wecom_sim(records=50, seed=7)
ROOT = Path(__file__).resolve().parents[2]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_serve_exposes_event_counts_queue_depth_and_latency(sim: WeComSimulator) -> None:
    app = build_app(serve_config(sim))
    with BackgroundServer(app) as server:
        sim.set_callback(server.url + "/hooks/wecom")
        # Two contacts (events for one contact may be coalesced into one change)
        sim.add_external_contact(sim.users[1]["userid"], name="郑海燕", remark="郑经理", tags=[])
        sim.add_external_contact(sim.users[2]["userid"], name="王建国", remark="王总", tags=[])
        assert sim.wait_callbacks(10) and app.state.processor.drain(10)
        # Two refusals: an unsigned delivery and an oversized one.
        assert httpx.post(server.url + "/hooks/wecom", content=b"<xml/>").status_code == 400
        assert httpx.post(server.url + "/hooks/wecom", content=b"x" * 70_000).status_code == 413
        r = httpx.get(server.url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = samples(r.text)
    assert got[("tongbu_events_received_total", ())] == 2
    assert got[("tongbu_events_applied_total", ())] == 2
    assert got[("tongbu_events_rejected_total", ())] == 2
    assert got[("tongbu_events_queue_depth", ())] == 0
    assert got[("tongbu_event_apply_latency_seconds_count", ())] == 2
    assert got[("tongbu_event_apply_latency_seconds_bucket", (("le", "+Inf"),))] == 2
    # /metrics and the JSON metrics endpoint count the same events
    assert app.state.processor.metrics.snapshot()["counts"]["applied"] == 2


def test_runner_records_rows_and_duration_per_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    textfile = tmp_path / "tongbu.prom"
    monkeypatch.setenv(metrics.TEXTFILE_ENV, str(textfile))
    project = Project.model_validate(
        {
            "connections": {"synth": {"connector": "synthetic", "config": {"records": 120}}},
            "pipelines": {
                "metrics_accounts": {
                    "source": {"connection": "synth", "stream": "records"},
                    "mapping": str(ROOT / "mappings/library/synthetic_to_crm.yaml"),
                    "target": {"object": "accounts"},
                }
            },
        }
    )
    for name, spec in project.pipelines.items():
        spec.name = name
    before = samples(metrics.render().decode())
    key_read = ("tongbu_pipeline_rows_total", (("kind", "read"), ("pipeline", "metrics_accounts")))
    key_runs = ("tongbu_pipeline_runs_total", (("pipeline", "metrics_accounts"), ("status", "success")))
    Runner(project).run("metrics_accounts")
    Runner(project).run("metrics_accounts")  # incremental: nothing new
    got = samples(metrics.render().decode())
    assert got[key_read] - before.get(key_read, 0) == 120
    assert got[key_runs] - before.get(key_runs, 0) == 2
    count = ("tongbu_pipeline_run_duration_seconds_count", (("pipeline", "metrics_accounts"),))
    assert got[count] - before.get(count, 0) == 2
    assert got[("tongbu_pipeline_last_success_timestamp_seconds", (("pipeline", "metrics_accounts"),))] > 0
    # the text file a node exporter scrapes holds the same figures
    assert samples(textfile.read_text(encoding="utf-8"))[key_read] == got[key_read]
