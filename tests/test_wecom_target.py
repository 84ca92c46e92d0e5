"""target-wecom: CRM grade → WeCom corp tag, with the fewest mark_tag calls and none when nothing changed."""

from __future__ import annotations

import io
import json

import pytest

from connectors.wecom.hub import WeComHubWriter
from connectors.wecom.rescan import rescan_external_contacts
from connectors.wecom.simulator import WeComSimulator
from connectors.wecom.target import ContactTagWriter, TagWriteError, TargetWeCom, write_back_grades
from tests.helpers.wecom import client_for
from tongbu.db import get_engine
from tongbu.hub.store import HubStore

pytestmark = pytest.mark.wecom_sim(records=120, seed=41)  # the `sim` fixture: tests/conftest.py


def grade_tags(sim: WeComSimulator, ext: str) -> dict[str, set[str]]:
    return {
        f["userid"]: {t["tag_name"] for t in f["tags"] if t["group_name"] == "客户等级"}
        for f in sim.contact_detail(ext)["follow_user"]
    }


def other_tags(sim: WeComSimulator, ext: str) -> dict[str, set[str]]:
    return {
        f["userid"]: {t["tag_name"] for t in f["tags"] if t["group_name"] != "客户等级"}
        for f in sim.contact_detail(ext)["follow_user"]
    }


def test_sets_exactly_the_grade_tag_and_is_idempotent(sim: WeComSimulator) -> None:
    ext = next(e for e in sim.external_userids() if len(sim.contact_detail(e)["follow_user"]) > 1)
    userid = sim.contact_detail(ext)["follow_user"][0]["userid"]
    sim.edit_external_contact(
        ext,
        userid,
        add_tags=[sim.tag_id("客户等级", "C类客户"), sim.tag_id("客户来源", "展会")],
        callback=False,
    )
    keep = other_tags(sim, ext)
    writer = ContactTagWriter(client_for(sim))
    calls = writer.apply({"external_userid": ext, "tag_group": "客户等级", "tags": ["A类客户"]})
    assert calls == len(grade_tags(sim, ext))  # one mark_tag per relation that differed
    assert all(tags == {"A类客户"} for tags in grade_tags(sim, ext).values())
    assert other_tags(sim, ext) == keep  # tags of other groups untouched
    before = sim.calls["externalcontact/mark_tag"]
    assert writer.apply({"external_userid": ext, "tag_group": "客户等级", "tag": "A类客户"}) == 0
    assert sim.calls["externalcontact/mark_tag"] == before
    writer.apply({"external_userid": ext, "tag_group": "客户等级", "tags": []})  # grade cleared in the CRM
    assert all(not tags for tags in grade_tags(sim, ext).values())
    assert sim.callback_log == []  # API writes never echo back as callbacks


def test_unknown_tags_and_vanished_contacts(sim: WeComSimulator) -> None:
    writer = ContactTagWriter(client_for(sim))
    ext = next(sim.external_userids())
    with pytest.raises(TagWriteError, match="does not exist"):
        writer.apply({"external_userid": ext, "tag_group": "客户等级", "tags": ["S类客户"]})
    creating = ContactTagWriter(client_for(sim), create_missing_tags=True)
    creating.apply({"external_userid": ext, "tag_group": "客户等级", "tags": ["S类客户"]})
    assert creating.stats.tags_created == 1 and sim.tag_id("客户等级", "S类客户")
    for f in sim.contact_detail(ext)["follow_user"]:
        sim.del_external_contact(ext, f["userid"], callback=False)
    assert writer.apply({"external_userid": ext, "tag_group": "客户等级", "tags": ["A类客户"]}) == 0
    assert writer.stats.contacts_gone == 1


def test_write_back_of_crm_grades(sim: WeComSimulator) -> None:
    engine = get_engine()
    client = client_for(sim)
    rescan_external_contacts(client, WeComHubWriter(engine))
    hub = HubStore(engine)
    with engine.connect() as conn:
        companies = [
            r["account_ref"]
            for r in (hub.get(conn, "contacts", "wecom", e) for e in sim.external_userids())
            if r["account_ref"]
        ]
    graded = {name: grade for name, grade in zip(sorted(set(companies))[:6], "ABCDAB", strict=False)}
    with engine.begin() as conn:  # the ERP's customer master knows these companies' grades
        hub.upsert(
            conn,
            "accounts",
            [{"source_id": f"K{i}", "name": n, "grade": g} for i, (n, g) in enumerate(graded.items())],
            source_system="kingdee",
        )
    first = write_back_grades(engine, client)
    assert first.records == sum(1 for c in companies if c in graded) and first.failed == 0
    assert first.mark_tag_calls >= 1
    second = write_back_grades(engine, client)
    assert second.mark_tag_calls == 0 and second.unchanged == second.relations_checked


def test_runs_as_a_singer_target(sim: WeComSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    ext = next(sim.external_userids())
    lines = [
        {
            "type": "SCHEMA",
            "stream": "contact_tags",
            "key_properties": ["external_userid"],
            "schema": {
                "type": "object",
                "properties": {
                    "external_userid": {"type": "string"},
                    "tag_group": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        {
            "type": "RECORD",
            "stream": "contact_tags",
            "record": {"external_userid": ext, "tag_group": "客户等级", "tags": ["B类客户"]},
        },
    ]
    config = {
        "corp_id": sim.corp_id,
        "corp_secret": sim.credentials()["corp_secret"],
        "base_url": sim.base_url,
    }
    target = TargetWeCom(config=config, parse_env_config=False)
    target.listen(io.StringIO("\n".join(json.dumps(m, ensure_ascii=False) for m in lines) + "\n"))
    assert all(tags == {"B类客户"} for tags in grade_tags(sim, ext).values())
