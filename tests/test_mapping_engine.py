"""The mapping engine: compiled output, per-record errors, nested lines, hub lookups.

Speed is measured in ``benchmarks/mapping_apply.py`` (against a hand-written baseline), not here."""

from __future__ import annotations

import datetime as dt
import random
import textwrap
from decimal import Decimal
from typing import Any

import pytest

from benchmarks.mapping_apply import TEN_FIELDS, customer  # the workload the benchmark times
from mappings import transforms as tf
from mappings.engine import CompiledMapping, MappingError, compile_mapping
from mappings.spec import FieldSpec, MappingSpec, MappingSpecError, parse_mapping

UTC = dt.UTC


def compiled(body: str, head: str = "accounts", **kw: Any) -> CompiledMapping:
    text = textwrap.dedent(f"""\
        version: 1
        name: t
        source: {{system: kingdee, stream: s}}
        target: {{object: {head}}}
        """) + textwrap.dedent(body)
    return compile_mapping(parse_mapping(text, "t.yaml"), **kw)


# -- mapping records -------------------------------------------------------------------------------


def test_ten_field_mapping() -> None:
    mapping = compile_mapping(parse_mapping(TEN_FIELDS, "bench.yaml"))
    assert mapping.apply(customer(3)) == {
        "source_id": "100003",
        "number": "CUST0000003",
        "name": "上海某某机电有限公司3",
        "short_name": "某某机电",
        "address": "上海市浦东新区xx路1号",
        "phone": "021-55550000",
        "grade": 3,
        "source_modified_at": dt.datetime(2024, 5, 2, 2, 11, 3, 347000, tzinfo=UTC),
        "status": "disabled",
        "source_system": "kingdee",
    }
    assert mapping.target_object == "accounts"
    assert mapping.target_fields == (
        "source_id",
        "number",
        "name",
        "short_name",
        "address",
        "phone",
        "grade",
        "source_modified_at",
        "status",
        "source_system",
    )
    assert mapping.source_fields == (
        "FCUSTID",
        "FNumber",
        "FName",
        "FShortName",
        "FADDRESS",
        "FTEL",
        "FLevel",
        "FModifyDate",
        "FForbidStatus",
    )
    assert mapping.spec.name == "bench_customers"
    # The generated function reads plain keys inline; nothing consults the spec per record.
    assert "g('FName')" in mapping.source_code and "spec" not in mapping.source_code


def test_paths_concat_constants_and_extra() -> None:
    mapping = compiled("""\
        fields:
          - {target: source_id, source: id}
          - {target: number, source: FCustId.FNumber}
          - {target: name, source: company.name, transform: [strip]}
          - {target: phone, source: phones.1}
          - {target: address, concat: {sources: [province, city, street], sep: " "}}
          - {target: status, const: active}
          - {target: grade, const: " a ", transform: [strip, upper]}
          - {target: extra.tags, const: [x]}
          - {target: extra.amount, source: amt, transform: [decimal]}
          - {target: extra.seen, source: ts, transform: [epoch]}
        """)
    record = {
        "id": 7,
        "FCustId.FNumber": "C7",
        "company": {"name": " 某某 "},
        "phones": ["1", "2"],
        "province": "上海市",
        "city": None,
        "street": "  ",
        "amt": "12.5",
        "ts": 0,
    }
    row = mapping.apply(record)
    assert row == {
        "source_id": "7",
        "number": "C7",
        "name": "某某",
        "phone": "2",
        "address": "上海市",
        "status": "active",
        "grade": "A",
        "source_system": "kingdee",
        "extra": {"tags": ["x"], "amount": 12.5, "seen": "1970-01-01T00:00:00+00:00"},  # JSON-storable
    }
    assert mapping.extra_fields == ("tags", "amount", "seen")
    assert mapping.target_fields[-1] == "extra"
    assert "FCustId.FNumber" in mapping.source_fields and "province" in mapping.source_fields
    # each row gets its own copy of a list constant
    other = mapping.apply(record)
    other["extra"]["tags"].append("y")
    assert mapping.apply(record)["extra"]["tags"] == ["x"]
    # missing nested parts read as null, not as errors
    assert mapping.apply({"id": 8})["name"] is None
    assert mapping.apply({"id": 8})["address"] is None


