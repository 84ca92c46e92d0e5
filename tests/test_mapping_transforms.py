"""Every transform step: what it accepts, what it produces, and how it refuses bad input."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from connectors.kit import uscc
from mappings import transforms as tf
from mappings.transforms import TransformError, TransformParamsError, build_step

UTC = dt.UTC


def step(name: str, params: Any = None, **kw: Any) -> tf.Step:
    return build_step(name, params, **kw)


def test_every_transform_passes_none_through_except_default() -> None:
    samples: dict[str, Any] = {
        "enum": {"map": {"A": 1}},
        "scale": 10,
        "split": ",",
        "regex": "a",
        "lookup": {"table": {"a": 1}},
        "truncate": 3,
        "replace": {"old": "a"},
        "null_if": [""],
        "default": 5,
    }
    for name in tf.known_transforms():
        result = step(name, samples.get(name))(None)
        assert result == (5 if name == "default" else None), name


# -- casts -----------------------------------------------------------------------------------------


def test_str() -> None:
    to_str = step("str")
    assert to_str("x") == "x"
    assert to_str(100234) == "100234"
    assert to_str(100234.0) == "100234"  # ids that travelled through a float
    assert to_str(1.5) == "1.5"
    assert to_str(Decimal("1E+3")) == "1000"
    assert to_str(True) == "true"
    assert to_str(dt.date(2024, 5, 1)) == "2024-05-01"
    with pytest.raises(TransformError, match="json"):
        to_str({"a": 1})


def test_int() -> None:
    to_int = step("int")
    assert to_int("42") == 42
    assert to_int(" -7 ") == -7
    assert to_int("1,234") == 1234
    assert to_int("12.00") == 12
    assert to_int(12.0) == 12
    assert to_int(Decimal("3")) == 3
    assert to_int("") is None
    for bad in ("abc", "12.5", 12.5, True, [1], "NaN"):
        with pytest.raises(TransformError):
            to_int(bad)


def test_float() -> None:
    to_float = step("float")
    assert to_float("1.25") == 1.25
    assert to_float(3) == 3.0
    assert to_float(Decimal("0.5")) == 0.5
    assert to_float("  ") is None
    for bad in ("x", "inf", False):
        with pytest.raises(TransformError):
            to_float(bad)


def test_decimal_is_exact_and_rejects_garbage() -> None:
    to_dec = step("decimal")
    assert to_dec("1,234.50") == Decimal("1234.50")
    assert to_dec(0.1) == Decimal("0.1")  # not 0.1000000000000000055...
    assert to_dec(7) == Decimal(7)
    assert to_dec("") is None
    for bad in ("abc", "1,2O4.5", "￥12,000.00", "NaN", "Infinity", True, Decimal("NaN"), [1]):
        with pytest.raises(TransformError):
            to_dec(bad)
    assert step("decimal", {"places": 2})("2.345") == Decimal("2.35")  # half up, the finance rule
    assert step("decimal", 0)("2.5") == Decimal("3")


def test_bool() -> None:
    to_bool = step("bool")
    for yes in (True, 1, "1", "true", "TRUE", "Y", "yes", "是", 1.0):
        assert to_bool(yes) is True, yes
    for no in (False, 0, "0", "false", "N", "no", "否"):
        assert to_bool(no) is False, no
    assert to_bool("") is None
    for bad in ("maybe", 2, "A"):
        with pytest.raises(TransformError, match="yes/no"):
            to_bool(bad)


# -- text ------------------------------------------------------------------------------------------


def test_strip_upper_lower_truncate_replace() -> None:
    assert step("strip")("\u3000 上海 \t") == "上海"  # full-width space too
    assert step("upper")("ab") == "AB"
    assert step("lower")("AB") == "ab"
    assert step("truncate", 3)("上海市浦东") == "上海市"  # characters, not bytes
    assert step("replace", {"old": "-", "new": ""})("a-b-c") == "abc"
    for name in ("strip", "upper", "lower"):
        with pytest.raises(TransformError, match="add 'str'"):
            step(name)(12)


def test_split() -> None:
    assert step("split", ",")("a, b ,c") == "a"
    assert step("split", {"sep": ",", "index": -1})("a,b,c") == "c"
    assert step("split", {"sep": ",", "index": 5})("a,b") is None
    assert step("split", {"sep": ",", "index": None})("a, b,,c") == ["a", "b", "c"]
    assert step("split", {})("上海 浦东") == "上海"
    with pytest.raises(TransformParamsError, match="sep must not be empty"):
        step("split", "")


def test_regex() -> None:
    assert step("regex", r"(\d+)万")("500万元") == "500"
    assert step("regex", {"pattern": r"^(?:[^省]+省)?([^市]+市)"})("广东省深圳市南山区") == "深圳市"
    assert step("regex", {"pattern": "(?P<n>\\d+)", "group": "n"})("ab12") == "12"
    assert step("regex", "x")("abc") is None
    with pytest.raises(TransformError, match="does not match"):
        step("regex", {"pattern": "x", "strict": True})("abc")
    with pytest.raises(TransformParamsError, match="invalid regular expression"):
        step("regex", "(a")
    with pytest.raises(TransformParamsError, match="group 2 does not exist"):
        step("regex", {"pattern": "(a)", "group": 2})


def test_json() -> None:
    to_json = step("json")
    assert (
        to_json({"城市": "上海", "n": Decimal("1.50"), "d": dt.date(2024, 1, 2)})
        == '{"城市":"上海","n":"1.50","d":"2024-01-02"}'
    )
    with pytest.raises(TransformError, match="JSON"):
        to_json({"x": object()})


# -- dates and times -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T10:20:30",
        "2024-05-01 10:20:30",
        " 2024-05-01T10:20:30 ",
        "2024/05/01 10:20:30",
        "2024-05-01T02:20:30Z",
        "2024-05-01T10:20:30+08:00",
        "2024-05-01T04:20:30+02:00",
        "2024年5月1日 10时20分30秒",
    ],
)
def test_datetime_reads_kingdee_naive_times_as_beijing_time(text: str) -> None:
    assert step("datetime", {"tz": "+08:00"})(text) == dt.datetime(2024, 5, 1, 2, 20, 30, tzinfo=UTC)


def test_datetime_fractions_dates_zones_and_formats() -> None:
    kd = step("datetime", {"tz": "+08:00"})
    assert kd("2024-05-02T10:11:12.347") == dt.datetime(2024, 5, 2, 2, 11, 12, 347000, tzinfo=UTC)
    assert kd("2025-01-02T14:49:44.5373333") == dt.datetime(2025, 1, 2, 6, 49, 44, 537333, tzinfo=UTC)
    assert kd("2024-05-01") == dt.datetime(2024, 4, 30, 16, 0, tzinfo=UTC)
    assert kd(dt.datetime(2024, 5, 1, 8, 0)) == dt.datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
    assert kd(dt.date(2024, 5, 1)) == dt.datetime(2024, 4, 30, 16, 0, tzinfo=UTC)
    assert kd("") is None
    assert kd("2024-05-01T10:20:30").tzinfo is UTC
    assert step("datetime", "Asia/Shanghai")("2024-05-01 08:00:00") == dt.datetime(2024, 5, 1, tzinfo=UTC)
    assert step("datetime", "UTC")("2024-05-01 08:00:00") == dt.datetime(2024, 5, 1, 8, tzinfo=UTC)
    assert step("datetime", {"format": "%d.%m.%Y %H:%M"})("01.05.2024 08:00") == dt.datetime(
        2024, 5, 1, tzinfo=UTC
    )
    sentinel = step("datetime", {"nulls": ["1900-01-01"]})
    assert sentinel("1900-01-01T00:00:00") is None
    assert sentinel("1900-01-02") is not None


@pytest.mark.parametrize(
    "bad",
    [
        "2024-13-45T00:00:00",
        "0000-00-00",
        "2024-02-30T00:00:00",
        "yesterday",
        1714500000,
        "0001-01-01T00:00:00",
    ],
)
def test_datetime_rejects_impossible_dates(bad: Any) -> None:
    with pytest.raises(TransformError):
        step("datetime")(bad)


def test_datetime_bad_params() -> None:
    with pytest.raises(TransformParamsError, match="unknown time zone 'Mars/Base'"):
        step("datetime", {"tz": "Mars/Base"})
    with pytest.raises(TransformParamsError, match="unknown parameter"):
        step("datetime", {"timezone": "+08:00"})
    with pytest.raises(TransformError, match="format"):
        step("datetime", {"format": "%Y%m%d"})("2024-05-01")


def test_date() -> None:
    to_date = step("date")
    assert to_date("2024-05-01T23:59:59") == dt.date(2024, 5, 1)
    assert to_date("2024-05-01T16:30:00Z") == dt.date(2024, 5, 2)  # in +08:00 it is already the 2nd
    assert to_date(dt.date(2024, 5, 1)) == dt.date(2024, 5, 1)
    assert step("date", {"nulls": ["1900-01-01"]})("1900-01-01") is None
    with pytest.raises(TransformError):
        to_date("2019-02-30T00:00:00")


def test_epoch() -> None:
    assert step("epoch")(1557838797) == dt.datetime(2019, 5, 14, 12, 59, 57, tzinfo=UTC)  # WeCom seconds
    assert step("epoch")("1557838797") == dt.datetime(2019, 5, 14, 12, 59, 57, tzinfo=UTC)
    assert step("epoch", "ms")(1557838797123) == dt.datetime(2019, 5, 14, 12, 59, 57, 123000, tzinfo=UTC)
    assert step("epoch", "ns")(1_000_000_000_000_000_000) == dt.datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC)
    with pytest.raises(TransformError, match="unit"):
        step("epoch")(1557838797123000000)  # milliseconds... or worse, read as seconds
    with pytest.raises(TransformError):
        step("epoch")("soon")
    with pytest.raises(TransformParamsError):
        step("epoch", "minutes")


# -- codes, tables, lookups ------------------------------------------------------------------------


def test_enum_strict_default_and_key_types() -> None:
    gender = step("enum", {"map": {0: "unknown", 1: "male", 2: "female"}})  # WeCom gender
    assert gender(1) == "male"
    assert gender("2") == "female"  # YAML int keys match text codes too
    with pytest.raises(TransformError, match="unknown code"):
        gender(3)
    assert step("enum", {"map": {"A": "x"}, "default": "other"})("Z") == "other"
    assert step("enum", {"map": {"A": "x"}, "strict": False})("Z") == "Z"
    assert step("enum", {"map": {"A": "x"}})(" A ") == "x"
    with pytest.raises(TransformParamsError, match="either strict"):
        step("enum", {"map": {"A": 1}, "default": 0, "strict": True})
    with pytest.raises(TransformParamsError, match="map"):
        step("enum", {"A": "x"})


def test_lookup_table() -> None:
    region = step("lookup", {"table": {"上海市": "华东", "北京市": "华北"}})
    assert region("上海市") == "华东"
    assert region("火星") is None
    assert step("lookup", {"table": {"a": 1}, "default": 0})("b") == 0
    assert step("lookup", {"table": {"a": 1}, "on_missing": "keep"})("b") == "b"
    with pytest.raises(TransformError, match="no match"):
        step("lookup", {"table": {"a": 1}, "on_missing": "error"})("b")
    with pytest.raises(TransformParamsError, match="either `table`"):
        step("lookup", {"object": "accounts", "table": {"a": 1}})
    with pytest.raises(TransformParamsError, match="needs `by`"):
        step("lookup", {"object": "accounts"})


def test_lookup_hub_goes_through_the_cached_resolver() -> None:
    calls: list[tuple[str, str, Any]] = []

    def resolver(obj: str, by: str, value: Any) -> Any:
        calls.append((obj, by, value))
        return {"source_id": f"S-{value}", "name": "n"} if value != "missing" else None

    cache = tf.LookupCache(resolver)
    account = step("lookup", {"object": "accounts", "by": "number", "return": "source_id"}, lookups=cache)
    assert account("CUST1") == "S-CUST1"
    assert account("CUST1") == "S-CUST1"
    assert account("missing") is None
    assert account("missing") is None
    assert calls == [("accounts", "number", "CUST1"), ("accounts", "number", "missing")]
    assert cache.calls == 2
    cache.set_resolver(resolver)  # a new run forgets what it knew
    account("CUST1")
    assert len(calls) == 3


def test_lookup_hub_resolver_forms_and_failures() -> None:
    four: list[str] = []

    def with_field(obj: str, by: str, value: Any, returning: str = "id") -> Any:
        four.append(returning)
        return f"{returning}:{value}"

    cache = tf.LookupCache(with_field)
    assert (
        step("lookup", {"object": "accounts", "by": "number", "return": "name"}, lookups=cache)("C")
        == "name:C"
    )
    assert four == ["name"]

    strict = step(
        "lookup",
        {"object": "accounts", "by": "number", "on_missing": "error"},
        lookups=tf.LookupCache(lambda o, b, v: None),
    )
    with pytest.raises(TransformError, match="no match in hub 'accounts' by 'number'"):
        strict("C")

    def broken(obj: str, by: str, value: Any) -> Any:
        raise ConnectionError("database is down")

    with pytest.raises(tf.ResolverError, match="database is down"):
        step("lookup", {"object": "accounts", "by": "number"}, lookups=tf.LookupCache(broken))("C")
    with pytest.raises(tf.ResolverError, match="needs a hub resolver"):
        step("lookup", {"object": "accounts", "by": "number"})("C")


# -- numbers with units, defaults, nulls -----------------------------------------------------------


def test_scale() -> None:
    assert step("scale", 10000)("12.3456") == Decimal("123456.0000")  # 万元 -> 元, exact
    assert step("scale", 0.01)(13) == Decimal("0.13")  # percent -> fraction
    assert step("scale", {"factor": "0.0001", "places": 2})(12345) == Decimal("1.23")
    with pytest.raises(TransformError):
        step("scale", 10)("abc")
    with pytest.raises(TransformParamsError, match="non-zero"):
        step("scale", 0)


def test_default_and_null_if() -> None:
    assert step("default", 0)(None) == 0
    assert step("default", {"value": "未知"})("x") == "x"
    assert step("default", {"value": None})(None) is None
    with pytest.raises(TransformParamsError, match="missing the value"):
        step("default", {})
    blank = step("null_if", ["", "-", "N/A"])
    assert blank("") is None and blank("N/A") is None and blank("x") == "x"
    assert step("null_if", 0)(0) is None
    assert blank([1]) == [1]


# -- Chinese identifiers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13812345678", "13812345678"),
        (13812345678, "13812345678"),
        ("+86 138-1234-5678", "13812345678"),
        ("8613812345678", "13812345678"),
        ("138 1234 5678", "13812345678"),
        ("１３８１２３４５６７８", "13812345678"),  # full-width digits
        ("010-12345678", "010-12345678"),
        ("01012345678", "010-12345678"),
        ("(021) 5555 0000", "021-55550000"),
        ("0571 8765 4321", "0571-87654321"),
        ("+86 10 1234 5678", "010-12345678"),
        ("0086-21-55550000", "021-55550000"),
        ("010-12345678-801", "010-12345678-801"),
        ("0571-88886666 转 12", "0571-88886666-12"),
        ("400-800-1234", "4008001234"),
        ("55550000", "55550000"),
    ],
)
def test_phone_normalises_chinese_numbers(raw: Any, expected: str) -> None:
    assert step("phone")(raw) == expected


@pytest.mark.parametrize(
    "bad", ["abc", "+1 415 555 1234", "123", "0571-123", "12345678901", "13812345678 转 1"]
)
def test_phone_rejects_non_chinese_numbers(bad: str) -> None:
    with pytest.raises(TransformError, match="not a Chinese"):
        step("phone")(bad)


def test_phone_lenient_keeps_what_it_cannot_read() -> None:
    assert step("phone", {"strict": False})(" +1 415 555 1234 ") == "+1 415 555 1234"
    assert step("phone")("") is None


def test_uscc() -> None:
    import random

    good = uscc.generate(random.Random(7))
    check = step("uscc")
    assert check(good) == good
    assert check(f" {good.lower()} ") == good
    assert check("") is None
    bad_check = good[:17] + uscc.ALPHABET[(uscc.ALPHABET.index(good[17]) + 1) % 31]
    with pytest.raises(TransformError, match="check character"):
        check(bad_check)
    with pytest.raises(TransformError, match="18 characters"):
        check(good[:10])
    with pytest.raises(TransformError, match="invalid characters"):
        check("91310115MA1XXXXXXI")
    with pytest.raises(TransformError, match="text"):
        check(123)


# -- registry --------------------------------------------------------------------------------------


def test_registry_errors_and_output_types() -> None:
    with pytest.raises(TransformParamsError, match="unknown transform 'uscc2'.*did you mean 'uscc'"):
        tf.validate_params("uscc2", None)
    with pytest.raises(TransformParamsError, match="takes no parameters"):
        tf.validate_params("strip", {"x": 1})
    with pytest.raises(TransformParamsError, match="needs a mapping of parameters"):
        tf.validate_params("enum", "A")
    enum = tf.TRANSFORMS["enum"]
    assert enum.output_type(tf.validate_params("enum", {"map": {"A": "x"}}), "string") == "string"
    assert enum.output_type(tf.validate_params("enum", {"map": {"A": 1, "B": 2.5}}), "string") == "number"
    assert tf.TRANSFORMS["datetime"].output_type(None, "string") == "date-time"
    assert tf.TRANSFORMS["null_if"].output_type(None, "integer") == "integer"
    assert set(tf.known_transforms()) >= {
        "str",
        "int",
        "float",
        "decimal",
        "bool",
        "strip",
        "upper",
        "lower",
        "datetime",
        "date",
        "epoch",
        "enum",
        "scale",
        "phone",
        "uscc",
        "split",
        "default",
        "regex",
        "lookup",
        "truncate",
        "json",
    }


def test_chain_composes_left_to_right() -> None:
    assert tf.chain([]) is None
    one = tf.chain([step("strip")])
    assert one is not None and one(" a ") == "a"
    two = tf.chain([step("strip"), step("upper")])
    assert two is not None and two(" a ") == "A"
    three = tf.chain([step("strip"), step("upper"), step("truncate", 1)])
    assert three is not None and three(" ab ") == "A"
