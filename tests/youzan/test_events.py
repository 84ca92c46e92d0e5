"""The real-time path: Youzan pushes → ``tongbu serve`` → CRM hub.

A push with a wrong ``sign`` (md5(client_id + msg + client_secret)), for another app or another shop
changes nothing; a replayed ``msg_id`` is applied once; an older push arriving late loses to the newer
one; the simulator's at-least-once pushes (duplicates, dropped attempts retried) land exactly.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from connectors.kit.server import BackgroundServer
from connectors.youzan.simulator import YouzanSimulator
from connectors.youzan.simulator.app import push_sign
from tongbu.db import get_engine
from tongbu.hub.store import HubStore
from tongbu.inbox import ensure_inbox, event_inbox
from tongbu.serve.app import build_app
from tongbu.state.models import QuarantinedRecord


def serve_config(sim: YouzanSimulator) -> dict[str, Any]:
    return {"sources": [{"name": "yz", "connector": "youzan", "config": sim.tap_config()}], "dagster": "off"}


@pytest.fixture
def sim() -> Iterator[YouzanSimulator]:
    s = YouzanSimulator(records=30, seed=8)
    s.start()
    yield s
    s.close()


def hub_row(tid: str) -> dict[str, Any] | None:
    engine = get_engine()
    with engine.connect() as conn:
        return HubStore(engine).get(conn, "sales_orders", "yz", tid)


def inbox() -> list[dict[str, Any]]:
    engine = get_engine()
    ensure_inbox(engine)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(event_inbox)).mappings()]


def push(
    url: str,
    sim: YouzanSimulator,
    trade: dict[str, Any],
    *,
    secret: str | None = None,
    msg_id: str = "m-1",
    version: int = 1,
    kdt_id: Any = None,
    client_id: str | None = None,
) -> httpx.Response:
    msg = urllib.parse.quote(json.dumps(trade, ensure_ascii=False))
    cid = client_id or sim.CLIENT_ID
    body = {
        "client_id": cid,
        "id": trade["full_order_info"]["order_info"]["tid"],
        "kdt_id": kdt_id or int(sim.GRANT_ID),
        "msg": msg,
        "sign": push_sign(cid, msg, secret or sim.CLIENT_SECRET),
        "type": "trade_TradeSuccess",
        "status": "TRADE_SUCCESS",
        "test": False,
        "version": version,
        "msg_id": msg_id,
        "mode": 1,
        "sendCount": 0,
    }
    return httpx.post(url, json=body)


def test_forged_foreign_and_replayed_pushes(sim: YouzanSimulator) -> None:
    app = build_app(serve_config(sim))
    row = sim.data.tables["trades"][0]
    trade = sim.render("trades", row)
    tid = trade["full_order_info"]["order_info"]["tid"]
    with BackgroundServer(app) as server:
        url = server.url + "/hooks/yz"
        assert push(url, sim, trade, secret="wrong").status_code == 401
        assert push(url, sim, trade, client_id="someone-else").status_code == 401
        assert push(url, sim, trade, kdt_id=1).status_code == 403
        assert httpx.post(url, content=b"{not json").status_code == 400
        assert app.state.processor.drain(10)
        assert inbox() == [] and hub_row(tid) is None
        ok = push(url, sim, trade, msg_id="m-1", version=200)
        assert ok.status_code == 200 and ok.json() == {"code": 0, "msg": "success"}
        assert push(url, sim, trade, msg_id="m-1", version=200).status_code == 200  # replay
        assert app.state.processor.drain(10)
        older = json.loads(json.dumps(trade))
        older["full_order_info"]["order_info"]["update_time"] = "2020-01-01 00:00:00"
        older["full_order_info"]["order_info"]["status"] = "WAIT_BUYER_PAY"
        assert push(url, sim, older, msg_id="m-0", version=100).status_code == 200
        assert app.state.processor.drain(10)
    stored = hub_row(tid)
    assert stored is not None and stored["channel"] == "youzan" and stored["shop"] == sim.GRANT_ID
    assert stored["status"] != "pending"  # the late, older push did not win
    assert [r["dedup_key"] for r in inbox()].count("m-1") == 1


def test_simulator_pushes_flow_into_the_hub_at_least_once(sim: YouzanSimulator) -> None:
    sim.set_faults("push_duplicate=0.5,push_fail=0.3")
    app = build_app(serve_config(sim))
    with BackgroundServer(app) as server:
        sim.pushes.subscribe(server.url + "/hooks/yz", sim.CLIENT_SECRET)
        sim.modify("trades", 6)
        tids = [t["tid"] for t in sim.truth("trades", limit=3)]
        sim.change_trade(tids[0], "TRADE_CLOSED")
        sim.change_trade(tids[1], "refund")
        assert sim.pushes.wait_idle(30) and app.state.processor.drain(30)
    assert sim.stats()["push_retries"] > 0 and sim.pushes.failed == []
    assert hub_row(tids[0])["status"] == "cancelled"
    assert hub_row(tids[1])["status"] == "refunded"
    assert hub_row(tids[2])["status"] is not None
    lines_ok = hub_row(tids[2])
    assert lines_ok["contact_ref"].startswith("yz")
    applied = [r for r in inbox() if r["status"] == "applied"]
    assert len(applied) == len({r["dedup_key"] for r in applied})


def test_an_unmappable_push_is_quarantined_not_lost(sim: YouzanSimulator) -> None:
    app = build_app(serve_config(sim))
    trade = sim.render("trades", sim.data.tables["trades"][1])
    trade["full_order_info"]["orders"][0]["num"] = "三"
    tid = trade["full_order_info"]["order_info"]["tid"]
    with BackgroundServer(app) as server:
        assert push(server.url + "/hooks/yz", sim, trade, msg_id="m-q").status_code == 200
        assert app.state.processor.drain(10)
    engine = get_engine()
    with engine.connect() as conn:
        rows = conn.execute(
            select(QuarantinedRecord.__table__).where(QuarantinedRecord.__table__.c.source_id == tid)
        ).all()
    assert len(rows) == 1 and "num" in rows[0].reason and hub_row(tid) is None
