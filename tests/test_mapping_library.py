"""The shipped Kingdee -> CRM mappings: valid against tap-kingdee's streams and the hub, and exact on
the simulator's data, bad rows included."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from mappings.engine import compile_mapping
from mappings.spec import MappingSpec, load_mappings, validate_for_hub

LIBRARY = Path(__file__).resolve().parents[1] / "mappings/library/kingdee_to_crm.yaml"
FORMS = {
    "customers": ("BD_Customer", "FCUSTID"),
    "sales_orders": ("SAL_SaleOrder", "FID"),
    "receivables": ("AR_receivable", "FID"),
}

# The simulator's injected defects and the hub field each one must be quarantined under.
DEFECT_FIELDS = {
    "FName: missing customer name": "name",
    "FSOCIALCRECODE: invalid check character": "credit_code",
    "FFoundDate: unparsable date": "extra.founded_on",
    "FDate: unparsable date": "order_date",
    "FBillAllAmount: not a number": "amount",
    "FSaleOrderEntry_FTaxPrice: not a number (line 1)": "lines[0].unit_price",
    "FALLAMOUNTFOR: not a number": "amount",
    "FDATE: unparsable date": "bill_date",
    "FENDDATE_H: unparsable date": "due_date",
}


def specs() -> list[MappingSpec]:
    return load_mappings(LIBRARY)


def tap_streams() -> dict[str, Any]:
    try:
        from connectors.kingdee.tap import TapKingdee
    except ImportError as exc:  # pragma: no cover - the tap ships with the package
        pytest.skip(
            f"connectors/kingdee/tap.py is not importable ({exc}); cannot check the Kingdee stream schemas"
        )
    tap = TapKingdee(
        config={"base_url": "http://127.0.0.1:9", "acct_id": "a", "username": "u", "password": "p"},
        parse_env_config=False,
        validate_config=False,
    )
    return tap.streams


def test_library_has_the_three_kingdee_mappings() -> None:
    assert [(s.source.stream, s.target.object) for s in specs()] == [
        ("customers", "accounts"),
        ("sales_orders", "sales_orders"),
        ("receivables", "receivables"),
    ]
    orders = specs()[1]
    assert orders.lines is not None and orders.lines.target == "sales_order_lines"


def test_library_validates_against_tap_kingdee_and_the_hub() -> None:
    streams = tap_streams()
    for spec in specs():
        validate_for_hub(spec, streams[spec.source.stream].schema)  # raises with every problem if any


def test_every_tap_property_the_library_reads_exists() -> None:
    streams = tap_streams()
    for spec in specs():
        mapping = compile_mapping(spec)
        props = streams[spec.source.stream].schema["properties"]
        assert set(mapping.source_fields) <= set(props), spec.name
        if mapping.lines is not None:
            line_props = props["lines"]["items"]["properties"]
            assert set(mapping.lines.source_fields) <= set(line_props)


@pytest.fixture(scope="module")
def simulator_records() -> Iterator[tuple[Any, dict[str, list[dict[str, Any]]]]]:
    pytest.importorskip("connectors.kingdee.tap")
    from connectors.kingdee.simulator import KingdeeSimulator
    from connectors.kingdee.tap import TapKingdee

    sim = KingdeeSimulator(records=240, faults="malformed=0.1", seed=11)
    sim.start()
    try:
        tap = TapKingdee(config=sim.tap_config(lookback_seconds=0), parse_env_config=False)
        records = {name: list(tap.streams[name].get_records(None)) for name in FORMS}
        truth = {name: sim.truth(form) for name, (form, _pk) in FORMS.items()}
        yield truth, records
    finally:
        sim.close()


def test_simulator_data_maps_and_every_bad_row_is_caught_on_its_field(
    simulator_records: tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]],
) -> None:
    truth, records = simulator_records
    for spec in specs():
        stream = spec.source.stream
        _form, pk = FORMS[stream]
        defects = {r[pk]: r["_malformed"] for r in truth[stream] if r["_malformed"]}
        assert defects, f"the simulator injected no defects into {stream}"
        rows, failures = compile_mapping(spec).apply_many(records[stream])
        assert len(rows) + len(failures) == len(truth[stream])
        caught = {f.record[pk]: f.error.field for f in failures}
        assert caught == {rid: DEFECT_FIELDS[defect] for rid, defect in defects.items()}, stream
        assert {r["source_id"] for r in rows} == {str(r[pk]) for r in truth[stream] if not r["_malformed"]}


def test_simulator_values_land_as_hub_types(
    simulator_records: tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]],
) -> None:
    _truth, records = simulator_records
    customers, orders, receivables = (compile_mapping(s) for s in specs())
    account = next(r for r in customers.apply_many(records["customers"])[0])
    assert account["source_modified_at"].tzinfo is dt.UTC
    assert account["status"] in ("active", "disabled") and account["currency"] in ("CNY", "USD")
    assert account["region"] in ("华北", "华东", "华南", "华中", "西南", "西北", "东北")
    assert account["city"].endswith("市") and account["grade"] in ("A", "B", "C")
    assert isinstance(account["extra"]["registered_capital_cny"], float | int)
    order = orders.apply_many(records["sales_orders"])[0][0]
    assert isinstance(order["amount"], Decimal) and order["__lines__"]
    line = order["__lines__"][0]
    assert line["order_source_id"] == order["source_id"] and isinstance(line["qty"], Decimal)
    assert line["tax_rate"] < 1  # 13 (%) became 0.13
    due = receivables.apply_many(records["receivables"])[0][0]
    assert due["bill_date"] <= due["due_date"] and due["status"] in ("open", "partly_paid", "paid")


def test_mapped_rows_upsert_into_the_hub(
    simulator_records: tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]],
) -> None:
    """What the library produces is what the hub store accepts (types, extra JSON, nested lines)."""
    from tongbu.db import get_engine
    from tongbu.hub.store import HubStore

    _truth, records = simulator_records
    engine = get_engine()
    hub = HubStore(engine)
    mapped = {}
    for spec in specs():
        rows, _failures = compile_mapping(spec).apply_many(records[spec.source.stream])
        mapped[spec.target.object] = rows
        with engine.begin() as conn:
            result = hub.upsert(conn, spec.target.object, rows, source_system="kingdee")
            assert hub.count(conn, spec.target.object) == len(rows)
        assert result.written == len(rows)
        with engine.begin() as conn:  # the same rows again change nothing
            assert hub.upsert(conn, spec.target.object, rows, source_system="kingdee").written == 0
    first = mapped["accounts"][0]
    with engine.connect() as conn:
        stored = hub.get(conn, "accounts", "kingdee", first["source_id"])
    assert stored is not None
    assert stored["credit_code"] == first["credit_code"] and stored["extra"] == first["extra"]
    assert result.lines_written == 0  # receivables have no lines; orders wrote theirs above
