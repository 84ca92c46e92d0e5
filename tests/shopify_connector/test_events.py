"""The real-time path: Shopify webhooks → ``tongbu serve`` → CRM hub.

Forged, tampered or foreign-shop deliveries are 401 and change nothing; a replay (same
``X-Shopify-Webhook-Id``) is acknowledged and applied once; out-of-order deliveries keep the newest
version; the simulator's at-least-once deliveries (duplicates, dropped attempts retried) land exactly.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from connectors.kit.server import BackgroundServer
from connectors.shopify.simulator import ShopifySimulator
from connectors.shopify.simulator.app import sign
from tongbu.db import get_engine
from tongbu.hub.store import HubStore
from tongbu.inbox import ensure_inbox, event_inbox
from tongbu.serve.app import build_app

SECRET = ShopifySimulator.CLIENT_SECRET
REPLAYED = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"


def serve_config(sim: ShopifySimulator, **config: Any) -> dict[str, Any]:
    source = {
        "name": "shop",
        "connector": "shopify",
        "config": {**sim.tap_config(), "webhook_secret": SECRET, **config},
    }
    return {"sources": [source], "dagster": "off"}


@pytest.fixture
def sim() -> Iterator[ShopifySimulator]:
    s = ShopifySimulator(records=30, seed=4, leak_rate=500.0)
    s.start()
    yield s
    s.close()


def hub_row(obj: str, source_id: Any) -> dict[str, Any] | None:
    engine = get_engine()
    with engine.connect() as conn:
        return HubStore(engine).get(conn, obj, "shop", str(source_id))


def inbox() -> list[dict[str, Any]]:
    engine = get_engine()
    ensure_inbox(engine)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(event_inbox)).mappings()]


def post(
    url: str,
    topic: str,
    payload: dict[str, Any],
    *,
    secret: str = SECRET,
    webhook_id: str | None = None,
    tamper: bool = False,
    shop: str = ShopifySimulator.SHOP,
) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-Hmac-Sha256": sign(secret, body),
    }
    return httpx.post(url, content=body + (b" " if tamper else b""), headers=headers)


def test_forged_tampered_and_unsigned_webhooks_change_nothing(sim: ShopifySimulator) -> None:
    app = build_app(serve_config(sim))
    order = sim.truth("orders", limit=1)[0]
    with BackgroundServer(app) as server:
        url = server.url + "/hooks/shop"
        assert post(url, "orders/updated", order, secret="not-the-secret").status_code == 401
        assert post(url, "orders/updated", order, tamper=True).status_code == 401
        unsigned = httpx.post(
            url,
            content=json.dumps(order),
            headers={"X-Shopify-Topic": "orders/updated", "X-Shopify-Webhook-Id": "abc"},
        )
        assert unsigned.status_code == 401
        assert post(url, "../../etc", order).status_code == 400
        assert app.state.processor.drain(10)
    assert inbox() == [] and hub_row("sales_orders", order["id"]) is None


def test_a_replay_is_acknowledged_but_applied_once_and_old_deliveries_lose(sim: ShopifySimulator) -> None:
    app = build_app(serve_config(sim))
    order = sim.truth("orders", limit=1)[0]
    order.pop("_malformed")
    with BackgroundServer(app) as server:
        url = server.url + "/hooks/shop"
        newer = {**order, "note": "newer", "updated_at": "2030-01-01T08:00:00+08:00"}
        assert post(url, "orders/updated", newer, webhook_id=REPLAYED).status_code == 200
        assert post(url, "orders/updated", newer, webhook_id=REPLAYED).status_code == 200  # replay
        assert app.state.processor.drain(10)
        # An older version delivered late must not overwrite the newer one.
        older = {**order, "note": "older", "updated_at": "2029-12-31T08:00:00+08:00"}
        assert post(url, "orders/updated", older).status_code == 200
        assert app.state.processor.drain(10)
    row = hub_row("sales_orders", order["id"])
    assert row is not None and row["order_no"] == order["name"] and row["channel"] == "shopify"
    assert row["shop"] == ShopifySimulator.SHOP and row["contact_ref"] == str(order["customer"]["id"])
    assert len([r for r in inbox() if r["dedup_key"] == REPLAYED]) == 1


def test_simulator_webhooks_flow_into_the_hub_at_least_once(sim: ShopifySimulator) -> None:
    sim.set_faults("webhook_duplicate=0.5,webhook_fail=0.3")
    app = build_app(serve_config(sim))
    with BackgroundServer(app) as server:
        sim.webhooks.subscribe(server.url + "/hooks/shop", SECRET)
        sim.modify("customers", 5)
        sim.modify("orders", 4)
        first = sim.truth("orders", limit=2)
        sim.change_order(first[0]["id"], "cancel")
        sim.change_order(first[1]["id"], "refund")
        assert sim.webhooks.wait_idle(30) and app.state.processor.drain(30)
    stats = sim.stats()
    assert stats["webhook_retries"] > 0, stats  # attempts were dropped and retried
    assert sim.webhooks.failed == []
    for customer in sim.truth("customers", limit=5):
        row = hub_row("contacts", customer["id"])
        assert row is not None and row["remark"] == customer["note"]
    assert hub_row("sales_orders", first[0]["id"])["status"] == "cancelled"
    assert hub_row("sales_orders", first[1]["id"])["status"] == "refunded"
    applied = [r for r in inbox() if r["status"] == "applied"]
    assert len(applied) == len({r["dedup_key"] for r in applied})  # each delivery id once


def test_one_connection_config_serves_the_tap_and_the_webhooks(sim: ShopifySimulator) -> None:
    from connectors.shopify.events import ShopifyEventSource
    from pipelines.project import connector_settings

    allowed = connector_settings("shopify")
    assert allowed is not None and {"webhook_secret", "shop_domain"} <= allowed
    engine = get_engine()
    with pytest.raises(ValueError, match="unknown Shopify setting"):
        ShopifyEventSource(
            "shop", {**sim.tap_config(), "webhook_secret": SECRET, "webhok_secret": "x"}, engine=engine
        )
    with pytest.raises(ValueError, match="webhook_secret"):
        ShopifyEventSource("shop", {"shop_url": sim.base_url, "access_token": "t"}, engine=engine)
