"""tap-shopify against its simulator: pacing from the call-limit header, minimal calls, resumption."""

from __future__ import annotations

import math
from typing import Any

from connectors.shopify.client import CallPacer
from connectors.shopify.simulator import ShopifySimulator
from connectors.shopify.tap import TapShopify, parse_offset

FAST = {"backoff_base": 0.01, "backoff_max": 0.05, "max_retries": 30, "request_timeout": 2.0}


def read(sim: ShopifySimulator, stream: str, **config: Any) -> tuple[list[dict[str, Any]], TapShopify]:
    tap = TapShopify(config=sim.tap_config(**FAST, **config), parse_env_config=False)
    return list(tap.streams[stream].get_records(None)), tap


def test_the_client_paces_itself_from_the_call_limit_header() -> None:
    # A 4-call bucket leaking 2/s: without pacing a sync overflows it unless each call took 0.5 s.
    with ShopifySimulator(records=100, bucket=4, leak_rate=2.0) as sim:
        rows, tap = read(sim, "orders", calls_per_second=2, page_size=10, bucket_reserve=1)
        assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in sim.truth("orders"))
        stats = sim.stats()
        assert stats["bucket_full"] == 0, stats
        # one call per page of 10 (the Link header says when to stop), plus shop.json
        assert tap.client.calls == math.ceil(100 / 10) + 1
        assert tap.client.pacer.waited > 0


def test_without_pacing_the_bucket_overflows_and_retry_after_is_honoured() -> None:
    with ShopifySimulator(records=100, bucket=4, leak_rate=2.0) as sim:
        rows, _ = read(sim, "orders", calls_per_second=100_000, page_size=10, bucket_reserve=0)
        assert sim.stats()["bucket_full"] > 0  # the baseline of the test above
        assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in sim.truth("orders"))


def test_a_resumed_read_starts_after_the_bookmark_without_gaps() -> None:
    with ShopifySimulator(records=120, leak_rate=500.0, faults="same_second=0.5") as sim:
        rows, tap = read(sim, "orders", page_size=10)
        cut = rows[len(rows) // 2]
        stream = tap.streams["orders"]
        stream.start_cursor_from(stream.cursor_for_record(cut))
        rest = list(stream.get_records(None))
        assert [r["id"] for r in rest] == [r["id"] for r in rows[len(rows) // 2 + 1 :]]


def test_the_sixty_day_window_limits_orders_not_customers() -> None:
    with ShopifySimulator(records=200, leak_rate=500.0, read_all_orders=False) as sim:
        rows, _ = read(sim, "orders")
        assert 0 < len(rows) == len(sim.truth("orders")) < 200
        customers, _ = read(sim, "customers")
        assert len(customers) == 200


def test_pacer_model_and_offset_parsing() -> None:
    now = [0.0]
    pacer = CallPacer(2.0, reserve=2, clock=lambda: now[0])
    pacer.observe("38/40")
    assert pacer.delay() == 0.5  # 38 used, room for 38: wait for one to leak
    now[0] = 10.0
    assert pacer.delay() == 0.0
    pacer.observe("garbage")
    pacer.observe("9" * 40)
    assert pacer.capacity == 40
    assert parse_offset("(GMT+08:00) Asia/Shanghai") == 480
    assert parse_offset("(GMT-05:30) X") == -330 and parse_offset("") == 0