def test_source_system_defaults_to_the_spec_and_ids_become_text() -> None:
    mapping = compiled("fields:\n  - {target: source_id, source: id}\n")
    assert mapping.apply({"id": 100234}) == {"source_id": "100234", "source_system": "kingdee"}
    assert mapping.apply({"id": 100234.0}) == {"source_id": "100234", "source_system": "kingdee"}
    with pytest.raises(MappingError, match="field 'source_id': required"):
        mapping.apply({"id": ""})
    with pytest.raises(MappingError, match="field 'source_id': id: value is an object/array"):
        mapping.apply({"id": {"nested": 1}})


def test_errors_name_field_reason_and_value() -> None:
    mapping = compile_mapping(parse_mapping(TEN_FIELDS, "bench.yaml"))
    bad_date = customer(1) | {"FModifyDate": "2024-13-45T00:00:00"}
    with pytest.raises(MappingError) as info:
        mapping.apply(bad_date)
    err = info.value
    assert (err.field, err.value, err.mapping) == (
        "source_modified_at",
        "2024-13-45T00:00:00",
        "bench_customers",
    )
    assert err.reason.startswith("datetime: not a valid date/time")
    assert str(err).startswith("bench_customers: field 'source_modified_at': datetime: not a valid date/time")
    assert err.as_dict()["field"] == "source_modified_at"

    with pytest.raises(MappingError) as info:
        mapping.apply(customer(1) | {"FName": None})
    assert info.value.field == "name"
    assert info.value.reason == "required, but source 'FName' is missing or null"

    # required means "not null": a blank name passes unless the chain turns it into null
    assert mapping.apply(customer(1) | {"FName": "   "})["name"] == ""
    strict = compile_mapping(parse_mapping(TEN_FIELDS.replace("[strip]", "[strip, {null_if: ''}]"), "b.yaml"))
    with pytest.raises(MappingError) as info:
        strict.apply(customer(1) | {"FName": "   "})
    assert (info.value.field, info.value.reason) == ("name", "required, but the mapped value is empty")

    with pytest.raises(MappingError) as info:
        mapping.apply(customer(1) | {"FForbidStatus": "X"})
    assert (info.value.field, info.value.reason) == ("status", "enum: unknown code (known: A, B)")

    with pytest.raises(MappingError) as info:
        mapping.apply(customer(1) | {"FLevel": "high"})
    assert (info.value.field, info.value.reason) == ("grade", "int: not a number")

    with pytest.raises(MappingError, match="expected an object, got a list"):
        mapping.apply([1, 2])  # type: ignore[arg-type]


def test_error_shows_the_step_input_when_an_earlier_step_changed_it() -> None:
    mapping = compiled(
        "fields:\n  - {target: source_id, source: id}\n"
        "  - {target: grade, source: g, transform: [strip, int]}\n"
    )
    with pytest.raises(MappingError) as info:
        mapping.apply({"id": 1, "g": " x "})
    assert info.value.reason == "int: not a number (got 'x')" and info.value.value == " x "


def test_apply_many_separates_failures() -> None:
    mapping = compile_mapping(parse_mapping(TEN_FIELDS, "bench.yaml"))
    records = [customer(i) for i in range(5)]
    records[2] = records[2] | {"FLevel": "?"}
    rows, failures = mapping.apply_many(records)
    assert [r["source_id"] for r in rows] == ["100000", "100001", "100003", "100004"]
    assert [(f.index, f.error.field) for f in failures] == [(2, "grade")]
    assert failures[0].record is records[2]


def test_source_id_of_is_best_effort() -> None:
    mapping = compile_mapping(parse_mapping(TEN_FIELDS, "bench.yaml"))
    assert mapping.source_id_of(customer(1) | {"FLevel": "?"}) == "100001"
    assert mapping.source_id_of({}) is None
    assert mapping.source_id_of("junk") is None


def test_generated_code_and_the_slow_path_agree() -> None:
    """The fast function and the field-by-field interpreter are two implementations of one plan."""
    mapping = compiled("""\
        fields:
          - {target: source_id, source: id, transform: [str]}
          - {target: name, source: n, transform: [strip, {null_if: ""}, {default: "?"}]}
          - {target: grade, source: g, transform: [{enum: {map: {1: A, 2: B}, default: C}}]}
          - {target: amount_text, source: a, transform: [decimal, {scale: 100}, str]}
          - {target: city, source: addr.city}
          - {target: extra.k, source: k}
        """)

    def outcome(fn: Any, record: dict[str, Any]) -> Any:
        try:
            return fn(record)
        except MappingError as exc:
            return ("error", exc.field, exc.reason)

    rng = random.Random(5)
    for i in range(500):
        record = {
            "id": rng.choice([i, str(i), "", None, 1.0]),
            "n": rng.choice([None, "", " x ", "名", 5, ["list"]]),
            "g": rng.choice([1, "2", 3, None, [1], " 1"]),
            "a": rng.choice(["1.5", 2, None, "x"]),
            "addr": rng.choice([None, {"city": "杭州"}, {}]),
            "k": rng.choice([None, 1, Decimal("1.25"), dt.date(2024, 1, 1)]),
        }
        assert outcome(mapping.apply, record) == outcome(mapping._map_slowly, record), record


