"""The Fxiaoke client against the simulator: pacing shared by parallel pipelines (proved by the
simulator's counters), the token cache, token expiry mid-run, quota errors, lost write answers."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml

from connectors.fxiaoke.client import FxiaokeQuotaError
from connectors.fxiaoke.reader import iter_all, iter_changed
from connectors.fxiaoke.simulator import FxiaokeSimulator
from connectors.kit.tokens import MemoryTokenCache
from tests.fxiaoke.conftest import client_for


def test_parallel_pipelines_stay_under_the_endpoint_and_token_limits() -> None:
    """Twelve pipelines, each with its own client (as separate pipeline runs in one worker are),
    read at once: the shared limiter keeps every endpoint under the limit in every window, and one
    token serves them all. The limits are scaled (10 per 2 s) so the test takes seconds, not minutes;
    the code path is the one the documented 100 per 20 s uses."""
    with FxiaokeSimulator(records=300, seed=2, rate_limit=10, rate_window=2.0, token_limit=10) as sim:
        cache = MemoryTokenCache()
        clients = [client_for(sim, rate_limit=10, rate_window=2.0, token_cache=cache) for _ in range(12)]
        got: list[int] = []
        errors: list[BaseException] = []

        def pipeline(i: int) -> None:
            try:
                obj = ("AccountObj", "ContactObj", "PaymentObj")[i % 3]
                got.append(sum(1 for _ in iter_all(clients[i], obj, limit=100)))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=pipeline, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[0]
        assert sorted(got) == [300] * 12
        stats, peaks = sim.stats(), sim.peaks()
        assert stats["throttled"] == 0
        assert peaks["calls_per_window"] <= 10  # measured by the simulator, per endpoint and window
        assert stats["token_calls"] == 1 and peaks["token_calls_per_minute"] == 1
        # 3 pages of 100 each: the minimum (the total in the third answer says nothing is left)
        assert sim.calls_by_endpoint() == {"data/query": 12 * 3}
        for c in clients:
            c.close()


def test_token_fetches_are_paced_to_ten_a_minute_even_when_every_token_is_refused() -> None:
    """A tenant whose tokens keep expiring (session_expiry=1: each token serves one call): the client
    never asks the token endpoint more than its limit allows in a minute (limit scaled to 3)."""
    with FxiaokeSimulator(
        records=20, seed=2, faults="session_expiry=1", token_limit=3, token_window=1.0
    ) as sim:
        c = client_for(sim, token_limit=3, token_window=1.0)  # a 1 s "minute", so the test is quick
        rows = list(iter_all(c, "AccountObj", limit=5))
        assert len(rows) == 20
        assert sim.stats()["token_refused_rate"] == 0 and sim.stats()["tokens_expired"] >= 3
        assert sim.peaks()["token_calls_per_minute"] <= 3
        c.close()


def test_a_token_expiring_mid_run_is_replaced_and_the_read_goes_on(fx, fx_client) -> None:
    rows = []
    for i, row in enumerate(iter_all(fx_client, "AccountObj", limit=2)):
        rows.append(row)
        if i == 3:
            fx.advance(7_300)  # two hours later: the token is past its 7,200 s
    assert len(rows) == 8
    stats = fx.stats()
    assert stats["tokens_expired"] == 1 and stats["tokens_issued"] == 2


def test_quota_errors_stop_at_once_with_what_to_do() -> None:
    with FxiaokeSimulator(records=30, seed=2, faults="daily_quota=2") as sim:
        c = client_for(sim)
        with pytest.raises(FxiaokeQuotaError, match="quota is spent; retrying will not help"):
            list(iter_all(c, "AccountObj", limit=10))
        assert sim.stats()["quota_refused"] == 1  # not retried
        sim.set_faults("quota_not_purchased=1")
        with pytest.raises(FxiaokeQuotaError, match="no OpenAPI call quota has been bought"):
            c.query("AccountObj")
        c.close()


def test_a_spent_quota_stops_the_pipeline_and_the_next_run_resumes_exactly(tmp_path: Path) -> None:
    from pipelines.project import load_project
    from pipelines.runner import Runner
    from tongbu.db import get_engine

    # The runner commits its first batch after its 1,000-record sample, so the quota (1 describe,
    # 1 high-water query, then 13 pages of 100) runs out after 1,300 of 1,500 records.
    none = {"contacts": 0, "leads": 0, "opportunities": 0, "orders": 0, "payments": 0}
    with FxiaokeSimulator(records=1500, seed=4, faults="daily_quota=15", **none) as sim:
        cfg = sim.tap_config(
            page_size=100, objects=["accounts"], max_retries=2, backoff_base=0.01, backoff_max=0.02
        )
        project = {
            "version": 1,
            "tenant": "default",
            "connections": {"fx": {"connector": "fxiaoke", "config": cfg}},
            "pipelines": {
                "fx_accounts": {
                    "source": {"connection": "fx", "stream": "accounts"},
                    "mapping": str(
                        Path(__file__).resolve().parents[2] / "mappings/library/fxiaoke_to_crm.yaml"
                    ),
                    "target": {"object": "accounts"},
                    "batch_size": 100,
                }
            },
        }
        (tmp_path / "tongbu.yaml").write_text(yaml.safe_dump(project, allow_unicode=True), encoding="utf-8")
        runner = Runner(
            load_project(tmp_path / "tongbu.yaml"), get_engine(f"sqlite:///{tmp_path / 'hub.db'}")
        )
        with pytest.raises(Exception, match="quota"):
            runner.run("fx_accounts")
        sim.set_faults(None)  # a new day
        second = runner.run("fx_accounts")
        from sqlalchemy import text

        with runner.engine.connect() as conn:
            ids = [r[0] for r in conn.execute(text("SELECT source_id FROM accounts"))]
        assert sorted(ids) == sorted(r["_id"] for r in sim.truth("AccountObj"))  # 0 lost, 0 twice
        assert second.rows_read <= 500  # resumed after the committed batches, not from the start
        assert not second.extra.get("warnings")  # owner.0 reads the first owner: no false warning


def test_a_write_whose_answer_is_lost_is_not_sent_again_blind(fx, fx_client) -> None:
    fx.set_faults("lost_response=1")
    with pytest.raises(Exception, match="504"):
        fx_client.create("AccountObj", {"name": "只写一次有限公司"})
    fx.set_faults(None)
    assert fx.stats()["creates"] == 1  # applied once, not retried
    assert len([r for r in fx.truth("AccountObj") if r["name"] == "只写一次有限公司"]) == 1


def test_the_change_feed_reads_a_millisecond_shared_by_more_rows_than_a_page(fx_client) -> None:
    with FxiaokeSimulator(records=45, seed=9, faults="same_second=30") as sim:
        c = client_for(sim)
        rows = list(iter_changed(c, "AccountObj", None, limit=10))
        assert sorted(r["_id"] for r in rows) == sorted(r["_id"] for r in sim.truth("AccountObj"))
        assert len(rows) == 45
        # after a cursor in the middle of the shared millisecond: exactly the rest
        cut = rows[14]
        rest = list(iter_changed(c, "AccountObj", (cut["last_modified_time"], cut["_id"]), limit=10))
        assert [r["_id"] for r in rest] == [r["_id"] for r in rows[15:]]
        c.close()
