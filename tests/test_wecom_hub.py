"""WeComHubWriter: what the mappings reject is quarantined with the reason, never dropped."""

from __future__ import annotations

from connectors.wecom.hub import RELATIONS_STREAM, WeComHubWriter

CONTACT = {
    "external_userid": "wmHUB0001",
    "name": "张三",
    "type": 1,
    "follow_user": [
        {"userid": "zhangwei", "createtime": "not-a-time", "add_way": 1, "remark": "展会"},
        {"userid": "lina", "createtime": 1700000000, "add_way": 2},
    ],
}


def test_an_activity_that_does_not_map_is_quarantined_and_the_rest_lands(hub_engine) -> None:
    writer = WeComHubWriter(hub_engine)
    mapped = writer.map([CONTACT], run_id=None)
    with hub_engine.begin() as conn:
        result = writer.write(conn, mapped)
    assert result.contacts.written == 1 and result.activities.written == 1
    assert result.quarantined == 1
    with hub_engine.connect() as conn:
        assert writer.hub.get(conn, "activities", "wecom", "wmHUB0001:lina") is not None
        assert writer.hub.get(conn, "activities", "wecom", "wmHUB0001:zhangwei") is None
    rows = writer.quarantine.list(writer.pipeline)
    assert len(rows) == 1
    (row,) = rows
    assert row["stream"] == RELATIONS_STREAM and row["stage"] == "mapping"
    assert row["source_id"] == "wmHUB0001:zhangwei"
    assert "occurred_at" in row["reason"] and "not-a-time" in row["reason"]
    assert row["payload"]["userid"] == "zhangwei" and row["payload"]["external_userid"] == "wmHUB0001"
    # Re-reading the same contact (the next rescan) keeps one open entry, not two.
    with hub_engine.begin() as conn:
        writer.write(conn, writer.map([CONTACT]))
    with hub_engine.connect() as conn:
        assert writer.quarantine.count(conn, writer.pipeline) == 1
