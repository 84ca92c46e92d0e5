"""The hub store and state store on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal

import pytest

from tongbu.hub.store import HubError, HubStore
from tongbu.state.store import PipelineLock, PipelineLocked, Quarantine, StateStore


def _order(sid: str, lines: list[tuple[str, int]], amount: str = "10.50") -> dict:
    return {
        "source_id": sid,
        "order_no": f"SO{sid}",
        "amount": Decimal(amount),
        "order_date": dt.datetime(2024, 5, 1, 2, 3, 4, tzinfo=dt.UTC),
        "__lines__": [{"source_id": lid, "qty": Decimal(q), "product_code": "P1"} for lid, q in lines],
    }


def test_upsert_is_idempotent_and_skips_unchanged_rows(hub_engine) -> None:
    hub = HubStore(hub_engine)
    rows = [{"source_id": str(i), "name": f"客户{i}", "credit_code": "91350100M000100Y43"} for i in range(50)]
    with hub_engine.begin() as conn:
        first = hub.upsert(conn, "accounts", rows, source_system="kingdee")
    with hub_engine.begin() as conn:
        again = hub.upsert(conn, "accounts", rows, source_system="kingdee")
    rows[3]["name"] = "改名客户"
    with hub_engine.begin() as conn:
        changed = hub.upsert(conn, "accounts", rows, source_system="kingdee")
        assert hub.count(conn, "accounts") == 50
        assert hub.get(conn, "accounts", "kingdee", "3")["name"] == "改名客户"
    assert (first.written, again.written, again.unchanged, changed.written) == (50, 0, 50, 1)


def test_rows_that_carry_only_their_identity(hub_engine) -> None:
    # A mapping may give nothing but source_id (singer-sdk's target tests do): this raised IndexError.
    hub = HubStore(hub_engine)
    with hub_engine.begin() as conn:
        first = hub.upsert(conn, "accounts", [{"source_id": "1"}, {"source_id": "2"}], source_system="x")
    with hub_engine.begin() as conn:
        again = hub.upsert(conn, "accounts", [{"source_id": "1"}, {"source_id": "2"}], source_system="x")
        assert hub.count(conn, "accounts") == 2
    assert (first.written, again.written, again.unchanged) == (2, 0, 2)


def test_same_source_id_from_two_systems_are_two_rows(hub_engine) -> None:
    hub = HubStore(hub_engine)
    with hub_engine.begin() as conn:
        hub.upsert(conn, "accounts", [{"source_id": "1", "name": "A"}], source_system="kingdee")
        hub.upsert(conn, "accounts", [{"source_id": "1", "name": "A"}], source_system="wecom")
        assert hub.count(conn, "accounts") == 2


def test_order_lines_follow_their_order(hub_engine) -> None:
    hub = HubStore(hub_engine)
    with hub_engine.begin() as conn:
        res = hub.upsert(conn, "sales_orders", [_order("1", [("11", 1), ("12", 2)])], source_system="kingdee")
    assert res.lines_written == 2
    with hub_engine.begin() as conn:
        res = hub.upsert(conn, "sales_orders", [_order("1", [("11", 5)])], source_system="kingdee")
        order = hub.get(conn, "sales_orders", "kingdee", "1")
        line = hub.get(conn, "sales_order_lines", "kingdee", "11")
        assert hub.get(conn, "sales_order_lines", "kingdee", "12") is None
    # A changed line makes the order itself a changed row; the vanished line is removed.
    assert (res.written, res.lines_written, res.lines_deleted) == (1, 1, 1)
    assert line["order_id"] == order["id"] and line["qty"] == Decimal("5")


def test_unknown_object_or_column_is_a_clear_error(hub_engine) -> None:
    hub = HubStore(hub_engine)
    with hub_engine.begin() as conn, pytest.raises(HubError, match="no column"):
        hub.upsert(conn, "accounts", [{"source_id": "1", "nmae": "x"}], source_system="k")
    with hub_engine.begin() as conn, pytest.raises(HubError, match="unknown CRM object 'acounts'"):
        hub.upsert(conn, "acounts", [{"source_id": "1"}], source_system="k")


def test_soft_delete(hub_engine) -> None:
    hub = HubStore(hub_engine)
    with hub_engine.begin() as conn:
        hub.upsert(conn, "contacts", [{"source_id": s, "name": s} for s in "abc"], source_system="wecom")
        assert hub.mark_deleted(conn, "contacts", ["b"], source_system="wecom") == 1
        assert hub.count(conn, "contacts") == 2
        assert hub.count(conn, "contacts", include_deleted=True) == 3


def test_cursor_commits_with_the_rows_or_not_at_all(hub_engine) -> None:
    hub, state = HubStore(hub_engine), StateStore(hub_engine)
    with pytest.raises(RuntimeError), hub_engine.begin() as conn:
        hub.upsert(conn, "accounts", [{"source_id": "1", "name": "A"}], source_system="k")
        state.put(conn, "k", "customers", {"replication_key_value": "2024-01-01"})
        raise RuntimeError("crash before commit")
    with hub_engine.connect() as conn:
        assert state.get(conn, "k", "customers") is None
        assert hub.count(conn, "accounts") == 0
    with hub_engine.begin() as conn:
        state.put(conn, "k", "customers", {"v": 1})
    with hub_engine.begin() as conn:
        state.put(conn, "k", "customers", {"v": 2})
    assert [r["cursor"] for r in state.all()] == [{"v": 2}]
    assert state.reset("k") == 1 and state.all() == []


def test_lock_excludes_a_second_run_and_expires(hub_engine) -> None:
    a = PipelineLock(hub_engine, "p1")
    b = PipelineLock(hub_engine, "p1")
    a.acquire()
    with pytest.raises(PipelineLocked, match="already running"):
        b.acquire()
    a.release()
    b.acquire()
    b.release()
    dead = PipelineLock(hub_engine, "p2", lease_s=-1)  # a holder that died: its lease is already over
    dead.acquire()
    PipelineLock(hub_engine, "p2").acquire()
    with hub_engine.begin() as conn, pytest.raises(PipelineLocked, match="lost the lock"):
        dead.renew(conn)


def test_lock_under_contention_admits_exactly_one(hub_engine) -> None:
    winners: list[int] = []
    barrier = threading.Barrier(6)

    def attempt(i: int) -> None:
        lock = PipelineLock(hub_engine, "contended")
        barrier.wait()
        try:
            lock.acquire()
            winners.append(i)
        except PipelineLocked:
            return
        done.wait()
        lock.release()

    done = threading.Event()
    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while sum(t.is_alive() for t in threads) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(winners) == 1
    done.set()
    for t in threads:
        t.join()


def test_quarantine_roundtrip(hub_engine) -> None:
    q = Quarantine(hub_engine)
    with hub_engine.begin() as conn:
        q.add_many(
            conn,
            [
                {
                    "pipeline": "p",
                    "connection": "k",
                    "stream": "s",
                    "source_id": "9",
                    "stage": "mapping",
                    "reason": "field 'credit_code': invalid check digit",
                    "payload": {"FNumber": "9"},
                }
            ],
        )
        assert q.count(conn, "p") == 1
    [row] = q.list("p")
    assert row["payload"] == {"FNumber": "9"} and "check digit" in row["reason"]


def test_record_links_keep_external_ids_and_last_snapshot(hub_engine) -> None:
    from sqlalchemy import select

    from tongbu.hub.models import RecordLink

    hub = HubStore(hub_engine)
    with hub_engine.begin() as conn:
        hub.upsert(conn, "accounts", [{"source_id": "A1", "name": "甲"}], source_system="crm")
        hub_id = hub.get(conn, "accounts", "crm", "A1")["id"]
        hub.link(conn, "accounts", hub_id, "kingdee", "100234", {"FName": "甲"})
        hub.link(conn, "accounts", hub_id, "kingdee", "100234", {"FName": "甲公司"})
        hub.link(conn, "accounts", hub_id, "wecom", "wmABC", None)
        t = RecordLink.__table__
        links = conn.execute(
            select(t.c.system, t.c.external_id, t.c.snapshot, t.c.version)
            .where(t.c.hub_id == hub_id)
            .order_by(t.c.system)
        ).all()
    assert [(s, e, v) for s, e, _, v in links] == [("kingdee", "100234", 2), ("wecom", "wmABC", 1)]
    assert links[0].snapshot == {"FName": "甲公司"}


def test_awkward_text_and_nulls_round_trip_exactly(hub_engine) -> None:
    # The PostgreSQL path streams rows as COPY text: separators, escapes and NULL markers in values
    # must come back byte for byte, and a NULL must stay distinct from the text "\N".
    hub = HubStore(hub_engine)
    names = [
        "tab\there",
        "new\nline",
        "cr\rlf\r\n",
        "back\\slash",
        "\\N",
        "",
        None,
        "\\.",
        "引号'\"",
        "x\x01y",
    ]
    rows = [
        {"source_id": f"s\t{i}\\", "name": n, "phone": None if i % 2 else "1"} for i, n in enumerate(names)
    ]
    with hub_engine.begin() as conn:
        assert hub.upsert(conn, "accounts", rows, source_system="k\\t").written == len(rows)
    with hub_engine.begin() as conn:
        assert hub.upsert(conn, "accounts", rows, source_system="k\\t").written == 0
        for i, n in enumerate(names):
            got = hub.get(conn, "accounts", "k\\t", f"s\t{i}\\")
            assert (got["name"], got["phone"]) == (n, None if i % 2 else "1")


def test_a_row_repeated_in_one_batch_lands_once_with_its_last_content(hub_engine) -> None:
    hub = HubStore(hub_engine)
    rows = [
        {"source_id": "1", "name": "old"},
        {"source_id": "2", "name": "b"},
        {"source_id": "1", "name": "new"},
    ]
    with hub_engine.begin() as conn:
        hub.upsert(conn, "accounts", rows, source_system="k")
        assert hub.count(conn, "accounts") == 2 and hub.get(conn, "accounts", "k", "1")["name"] == "new"
    with hub_engine.begin() as conn:
        hub.upsert(conn, "accounts", [{"source_id": "3", "name": "c"}, *rows], source_system="k")
        assert hub.count(conn, "accounts") == 3 and hub.get(conn, "accounts", "k", "1")["name"] == "new"


def test_new_and_existing_rows_mixed_in_one_transaction(hub_engine) -> None:
    # On PostgreSQL a batch of only new rows is COPY-ed straight in; the first batch that meets an
    # existing row falls back to the staged upsert without losing what the transaction already wrote.
    hub = HubStore(hub_engine)
    with hub_engine.begin() as conn:
        first = hub.upsert(
            conn, "accounts", [{"source_id": str(i), "name": "a"} for i in range(10)], source_system="k"
        )
        mixed = hub.upsert(
            conn,
            "accounts",
            [{"source_id": str(i), "name": "a" if i < 5 else "b"} for i in range(20)],
            source_system="k",
        )
        assert hub.count(conn, "accounts") == 20
    assert (first.written, mixed.written, mixed.unchanged) == (10, 15, 5)
    with hub_engine.connect() as conn:
        assert hub.get(conn, "accounts", "k", "7")["name"] == "b"
        assert hub.get(conn, "accounts", "k", "3")["name"] == "a"


def test_timestamps_are_stored_as_the_same_instant_whatever_the_session_zone(hub_engine) -> None:
    from sqlalchemy import text

    hub = HubStore(hub_engine)
    when = dt.datetime(2024, 5, 1, 10, 3, 4, 123456, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    with hub_engine.begin() as conn:
        if hub_engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL TIME ZONE 'America/New_York'"))
        hub.upsert(conn, "accounts", [{"source_id": "1", "source_modified_at": when}], source_system="k")
        hub.upsert(conn, "accounts", [{"source_id": "1", "source_modified_at": when}], source_system="k")
        hub.upsert(conn, "accounts", [{"source_id": "2", "source_modified_at": when}], source_system="k")
    with hub_engine.connect() as conn:
        for sid in ("1", "2"):
            got = hub.get(conn, "accounts", "k", sid)["source_modified_at"]
            got = got if got.tzinfo else got.replace(tzinfo=dt.UTC)
            assert got == when


def test_lines_moving_between_orders_and_vanishing(hub_engine) -> None:
    hub = HubStore(hub_engine)
    with hub_engine.begin() as conn:
        hub.upsert(
            conn,
            "sales_orders",
            [_order("1", [("11", 1), ("12", 2)]), _order("2", [("21", 1)])],
            source_system="kingdee",
        )
    with hub_engine.begin() as conn:
        # Line 12 moves to order 2, line 21 vanishes, order 1 keeps 11; an order without lines key
        # leaves its lines alone.
        res = hub.upsert(
            conn,
            "sales_orders",
            [_order("1", [("11", 1)]), _order("2", [("12", 2)]), {"source_id": "3", "order_no": "SO3"}],
            source_system="kingdee",
        )
        o2 = hub.get(conn, "sales_orders", "kingdee", "2")
        moved = hub.get(conn, "sales_order_lines", "kingdee", "12")
        assert hub.get(conn, "sales_order_lines", "kingdee", "21") is None
        assert hub.count(conn, "sales_order_lines") == 2
    assert (res.lines_deleted, moved["order_id"], moved["order_source_id"]) == (1, o2["id"], "2")


def test_soft_deleted_row_comes_back_when_it_changes(hub_engine) -> None:
    hub = HubStore(hub_engine)
    with hub_engine.begin() as conn:
        hub.upsert(conn, "contacts", [{"source_id": "a", "name": "A"}], source_system="w")
        hub.mark_deleted(conn, "contacts", ["a"], source_system="w")
        hub.upsert(conn, "contacts", [{"source_id": "a", "name": "A2"}], source_system="w")
        assert hub.get(conn, "contacts", "w", "a")["deleted_at"] is None


def test_a_value_the_column_cannot_hold_is_one_clear_error(hub_engine) -> None:
    hub = HubStore(hub_engine)
    with (
        hub_engine.begin() as conn,
        pytest.raises(HubError, match=r"leads\.budget of source id '1': cannot store 'abc'"),
    ):
        hub.upsert(conn, "leads", [{"source_id": "1", "budget": "abc"}], source_system="k")


def test_other_databases_are_refused_with_one_line() -> None:
    from types import SimpleNamespace

    fake = SimpleNamespace(dialect=SimpleNamespace(name="mysql"))
    with pytest.raises(HubError, match="tongbu runs on SQLite or PostgreSQL, not mysql") as err:
        HubStore(fake)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)
