"""A CRM edit landing between the engine's read of a hub record and its write is merged, not lost."""

from __future__ import annotations

import pytest
from memory_spoke import MemorySpoke
from test_engine import account_pair, uscc

from pipelines.sync.engine import SyncEngine
from tongbu.hub.api import CrmApi, StaleRecordError


@pytest.fixture
def linked(hub_engine):
    erp = MemorySpoke("erp")
    sync = SyncEngine(hub_engine, account_pair(), [erp])
    api = CrmApi(hub_engine)
    hub_id = api.create("accounts", {"name": "甲公司", "credit_code": uscc(1), "phone": "1"}, author="a")
    sync.run()
    (ext,) = erp.live()
    return hub_engine, api, erp, sync, hub_id, ext


def _edit_during_merge(monkeypatch, sync: SyncEngine, edit) -> list[int]:
    """Run ``edit`` once, right after the engine has read the hub record (before it writes)."""
    calls: list[int] = []
    original = sync._load

    def load(hub_id, reads, report):
        out = original(hub_id, reads, report)
        calls.append(hub_id)
        if len(calls) == 1:
            edit()
        return out

    monkeypatch.setattr(sync, "_load", load)
    return calls


def test_a_same_field_crm_edit_racing_a_sync_becomes_a_conflict(linked, monkeypatch) -> None:
    hub_engine, api, erp, sync, hub_id, ext = linked
    erp.user_edit(ext, phone="erp-phone")
    calls = _edit_during_merge(
        monkeypatch, sync, lambda: api.update("accounts", hub_id, {"phone": "crm-phone"}, author="alice")
    )
    report = sync.run()
    assert len(calls) == 2  # merged again with the CRM's edit
    assert report.conflicts_opened == 1
    (conflict,) = sync.conflicts()
    assert (conflict["hub_value"], conflict["system_value"], conflict["hub_author"]) == (
        "crm-phone",
        "erp-phone",
        "alice",
    )
    assert api.get("accounts", hub_id)["phone"] == "crm-phone"  # not overwritten


def test_an_other_field_crm_edit_racing_a_sync_keeps_both(linked, monkeypatch) -> None:
    hub_engine, api, erp, sync, hub_id, ext = linked
    erp.user_edit(ext, phone="erp-phone")
    _edit_during_merge(
        monkeypatch, sync, lambda: api.update("accounts", hub_id, {"address": "新地址"}, author="alice")
    )
    sync.run()
    sync.run()
    row = api.get("accounts", hub_id)
    assert (row["phone"], row["address"]) == ("erp-phone", "新地址")
    assert (erp.live()[ext]["phone"], erp.live()[ext]["address"]) == ("erp-phone", "新地址")


def test_update_with_a_stale_version_writes_nothing(linked) -> None:
    hub_engine, api, erp, sync, hub_id, ext = linked
    version = api.etag("accounts", api.get("accounts", hub_id))
    api.update("accounts", hub_id, {"phone": "2"}, author="bob", if_match=version)
    with pytest.raises(StaleRecordError, match="changed since you read it"):
        api.update("accounts", hub_id, {"phone": "3"}, author="carol", if_match=version)
    assert api.get("accounts", hub_id)["phone"] == "2"
