"""The tender feed end to end: the procurement simulator (anti-bot pages, GBK provinces) → history →
subscriptions → CRM leads/opportunities → alerts on the WeCom simulator and a local SMTP server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from connectors.kit.names import company_key
from connectors.tender.history import SubscriptionSpec, TenderHistory
from connectors.tender.simulator import TenderSimulator
from connectors.wecom.simulator import WeComSimulator
from pipelines.project import load_project
from pipelines.tenders import TenderFeed
from tests.helpers.smtp import SmtpServer
from tongbu.db import get_engine
from tongbu.hub.store import HubStore, hub_table

pytestmark = pytest.mark.wecom_sim(records=20, seed=3)


@pytest.fixture
def tender() -> Iterator[TenderSimulator]:
    sim = TenderSimulator(records=150, seed=11, faults="antibot_per_min=25,antibot_window=0.5")
    sim.start()
    yield sim
    sim.close()


def write_project(
    tmp_path: Path, tender: TenderSimulator, wecom: WeComSimulator, smtp: SmtpServer, us: str
) -> Path:
    cred = wecom.credentials()
    doc = {
        "connections": {
            "tender": {
                "connector": "tender",
                "config": tender.tap_config(request_interval=0, antibot_backoff=0.2, page_size=40),
            },
            "wecom": {
                "connector": "wecom",
                "config": {
                    "corp_id": cred["corp_id"],
                    "corp_secret": cred["corp_secret"],
                    "base_url": wecom.base_url,
                },
            },
        },
        "alerts": {
            "channels": {
                "sales_wecom": {"kind": "wecom_app", "connection": "wecom", "agent_id": 1000002},
                "mail": {
                    "kind": "email",
                    "host": "127.0.0.1",
                    "port": smtp.port,
                    "sender": "tongbu@example.com",
                },
            }
        },
        "tenders": {"connection": "tender", "us": {"name": us}},
    }
    path = tmp_path / "tongbu.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def expected(
    truth: list[dict[str, Any]],
    keywords: tuple[str, ...],
    regions: tuple[str, ...] = (),
    kinds: tuple[str, ...] = (),
) -> set[int]:
    """What a subscription must match, computed here from the truth (not by the matcher)."""
    out = set()
    for n in truth:
        text = f"{n['title']}\n{n['summary']}\n{n['content']}"
        kind_ok = not kinds or any(k in n["notice_type"] for k in kinds)
        if any(k in text for k in keywords) and (not regions or n["region"] in regions) and kind_ok:
            out.add(n["id"])
    return out


def test_poll_stores_matches_folds_and_alerts_once(
    tmp_path: Path, tender: TenderSimulator, sim: WeComSimulator, smtp_server: SmtpServer
) -> None:
    engine = get_engine()
    truth = tender.truth("notices")
    winners = [lot["supplier"] for n in truth for lot in n["lots"]]
    us = winners[0]
    # CRM accounts: some of the company buyers, spelled differently (spaces, full-width brackets).
    company_buyers = sorted(
        {(n["buyer"], n["buyer_credit_code"]) for n in truth if n["buyer"].endswith("公司")}
    )
    known = company_buyers[: len(company_buyers) // 2]
    rows = [
        {"source_id": f"A{i}", "name": name.replace("有限", " 有限 "), "credit_code": None}
        for i, (name, _) in enumerate(known)
    ]
    with engine.begin() as conn:
        HubStore(engine).upsert(conn, "accounts", rows, source_system="kingdee")
    users = [u["userid"] for u in sim.users][:2]
    history = TenderHistory(engine)
    history.subscribe(
        "software",
        "zhangsan",
        SubscriptionSpec.from_dict({"keywords": ["软件", "信息化"]}),
        {"sales_wecom": [users[0]]},
    )
    history.subscribe(
        "gd-awards", "li@example.com",
        SubscriptionSpec.from_dict({"keywords": ["采购"], "regions": ["广东"], "types": ["result"]}),
        {"mail": ["li@example.com"]},
    )  # fmt: skip

    project = load_project(write_project(tmp_path, tender, sim, smtp_server, us))
    feed = TenderFeed(project, engine, batch_size=40)
    result = feed.poll()
    assert result.read == len(truth) and result.new == len(truth)
    assert result.antibot > 0, "the anti-bot page never showed: raise the request count"
    assert result.listed == result.parsed == len(truth)
    assert history.count() == len(truth)

    soft = expected(truth, ("软件", "信息化"))
    gd = expected(truth, ("采购",), ("广东",), ("中标", "成交"))
    assert soft and gd
    assert result.matched == len(soft) + len(gd)
    sent = feed.send_alerts()
    assert (sent.sent, sent.failed) == (len(soft) + len(gd), 0), sent.errors
    assert smtp_server.wait(len(gd))
    assert len(smtp_server.messages) == len(gd)
    assert {m["To"] for m in smtp_server.messages} == {"li@example.com"}
    wecom_msgs = [m for m in sim.desk.messages if m["touser"] == [users[0]]]
    assert len(wecom_msgs) == len(soft)

    # A restart, new notices published: only they are alerted; nothing is sent twice.
    published = tender.publish(30)["ids"]
    again = TenderFeed(load_project(tmp_path / "tongbu.yaml"), engine, batch_size=40)
    second = again.poll()
    assert second.new == len(published)
    sent2 = again.send_alerts()
    truth2 = [n for n in tender.truth("notices") if n["id"] in set(published)]
    new_expected = len(expected(truth2, ("软件", "信息化"))) + len(
        expected(truth2, ("采购",), ("广东",), ("中标", "成交"))
    )
    assert sent2.sent == new_expected and sent2.failed == 0
    assert again.send_alerts().pending == 0
    assert len(smtp_server.messages) + len([m for m in sim.desk.messages if m["touser"] == [users[0]]]) == (
        len(soft) + len(gd) + new_expected
    )

    # CRM: one record per project; a known buyer gets an opportunity, the others a lead.
    all_truth = tender.truth("notices")
    projects: dict[str, list[dict[str, Any]]] = {}
    for n in all_truth:
        projects.setdefault(n["project_no"], []).append(n)
    known_keys = {company_key(name) for name, _ in known}
    opp_t, lead_t = hub_table("opportunities"), hub_table("leads")
    with engine.connect() as c:
        opps = {r.source_id: r for r in c.execute(sa.select(opp_t).where(opp_t.c.source_system == "tender"))}
        leads = {
            r.source_id: r for r in c.execute(sa.select(lead_t).where(lead_t.c.source_system == "tender"))
        }
    for no, notices in projects.items():
        buyer_known = company_key(notices[0]["buyer"]) in known_keys
        assert (no in opps) == buyer_known, no
        assert (no in leads) == (not buyer_known), no
        record = opps.get(no) or leads.get(no)
        award = [n for n in notices if n["notice_type"] in ("中标公告", "成交公告")]
        ended = [n for n in notices if n["notice_type"] == "终止公告"]
        names = [lot["supplier"] for a in award for lot in a["lots"]]
        stage = record.stage if no in opps else record.status
        if ended:
            assert stage in ("cancelled", "closed")
        elif award:
            assert stage == ("won" if us in names else "lost"), no
            assert sorted(record.extra["competitors"]) == sorted({x for x in names if x != us})
        else:
            assert stage in ("tendering", "new")
        assert [x["id"] for x in record.extra["notices"]] == [n["id"] for n in notices]
    assert any(r.stage == "won" for r in opps.values()) or any(r.status == "won" for r in leads.values())


def test_unknown_subscription_settings_and_regions_are_one_line_errors() -> None:
    from connectors.tender.history import SearchError

    with pytest.raises(SearchError, match="did you mean 'keywords'"):
        SubscriptionSpec.from_dict({"keyword": ["软件"]})
    with pytest.raises(SearchError, match="unknown region '广栋'"):
        SubscriptionSpec.from_dict({"regions": ["广栋"]})
