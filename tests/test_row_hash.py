"""``row_hash`` is canonical: identical rows hash the same on SQLite and PostgreSQL (issue 17 item 10).

A hub moved between databases (or written once through each) must not see every row as changed, and
equivalent values (``Decimal('10.50')`` / ``Decimal('10.5')``, one instant in two time zones, JSON
with its keys in another order, a mapping listing its fields in another order) must hash alike.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select

from tongbu.db import get_engine
from tongbu.hub.store import HubStore, hub_table

CST = dt.timezone(dt.timedelta(hours=8))


def _rows() -> dict[str, list[dict]]:
    return {
        "accounts": [
            {
                "source_id": "A1",
                "name": "甲公司\t带制表符\\和反斜杠\n换行",
                "credit_code": "91350100M000100Y43",
                "source_modified_at": dt.datetime(2024, 5, 1, 10, 3, 4, tzinfo=CST),
                "extra": {"b": 1, "a": [1, "二"]},
            },
            {"source_id": "A2", "name": None, "source_modified_at": dt.datetime(2024, 5, 1, 2, 3, 4, 500)},
        ],
        "leads": [{"source_id": "L1", "name": "线索", "budget": Decimal("1200.50")}],
        "devices": [
            {
                "source_id": "D1",
                "serial_no": "SN1",
                "installed_at": dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
                "telemetry": {"temp": 21.5, "on": True, "tags": ["x"]},
            }
        ],
        "sales_orders": [
            {
                "source_id": "O1",
                "order_no": "SO1",
                "amount": Decimal("10.50"),
                "order_date": dt.datetime(2024, 5, 1, 2, 3, 4, tzinfo=dt.UTC),
                "__lines__": [
                    {"source_id": "L1", "qty": Decimal("2"), "line_no": 1, "product_code": "P1"},
                    {"source_id": "L2", "qty": Decimal("1.5"), "line_no": 2, "product_code": "P2"},
                ],
            }
        ],
    }


def _hashes(engine) -> dict[tuple[str, str], str]:
    hub = HubStore(engine)
    out = {}
    with engine.begin() as conn:
        for obj, rows in _rows().items():
            hub.upsert(conn, obj, rows, source_system="k")
        for obj in (*_rows(), "sales_order_lines"):
            t = hub_table(obj)
            for sid, h in conn.execute(select(t.c.source_id, t.c.row_hash)):
                out[(obj, sid)] = h
    return out


@pytest.mark.postgres
def test_identical_rows_hash_the_same_on_sqlite_and_postgresql(pg_url: str) -> None:
    on_sqlite = _hashes(get_engine())
    on_pg = _hashes(get_engine(pg_url))
    assert len(on_sqlite) == 7
    assert on_sqlite == on_pg


def test_equivalent_values_hash_alike(hub_engine) -> None:
    hub = HubStore(hub_engine)
    first = {
        "source_id": "1",
        "name": "乙",
        "budget": Decimal("10.50"),
        "source_modified_at": dt.datetime(2024, 5, 1, 10, 0, tzinfo=CST),
        "extra": {"a": 1, "b": {"y": 2, "x": 1}},
    }
    # The same content: fields in another order, 10.5 for 10.50, the instant in UTC, JSON keys reordered.
    same = {
        "extra": {"b": {"x": 1, "y": 2}, "a": 1},
        "source_modified_at": dt.datetime(2024, 5, 1, 2, 0, tzinfo=dt.UTC),
        "budget": Decimal("10.5"),
        "name": "乙",
        "source_id": "1",
    }
    with hub_engine.begin() as conn:
        assert hub.upsert(conn, "leads", [first], source_system="k").written == 1
    with hub_engine.begin() as conn:
        assert hub.upsert(conn, "leads", [same], source_system="k").written == 0
    with hub_engine.begin() as conn:
        assert (
            hub.upsert(conn, "leads", [{**same, "budget": Decimal("10.51")}], source_system="k").written == 1
        )


def test_canonical_hasher_equals_canonical_hash() -> None:
    import datetime as dt
    from decimal import Decimal

    from tongbu.canon import canonical_hash, canonical_hasher

    fields = ("name", "credit_limit", "address", "a_date", "lines", "flag", "n")
    rows = [
        ("甲", Decimal("10.00"), None, dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC), [{"qty": 2}], True, 3),
        (None, None, None, None, None, None, None),
        ("", 1.5, "x", dt.date(2026, 1, 2), [], False, 0),
    ]
    digest = canonical_hasher(fields)
    for row in rows:
        assert digest(row) == canonical_hash(dict(zip(fields, row, strict=True)))
