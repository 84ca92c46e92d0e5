"""The mapping file format: parsing, error messages with file:line:field, schema validation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mappings.spec import (
    MappingSpecError,
    check,
    dump_mapping,
    load_mapping,
    load_mappings,
    parse_mapping,
    parse_mappings,
    schema_type,
    validate,
    validate_for_hub,
)
from tongbu.hub.schema import object_names, object_schema

HEAD = """\
version: 1
name: kingdee_customers_to_accounts
source: {system: kingdee, stream: customers}
target: {object: accounts}
"""

SUGGESTER_EXAMPLE = """\
version: 1
name: kingdee_customers_to_accounts
source: {system: kingdee, stream: customers}
target: {object: accounts}
fields:
  - {target: source_id, source: FID, transform: [str]}
  - {target: name, source: FName, transform: [strip], required: true}
  - {target: source_system, const: kingdee}
  - {target: full_name, concat: {sources: [a, b], sep: ""}}
"""

CUSTOMER_SCHEMA = {
    "type": "object",
    "properties": {
        "FCUSTID": {"type": ["integer", "null"]},
        "FNumber": {"type": ["string", "null"]},
        "FName": {"type": ["string", "null"]},
        "FTEL": {"type": ["string", "null"]},
        "FSOCIALCRECODE": {"type": ["string", "null"]},
        "FModifyDate": {"type": ["string", "null"], "format": "date-time"},
        "FCustId.FNumber": {"type": ["string", "null"]},
        "FPROVINCIAL": {"type": ["object", "null"], "properties": {"FName": {"type": ["string", "null"]}}},
    },
}


def errors_of(text: str, filename: str = "mappings/library/x.yaml") -> list[str]:
    with pytest.raises(MappingSpecError) as info:
        parse_mapping(text, filename)
    return [str(p) for p in info.value.problems]


# -- the format ------------------------------------------------------------------------------------


def test_the_suggester_format_parses_as_is() -> None:
    spec = parse_mapping(SUGGESTER_EXAMPLE, "suggested.yaml")
    assert spec.name == "kingdee_customers_to_accounts"
    assert (spec.source.system, spec.source.stream, spec.target.object) == (
        "kingdee",
        "customers",
        "accounts",
    )
    by_target = {f.target: f for f in spec.fields}
    assert by_target["source_id"].transform[0].name == "str"
    assert by_target["name"].required is True
    assert by_target["source_system"].has_const and by_target["source_system"].const == "kingdee"
    assert by_target["full_name"].concat is not None and by_target["full_name"].concat.sources == ["a", "b"]
    assert by_target["name"].line == 7 and spec.file == "suggested.yaml" and spec.line == 1


def test_transform_step_forms() -> None:
    spec = parse_mapping(
        HEAD
        + textwrap.dedent("""\
        fields:
          - {target: source_id, source: FID}
          - target: a
            source: A
            transform: strip
          - {target: b, source: B, transform: [{default: 0}, {decimal: {places: 2}}, {scale: 10000}]}
          - {target: c, source: C, transform: [{datetime: {tz: "+08:00"}}]}
        """),
        "forms.yaml",
    )
    a, b, c = spec.fields[1:]
    assert [s.name for s in a.transform] == ["strip"]
    assert [s.name for s in b.transform] == ["default", "decimal", "scale"]
    assert b.transform[0].params.value == 0
    assert b.transform[2].to_yaml() == {"scale": 10000}
    assert c.transform[0].params.tz == "+08:00"


def test_yaml_1_2_scalars_keep_codes_intact() -> None:
    spec = parse_mapping(
        HEAD
        + textwrap.dedent("""\
        fields:
          - {target: source_id, source: FID}
          - {target: a, source: A, transform: [{enum: {map: {yes: 是, no: 否, on: 开, off: 关, Y: y, N: n}}}]}
          - {target: b, const: 010}
          - {target: c, const: 2024-05-01}
          - {target: d, const: true}
          - {target: e, const: 1:20}
        """),
        "scalars.yaml",
    )
    table = spec.fields[1].transform[0].params.map
    assert set(table) == {"yes", "no", "on", "off", "Y", "N"}  # YAML 1.1 would have made booleans
    consts = {f.target: f.const for f in spec.fields[2:]}
    assert consts == {"b": 10, "c": "2024-05-01", "d": True, "e": "1:20"}


def test_several_mappings_per_file(tmp_path: Path) -> None:
    listed = tmp_path / "listed.yaml"
    body = SUGGESTER_EXAMPLE.replace("\n", "\n    ").rstrip()
    listed.write_text(
        "mappings:\n  - "
        + body.replace("name: kingdee_customers_to_accounts", "name: one")
        + "\n  - "
        + body.replace("name: kingdee_customers_to_accounts", "name: two")
        + "\n"
    )
    assert [s.name for s in load_mappings(listed)] == ["one", "two"]
    assert load_mapping(listed, "two").name == "two"
    with pytest.raises(MappingSpecError, match="holds 2 mappings"):
        load_mapping(listed)
    with pytest.raises(MappingSpecError, match="no mapping named 'three'"):
        load_mapping(listed, "three")

    documents = (
        SUGGESTER_EXAMPLE + "---\n" + SUGGESTER_EXAMPLE.replace("kingdee_customers_to_accounts", "other")
    )
    assert [s.name for s in parse_mappings(documents, "docs.yaml")] == [
        "kingdee_customers_to_accounts",
        "other",
    ]
    with pytest.raises(MappingSpecError, match="used twice"):
        parse_mappings(SUGGESTER_EXAMPLE + "---\n" + SUGGESTER_EXAMPLE, "dup.yaml")


def test_dump_round_trips() -> None:
    spec = load_mapping(
        Path(__file__).resolve().parents[1] / "mappings/library/kingdee_to_crm.yaml",
        "kingdee_sales_orders_to_sales_orders",
    )
    again = parse_mapping(dump_mapping(spec), "dumped.yaml")
    assert again.model_dump(
        exclude={"fields": {"__all__": {"transform": {"__all__": {"params"}}}}}
    ) == spec.model_dump(exclude={"fields": {"__all__": {"transform": {"__all__": {"params"}}}}})
    assert len(again.lines.fields) == len(spec.lines.fields)  # type: ignore[union-attr]


# -- errors name file, line and field --------------------------------------------------------------


def test_unknown_transform_names_file_line_field_and_the_known_ones() -> None:
    text = HEAD + textwrap.dedent("""\
        fields:
          - {target: source_id, source: FCUSTID, transform: [str]}
          - {target: name, source: FName}
          - {target: credit_code, source: FSOCIALCRECODE, transform: [uscc2]}
        """)
    (problem,) = errors_of(text)
    assert problem.startswith(
        "mappings/library/x.yaml:8: field 'credit_code': unknown transform 'uscc2' (known: "
    )
    assert "uscc" in problem and "did you mean 'uscc'?" in problem


def test_all_problems_are_reported_at_once_in_line_order() -> None:
    text = HEAD + textwrap.dedent("""\
        fields:
          - {target: number, source: FNumber}
          - {target: name, source: FName, required: maybe}
          - target: modified
            source: FModifyDate
            transform:
              - strip
              - {datetime: {tz: "Asia/Shanghaii"}}
          - {target: phone, sourc: FTEL}
          - {target: fax, source: FFAX, const: 1}
          - {target: number, source: FNumber2}
          - {target: grade, source: G, transform: [{enum: {A: x}}]}
          - {target: zip, source: Z, transform: [{regex: "(a"}]}
          - {target: "bad name", source: X}
        """)
    problems = errors_of(text, "bad.yaml")
    expected = [
        ("bad.yaml:5:", "a mapping must map a 'source_id' target (the record's id in kingdee)"),
        ("bad.yaml:7: field 'name':", "required: Input should be a valid boolean"),
        ("bad.yaml:12: field 'modified':", "transform 'datetime': tz: unknown time zone 'Asia/Shanghaii'"),
        ("bad.yaml:13: field 'phone':", "unknown key 'sourc' (allowed: target, source, const, concat"),
        ("bad.yaml:14: field 'fax':", "give exactly one of source, const or concat (given: source, const)"),
        ("bad.yaml:15: field 'number':", "target is mapped twice (first on line 6)"),
        ("bad.yaml:16: field 'grade':", "transform 'enum': map: missing required parameter"),
        ("bad.yaml:17: field 'zip':", "transform 'regex': pattern: invalid regular expression"),
        ("bad.yaml:18: field 'bad name':", "target 'bad name' is not a column name"),
    ]
    assert len(problems) == len(expected), problems
    for problem, (where, what) in zip(
        sorted(problems, key=lambda p: int(p.split(":")[1])), expected, strict=True
    ):
        assert problem.startswith(where) and what in problem, (problem, where, what)


def test_structural_errors() -> None:
    no_id = HEAD + "fields:\n  - {target: name, source: FName}\n"
    assert errors_of(no_id, "m.yaml") == [
        "m.yaml:5: a mapping must map a 'source_id' target (the record's id in kingdee); it is the upsert key"
    ]
    both_extra = HEAD + textwrap.dedent("""\
        fields:
          - {target: source_id, source: FID}
          - {target: extra, source: X}
          - {target: extra.a, source: A}
        """)
    assert "map either the whole 'extra' or extra.<name>" in errors_of(both_extra)[0]
    lines_without_key = HEAD.replace("accounts", "sales_orders") + textwrap.dedent("""\
        fields:
          - {target: source_id, source: FID}
        lines:
          source: lines
          target: sales_order_lines
          fields:
            - {target: qty, source: FQty}
        """)
    (problem,) = errors_of(lines_without_key, "o.yaml")
    assert problem.startswith("o.yaml:7: field 'lines': lines need their own source_id")


def test_yaml_and_shape_errors() -> None:
    assert errors_of("version: 1\nname: a\nname: b\n", "d.yaml") == [
        "d.yaml:3: invalid YAML: duplicate key 'name' (first on line 2)"
    ]
    assert errors_of("a: [1,\n", "s.yaml")[0].startswith("s.yaml:")
    assert "invalid YAML" in errors_of("a: [1,\n")[0]
    assert errors_of("- 1\n- 2\n", "l.yaml") == ["l.yaml:1: a mapping must be a YAML mapping (key: value)"]
    problems = errors_of(
        "version: 2\nname: x\nsource: {system: k}\ntarget: {object: accounts}\nfields: []\n", "v.yaml"
    )
    assert any(p.startswith("v.yaml:1: version:") for p in problems)
    assert any(p.startswith("v.yaml:3: missing required key 'stream'") for p in problems)
    assert any(p.startswith("v.yaml:5: fields:") for p in problems)
    typo = errors_of(SUGGESTER_EXAMPLE + "fileds: []\n", "k.yaml")
    assert typo == [
        "k.yaml:10: unknown key 'fileds' (allowed: version, name, description, source, target, fields, lines)"
    ]


def test_load_mapping_reports_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib/bad.yaml").write_text(
        HEAD + "fields:\n  - {target: source_id, source: X, transform: [nope]}\n"
    )
    with pytest.raises(MappingSpecError) as info:
        load_mapping(tmp_path / "lib/bad.yaml")
    assert str(info.value).startswith("lib/bad.yaml:6: field 'source_id': unknown transform 'nope'")
    with pytest.raises(MappingSpecError, match="cannot read the file"):
        load_mapping(tmp_path / "missing.yaml")


# -- validation against the source and target schemas ----------------------------------------------


def test_schema_type() -> None:
    assert schema_type({"type": ["string", "null"], "format": "date-time"}) == "date-time"
    assert schema_type({"type": ["integer", "number", "null"]}) == "number"
    assert schema_type({"anyOf": [{"type": "string"}, {"type": "null"}]}) == "string"
    assert schema_type({"type": ["string", "integer"]}) is None
    assert schema_type({}) is None


def test_validate_reports_every_schema_problem() -> None:
    text = HEAD + textwrap.dedent("""\
        fields:
          - {target: source_id, source: FCUSTID}
          - {target: name, source: FNAME}
          - {target: number, source: FNumbr}
          - {target: credit_code, source: FCUSTID, transform: [uscc]}
          - {target: source_modified_at, source: FTEL}
          - {target: phone, source: FCUSTID, transform: [int]}
          - {target: nme, source: FName}
          - {target: row_hash, const: x}
          - {target: status, source: FTEL, transform: [{enum: {map: {A: 1, B: 2}}}]}
          - {target: province, source: FPROVINCIAL.FName}
          - {target: extra.customer_no, source: FCustId.FNumber}
          - {target: short_name, source: FPROVINCIAL.FNmae}
        """)
    spec = parse_mapping(text, "v.yaml")
    with pytest.raises(MappingSpecError) as info:
        validate(spec, CUSTOMER_SCHEMA, object_schema("accounts"))
    assert [str(p) for p in info.value.problems] == [
        "v.yaml:7: field 'name': unknown source path 'FNAME'; did you mean 'FName'? (keys are case-sensitive)",
        "v.yaml:8: field 'number': unknown source path 'FNumbr'; did you mean 'FNumber'?",
        "v.yaml:9: field 'credit_code': transform 'uscc' takes date/date-time/string but gets integer "
        "(add 'str' before it)",
        "v.yaml:10: field 'source_modified_at': target is date-time but the mapping produces string; "
        "add a 'datetime' transform (e.g. {datetime: {tz: '+08:00'}}) or 'epoch'",
        "v.yaml:11: field 'phone': target is string but the mapping produces integer; add 'str'",
        "v.yaml:12: field 'nme': unknown target field 'nme' in 'accounts'; did you mean 'name'?",
        "v.yaml:13: field 'row_hash': 'row_hash' is filled by the framework, not by mappings",
        "v.yaml:14: field 'status': target is string but the mapping produces integer; add 'str'",
        "v.yaml:17: field 'short_name': unknown source path 'FPROVINCIAL.FNmae'; did you mean 'FPROVINCIAL.FName'?",
    ]


def test_validate_required_fields_and_auto_source_system() -> None:
    spec = parse_mapping(
        HEAD + "fields:\n  - {target: name, source: FName}\n  - {target: source_id, source: FCUSTID}\n"
    )
    assert check(spec, CUSTOMER_SCHEMA, object_schema("accounts")) == []  # source_system comes from the spec
    problems = check(spec, CUSTOMER_SCHEMA, object_schema("accounts"), auto_filled=())
    assert [p.message for p in problems] == [
        "required target field 'source_system' of 'accounts' is not mapped"
    ]


def test_validate_nested_lines() -> None:
    text = HEAD.replace("accounts", "sales_orders") + textwrap.dedent("""\
        fields:
          - {target: source_id, source: FID}
          - {target: amount, source: FBillAllAmount, transform: [decimal]}
        lines:
          source: lines
          target: sales_order_lines
          key: FEntryId
          fields:
            - {target: qty, source: FQty}
            - {target: line_no, source: FSeq, transform: [int]}
            - {target: price, source: FPrice, transform: [decimal]}
        """)
    source = {
        "properties": {
            "FID": {"type": "integer"},
            "FBillAllAmount": {"type": ["number", "null"]},
            "lines": {
                "type": ["array", "null"],
                "items": {
                    "type": "object",
                    "properties": {
                        "FEntryID": {"type": "integer"},
                        "FQty": {"type": ["string", "null"]},
                        "FSeq": {"type": "integer"},
                        "FPrice": {"type": ["number", "null"]},
                    },
                },
            },
        }
    }
    spec = parse_mapping(text, "o.yaml")
    with pytest.raises(MappingSpecError) as info:
        validate_for_hub(spec, source)
    assert [str(p) for p in info.value.problems] == [
        "o.yaml:11: field 'lines': unknown line key 'FEntryId'; did you mean 'FEntryID'? (keys are case-sensitive)",
        "o.yaml:13: field 'lines.qty': target is number but the mapping produces string; add 'decimal' (or 'float')",
        "o.yaml:15: field 'lines.price': unknown target field 'price' in 'sales_order_lines'; did you mean "
        "'unit_price'?",
    ]


def test_validate_for_hub_unknown_object() -> None:
    spec = parse_mapping(SUGGESTER_EXAMPLE.replace("{object: accounts}", "{object: acounts}"), "t.yaml")
    with pytest.raises(MappingSpecError, match="t.yaml:4: field 'target': unknown hub object 'acounts'"):
        validate_for_hub(spec, {})


# -- the hub schema the target side is checked against ---------------------------------------------


def test_hub_object_schemas() -> None:
    assert "accounts" in object_names() and "sales_order_lines" in object_names()
    accounts = object_schema("accounts")
    props = accounts["properties"]
    assert list(props)[:3] == ["source_system", "source_id", "source_modified_at"]
    assert list(props)[-1] == "extra"
    assert props["credit_code"] == {"type": ["string", "null"], "maxLength": 18}
    assert props["source_modified_at"] == {"type": ["string", "null"], "format": "date-time"}
    assert props["extra"] == {"type": ["object", "null"]}
    assert accounts["required"] == ["source_system", "source_id"]
    for system_column in ("id", "tenant_id", "row_hash", "created_at", "updated_at", "deleted_at"):
        assert system_column not in props
    lines = object_schema("sales_order_lines")
    assert "order_id" not in lines["properties"]  # the target resolves it from order_source_id
    assert "order_source_id" in lines["required"]
    assert lines["properties"]["qty"] == {"type": ["number", "null"]}
    assert lines["properties"]["line_no"] == {"type": ["integer", "null"]}
    assert object_schema("contacts")["properties"]["tags"] == {"type": ["array", "null"]}
    assert object_schema("sales_orders")["x-children"] == {
        "object": "sales_order_lines",
        "parent_key": "order_source_id",
    }
    object_schema("accounts")["properties"].clear()  # callers get a copy
    assert object_schema("accounts")["properties"]
    with pytest.raises(KeyError, match="unknown hub object 'nope'"):
        object_schema("nope")
