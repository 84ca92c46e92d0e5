"""The tender history on SQLite (FTS5) and PostgreSQL (tsvector): search, filters, subscriptions, CLI."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from connectors.tender.history import NoticeQuery, SearchError, SubscriptionSpec, TenderHistory, segment
from connectors.tender.simulator import NoticeStore
from connectors.tender.simulator.data import public
from tongbu.cli import app


@pytest.fixture(scope="module")
def notices() -> list[dict]:
    return [{**public(n), "url": f"http://sim/{n['id']}.htm"} for n in NoticeStore(600, 9).notices]


def like(
    notices: list[dict], *terms: str, region: str | None = None, kinds: tuple[str, ...] = ()
) -> set[int]:
    out = set()
    for n in notices:
        text = f"{n['title']}\n{n['summary']}\n{n['content']}"
        in_region = region is None or n["region"] == region
        if (
            all(t in text for t in terms)
            and in_region
            and (not kinds or any(k in n["notice_type"] for k in kinds))
        ):
            out.add(n["id"])
    return out


def test_search_equals_a_substring_scan_with_filters(hub_engine, notices: list[dict]) -> None:
    history = TenderHistory(hub_engine, "t1")
    first = history.add(notices)
    assert len(first.new) == len(notices)
    again = history.add(notices)
    assert (again.new, again.updated, again.unchanged) == ([], 0, len(notices))
    for terms in (("软件",), ("管理软件",), ("医疗设备",), ("云计",), ("用计",), ("信息", "服务")):
        got = {r["notice_id"] for r in history.search(NoticeQuery(keywords=terms), limit=1000)}
        assert got == like(notices, *terms), terms
    q = NoticeQuery(keywords=("采购",), regions=("广东省",), types=("result",))
    assert {r["notice_id"] for r in history.search(q, limit=1000)} == like(
        notices, "采购", region="广东", kinds=("中标", "成交")
    )
    day = dt.date(2024, 5, 10)
    q = NoticeQuery(since=day, until=day)
    got = history.search(q, limit=1000)
    assert got and all(r["publish_time"].date() == day for r in got)
    assert len(got) == sum(1 for n in notices if n["publish_time"][:10] == "2024-05-10")
    q = NoticeQuery(budget_min=Decimal(1_000_000), budget_max=Decimal(2_000_000), categories=("货物",))
    want = {
        n["id"]
        for n in notices
        if n["budget"] and 1e6 <= float(n["budget"]) <= 2e6 and n["category"].startswith("货物/")
    }
    assert {r["notice_id"] for r in history.search(q, limit=1000)} == want
    buyer = notices[0]["buyer"]
    assert {r["notice_id"] for r in history.search(NoticeQuery(buyer=buyer[2:8]), limit=1000)} == {
        n["id"] for n in notices if buyer[2:8] in n["buyer"]
    }
    # another tenant sees nothing
    assert TenderHistory(hub_engine, "t2").search(NoticeQuery(keywords=("软件",))) == []
    # an edited notice is updated, in the index too
    edited = {**notices[0], "title": notices[0]["title"] + "（第二次）", "summary": "独一无二的更正说明"}
    assert history.add([edited]).updated == 1
    assert [r["notice_id"] for r in history.search(NoticeQuery(keywords=("独一无二",)))] == [edited["id"]]


def test_query_terms_are_bounded_and_safe(hub_engine, notices: list[dict]) -> None:
    history = TenderHistory(hub_engine)
    history.add(notices[:50])
    for hostile in (
        '"',
        "软件 OR 1",
        "NEAR(a b)",
        "a:b",
        "'; drop table tender_notices; --",
        "*",
        "(",
        "&|!",
    ):
        history.search(NoticeQuery(keywords=(hostile,)))
    with pytest.raises(SearchError, match="longer than"):
        history.search(NoticeQuery(keywords=("软" * 100,)))
    assert "财务 管理 财务管理 软件" in segment("财务管理软件")


def test_subscriptions_are_per_tenant_and_alerts_queue_once(hub_engine, notices: list[dict]) -> None:
    a, b = TenderHistory(hub_engine, "a"), TenderHistory(hub_engine, "b")
    spec = SubscriptionSpec.from_dict({"keywords": "软件,信息化", "exclude": ["终止"], "budget_min": 100000})
    a.subscribe("soft", "zhangsan", spec, {"mail": ["z@example.com"]})
    assert [s["name"] for s in a.subscriptions()] == ["soft"] and b.subscriptions() == []
    added = a.add(notices)
    queued = a.match(added.new)
    want = {
        n["id"] for n in notices
        if any(k in f"{n['title']}\n{n['summary']}\n{n['content']}" for k in ("软件", "信息化"))
        and "终止" not in f"{n['title']}\n{n['summary']}\n{n['content']}"
        and (n["budget"] and Decimal(n["budget"]) >= 100000 or sum(Decimal(lot["amount"]) for lot in n["lots"]) >= 100000)
    }  # fmt: skip
    assert queued == len(want) and {p["notice_id"] for p in a.pending_alerts(10_000)} == want
    assert a.match(added.new) == 0  # idempotent
    assert a.unsubscribe("soft") and not a.unsubscribe("soft")
    assert a.pending_alerts() == []


def test_cli_search_subscribe_list_unsubscribe(tmp_path: Path, notices: list[dict], monkeypatch) -> None:
    from tongbu.db import get_engine

    TenderHistory(get_engine()).add(notices)
    path = tmp_path / "tongbu.yaml"
    channels = {"mail": {"kind": "email", "host": "127.0.0.1", "port": 2525, "sender": "t@example.com"}}
    path.write_text(yaml.safe_dump({"alerts": {"channels": channels}}), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    cli = CliRunner()
    out = cli.invoke(app, ["tenders", "search", "软件", "--region", "江苏", "--json", "--limit", "500"])
    assert out.exit_code == 0, out.output
    ids = {json.loads(line)["notice_id"] for line in out.output.splitlines()}
    assert ids == like(notices, "软件", region="江苏")
    out = cli.invoke(app, ["tenders", "search", "软件", "--since", "2024-05-32"])
    assert out.exit_code == 1 and "--since must be a date" in out.output and "Traceback" not in out.output
    out = cli.invoke(
        app,
        [
            "tenders",
            "subscribe",
            "it",
            "--subscriber",
            "li",
            "-k",
            "软件",
            "--budget-min",
            "50万",
            "--notify",
            "mail:li@example.com",
        ],
    )
    assert out.exit_code == 0, out.output
    out = cli.invoke(app, ["tenders", "subscribe", "x", "--subscriber", "li", "--notify", "mial"])
    assert out.exit_code == 1 and "no such alert channel" in out.output
    out = cli.invoke(app, ["tenders", "subscribe", "y", "--subscriber", "li", "--region", "广栋"])
    assert out.exit_code == 1 and "unknown region" in out.output
    out = cli.invoke(app, ["tenders", "list", "--json"])
    [sub] = [json.loads(line) for line in out.output.splitlines()]
    assert sub["spec"]["budget_min"] == "500000" and sub["channels"] == {"mail": ["li@example.com"]}
    assert cli.invoke(app, ["tenders", "unsubscribe", "it"]).exit_code == 0
    out = cli.invoke(app, ["tenders", "unsubscribe", "it"])
    assert out.exit_code == 1 and "no subscription 'it'" in out.output