# -- nested lines ----------------------------------------------------------------------------------

ORDER = """\
fields:
  - {target: source_id, source: FID, transform: [str]}
  - {target: order_no, source: FBillNo, required: true}
  - {target: source_modified_at, source: FModifyDate, transform: [datetime]}
lines:
  source: lines
  target: sales_order_lines
  key: FEntryID
  fields:
    - {target: line_no, source: FSeq, transform: [int]}
    - {target: qty, source: FQty, transform: [decimal], required: true}
    - {target: tax_rate, source: FEntryTaxRate, transform: [{scale: 0.01}]}
"""


def test_nested_lines_become_child_rows() -> None:
    mapping = compiled(ORDER, head="sales_orders")
    row = mapping.apply(
        {
            "FID": 9,
            "FBillNo": "XSDD1",
            "FModifyDate": "2024-05-01 08:00:00",
            "lines": [
                {"FEntryID": 501, "FSeq": 1, "FQty": 2.0, "FEntryTaxRate": 13},
                {"FEntryID": 502, "FSeq": "2", "FQty": "1.5", "FEntryTaxRate": None},
            ],
        }
    )
    modified = dt.datetime(2024, 5, 1, tzinfo=UTC)
    assert row["__lines__"] == [
        {
            "source_id": "501",
            "line_no": 1,
            "qty": Decimal("2.0"),
            "tax_rate": Decimal("0.13"),
            "source_system": "kingdee",
            "order_source_id": "9",
            "source_modified_at": modified,
        },
        {
            "source_id": "502",
            "line_no": 2,
            "qty": Decimal("1.5"),
            "tax_rate": None,
            "source_system": "kingdee",
            "order_source_id": "9",
            "source_modified_at": modified,
        },
    ]
    assert "__lines__" not in mapping.target_fields
    assert mapping.lines is not None and mapping.lines.target_object == "sales_order_lines"
    assert mapping.lines.parent_key == "order_source_id"
    assert mapping.lines.source_fields == ("FEntryID", "FSeq", "FQty", "FEntryTaxRate")
    assert mapping.source_fields[-1] == "lines"
    assert mapping.apply({"FID": 1, "FBillNo": "X"})["__lines__"] == []


def test_a_bad_line_fails_the_order_naming_the_line() -> None:
    mapping = compiled(ORDER, head="sales_orders")
    order = {
        "FID": 9,
        "FBillNo": "XSDD1",
        "lines": [{"FEntryID": 1, "FQty": 1}, {"FEntryID": 2, "FQty": "N/A"}],
    }
    with pytest.raises(MappingError) as info:
        mapping.apply(order)
    assert (info.value.field, info.value.reason, info.value.value) == (
        "lines[1].qty",
        "decimal: not a number",
        "N/A",
    )
    with pytest.raises(MappingError, match=r"field 'lines\[0\].source_id': required"):
        mapping.apply({"FID": 9, "FBillNo": "X", "lines": [{"FQty": 1}]})
    with pytest.raises(MappingError, match="field 'lines': lines must be an array"):
        mapping.apply({"FID": 9, "FBillNo": "X", "lines": "oops"})


def test_lines_with_an_explicit_source_id_and_parent_key() -> None:
    mapping = compiled(
        """\
        fields:
          - {target: source_id, source: id}
        lines:
          source: detail.rows
          target: sales_order_lines
          parent_key: order_source_id
          fields:
            - {target: source_id, concat: {sources: [order, seq], sep: "-"}}
        """,
        head="sales_orders",
    )
    row = mapping.apply({"id": "A", "detail": {"rows": [{"order": "A", "seq": 1}]}})
    assert row["__lines__"] == [{"source_id": "A-1", "source_system": "kingdee", "order_source_id": "A"}]


# -- hub lookups -----------------------------------------------------------------------------------

