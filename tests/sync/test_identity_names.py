"""Identity matching by normalised company name: one candidate links, two go to review, and a
contradicting credit code is another company whatever its name."""

from __future__ import annotations

import dataclasses

from memory_spoke import MemorySpoke
from sqlalchemy import select
from test_engine import account_pair, uscc

from pipelines.sync.engine import SyncEngine
from pipelines.sync.identity import normalise_name
from tongbu.hub.api import CrmApi
from tongbu.hub.models import RecordLink


def _pair():
    return dataclasses.replace(account_pair(), match_on=("credit_code", "name"))


def test_normal_form() -> None:
    assert normalise_name("上海 同步（科技）有限公司") == normalise_name("上海同步(科技)有限公司")
    assert normalise_name("ＡＢＣ Trading Co., Ltd.") == normalise_name("abc trading co ltd")
    assert normalise_name("华东精密机械股份有限公司") != normalise_name("华东精密机械有限公司")


def test_one_name_match_links_two_go_to_review_and_a_different_code_does_not_match(hub_engine) -> None:
    api = CrmApi(hub_engine)
    erp = MemorySpoke("erp")
    sync = SyncEngine(hub_engine, _pair(), [erp])
    lone = api.create("accounts", {"name": "上海同步（科技）有限公司", "phone": "1"}, author="a")
    api.create("accounts", {"name": "杭州双子贸易有限公司"}, author="a")
    api.create("accounts", {"name": "杭州 双子贸易有限公司"}, author="b")
    coded = api.create("accounts", {"name": "苏州某某有限公司", "credit_code": uscc(1)}, author="a")
    e1 = erp.user_create({"name": "上海 同步(科技)有限公司"})
    e2 = erp.user_create({"name": "杭州双子贸易有限公司"})
    e3 = erp.user_create({"name": "苏州某某有限公司", "credit_code": uscc(2)})
    report = sync.run()
    t = RecordLink.__table__
    with hub_engine.connect() as conn:
        links = dict(conn.execute(select(t.c.external_id, t.c.hub_id).where(t.c.system == "erp")).all())
    assert links[e1] == lone
    assert e2 not in links and report.identity_reviews == 1
    (review,) = [c for c in sync.conflicts() if c["kind"] == "identity"]
    assert (review["external_id"], review["field"], len(review["hub_value"])) == (e2, "name", 2)
    assert links[e3] != coded  # another credit code: another company, linked to a new hub record