LOOKUP = """\
fields:
  - {target: source_id, source: id}
  - {target: account_ref, source: customer_no, transform: [{lookup: {object: accounts, by: number, return: source_id}}]}
"""


def test_lookup_uses_the_injected_resolver_with_a_per_run_cache() -> None:
    hub = {"C1": {"source_id": "100001", "number": "C1"}}
    calls: list[Any] = []

    def resolver(obj: str, by: str, value: Any) -> Any:
        calls.append((obj, by, value))
        return hub.get(value)

    mapping = compiled(LOOKUP, resolver=resolver)
    rows, failures = mapping.apply_many([{"id": i, "customer_no": "C1" if i % 2 else "C9"} for i in range(6)])
    assert failures == []
    assert [r["account_ref"] for r in rows] == [None, "100001"] * 3
    assert calls == [("accounts", "number", "C9"), ("accounts", "number", "C1")]
    assert mapping.lookup_calls == 2

    hub["C9"] = {"source_id": "100009"}
    assert mapping.apply({"id": 1, "customer_no": "C9"})["account_ref"] is None  # cached miss, same run
    mapping.clear_lookup_cache()
    assert mapping.apply({"id": 1, "customer_no": "C9"})["account_ref"] == "100009"

    mapping.set_resolver(lambda obj, by, value, returning: f"{returning}@{value}")  # the store's signature
    assert mapping.apply({"id": 1, "customer_no": "C9"})["account_ref"] == "source_id@C9"


def test_a_failing_resolver_fails_the_run_not_the_record() -> None:
    def down(obj: str, by: str, value: Any) -> Any:
        raise ConnectionError("hub unreachable")

    mapping = compiled(LOOKUP, resolver=down)
    with pytest.raises(tf.ResolverError, match="hub unreachable"):
        mapping.apply({"id": 1, "customer_no": "C1"})
    with pytest.raises(tf.ResolverError, match="needs a hub resolver"):
        compiled(LOOKUP).apply({"id": 1, "customer_no": "C1"})


def test_lookup_in_lines_shares_the_cache() -> None:
    seen: list[Any] = []

    def resolver(obj: str, by: str, value: Any) -> Any:
        seen.append(value)
        return {"name": f"P-{value}"}

    mapping = compiled(
        """\
        fields:
          - {target: source_id, source: id}
        lines:
          source: lines
          target: sales_order_lines
          key: eid
          fields:
            - {target: product_name, source: code, transform: [{lookup: {object: products, by: code, return: name}}]}
        """,
        head="sales_orders",
        resolver=resolver,
    )
    row = mapping.apply({"id": 1, "lines": [{"eid": 1, "code": "M1"}, {"eid": 2, "code": "M1"}]})
    assert [line["product_name"] for line in row["__lines__"]] == ["P-M1", "P-M1"]
    assert seen == ["M1"]


# -- compile-time checks ---------------------------------------------------------------------------


def test_compile_requires_a_source_id() -> None:
    spec = MappingSpec(
        version=1,
        name="py",
        source={"system": "k", "stream": "s"},  # type: ignore[arg-type]
        target={"object": "accounts"},
        fields=[FieldSpec(target="name", source="n")],
    )  # type: ignore[arg-type]
    with pytest.raises(MappingSpecError, match="must map a 'source_id' target"):
        compile_mapping(spec)


def test_constants_are_transformed_once_at_compile_time() -> None:
    mapping = compiled(
        "fields:\n  - {target: source_id, source: id}\n"
        "  - {target: source_modified_at, const: '2024-01-01', transform: [datetime]}\n"
    )
    assert "C1" in mapping.source_code and "S1_0" not in mapping.source_code
    assert mapping.apply({"id": 1})["source_modified_at"] == dt.datetime(2023, 12, 31, 16, tzinfo=UTC)
    with pytest.raises(
        MappingSpecError, match=r"t.yaml:7: field 'grade': constant cannot be transformed: not a number"
    ):
        compiled(
            "fields:\n  - {target: source_id, source: id}\n  - {target: grade, const: x, transform: [int]}\n"
        )


def test_the_library_mappings_compile() -> None:
    from pathlib import Path

    from mappings.spec import load_mappings

    library = Path(__file__).resolve().parents[1] / "mappings/library/kingdee_to_crm.yaml"
    assert {compile_mapping(s).target_object for s in load_mappings(library)} == {
        "accounts",
        "sales_orders",
        "receivables",
    }
