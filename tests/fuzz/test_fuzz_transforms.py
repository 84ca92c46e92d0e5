"""Property tests for the mapping transforms: on any record value a step returns a value or raises
``TransformError`` (what the engine quarantines), never anything else, in bounded time; and on any
parameters ``validate_params`` raises only ``TransformParamsError``."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings import transforms as tf
from tests.fuzz.conftest import examples

#: every transform, with parameter sets that cover its branches (lookup: static tables only, the hub
#: lookup needs a database and is covered by the engine tests)
PARAMS: dict[str, list[object]] = {
    "str": [None],
    "int": [None],
    "float": [None],
    "decimal": [None, {"places": 2}, {"places": 0}],
    "bool": [None],
    "strip": [None],
    "upper": [None],
    "lower": [None],
    "truncate": [{"length": 5}, {"length": 1}],
    "split": [None, {"sep": ","}, {"sep": ",", "index": -1}, {"sep": "、", "index": 3}],
    "regex": [
        {"pattern": r"(\d+)"},
        {"pattern": r"(?P<n>[a-z]+)", "group": "n", "strict": True},
        {"pattern": "(a|aa)+$"},
    ],
    "replace": [{"old": "a", "new": "bb"}, {"old": " "}],
    "json": [None],
    "datetime": [
        None,
        {"tz": "Asia/Shanghai"},
        {"format": "%Y-%m-%d %H:%M", "tz": "UTC"},
        {"nulls": ["1970-01-01T00:00:00"]},
    ],
    "date": [None, {"format": "%Y年%m月%d日"}],
    "epoch": [None, {"unit": "ms"}, {"unit": "ns"}],
    "enum": [
        {"map": {"1": "a", 2: "b", "是": True}},
        {"map": {"1": "a"}, "strict": True},
        {"map": {"x": 1}, "default": "z"},
    ],
    "lookup": [
        {"table": {"PRE001": "CNY"}},
        {"table": {"1": "a"}, "on_missing": "error"},
        {"table": {"1": "a"}, "on_missing": "keep"},
    ],
    "scale": [{"factor": "100"}, {"factor": "0.01", "places": 2}],
    "default": [{"value": 0}, {"value": "n/a"}],
    "null_if": [{"values": ["", "-", 0]}],
    "phone": [None, {"strict": False}],
    "uscc": [None],
}
STEPS = [(name, p, tf.build_step(name, p)) for name, ps in PARAMS.items() for p in ps]


def test_every_registered_transform_is_fuzzed() -> None:
    assert set(PARAMS) == set(tf.known_transforms())


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(),
    st.decimals(),
    st.text(max_size=60),
    st.from_regex(r"[+\-]?[0-9０-９,，.]{1,25}([eE][+\-]?[0-9]{1,5})?", fullmatch=True),
    st.from_regex(r"(\+?86)?[ -]?1[0-9]{2}[ -]?[0-9]{4}[ -]?[0-9]{4}", fullmatch=True),
    st.from_regex(
        r"[0-9]{4}[-/年][0-9]{1,2}[-/月][0-9]{1,2}日?( [0-9]{1,2}:[0-9]{2}(:[0-9]{2})?)?", fullmatch=True
    ),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.dates(),
    st.sampled_from(
        ["", " ", "是", "否", "Y", "n", "NaN", "inf", "-0", "1e400", "0x10", "9" * 5000, "\x00", "\ud800"]
    ),
)
VALUES = st.one_of(
    SCALARS, st.lists(SCALARS, max_size=4), st.dictionaries(st.text(max_size=5), SCALARS, max_size=3)
)


@given(st.sampled_from(range(len(STEPS))), VALUES)
@settings(max_examples=examples(1.0))
def test_a_step_returns_or_raises_a_transform_error(index: int, value: object) -> None:
    name, params, step = STEPS[index]
    try:
        step(value)
    except tf.TransformError as exc:
        assert exc.reason
    except Exception as exc:  # anything else escapes quarantine and fails the run
        pytest.fail(f"{name} {params}: {type(exc).__name__}: {exc} on {value!r:.80}")


# Parameters come from the mapping file's YAML loader: scalars, text without lone surrogates, lists
# and mappings (no Decimal or datetime objects, which YAML 1.2 core never produces).
YAML_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=60),
    st.sampled_from(["", "+08:00", "Asia/Shanghai", "9" * 300, "(a|aa)+$", "(?P<x>", "%Y", "ms", "null"]),
)
YAML_VALUES = st.one_of(
    YAML_SCALARS,
    st.lists(YAML_SCALARS, max_size=4),
    st.dictionaries(
        YAML_SCALARS.filter(lambda v: not isinstance(v, float) or v == v), YAML_SCALARS, max_size=3
    ),
)


@given(
    st.sampled_from(sorted(PARAMS)),
    st.one_of(
        st.none(),
        YAML_VALUES,
        st.dictionaries(
            st.sampled_from(
                [
                    "places",
                    "length",
                    "sep",
                    "index",
                    "pattern",
                    "group",
                    "old",
                    "new",
                    "tz",
                    "format",
                    "nulls",
                    "unit",
                    "map",
                    "default",
                    "strict",
                    "table",
                    "factor",
                    "value",
                    "values",
                    "on_missing",
                    "x",
                ]
            ),
            YAML_VALUES,
            max_size=3,
        ),
    ),
)
@settings(max_examples=examples(0.3))
def test_parameters_validate_or_raise_a_params_error(name: str, raw: object) -> None:
    try:
        step = tf.build_step(name, raw)
    except tf.TransformParamsError:
        return
    assert callable(step)


def test_the_value_types_used_are_what_records_carry() -> None:
    # a reminder of what the engine hands a step: JSON values plus the Python types taps produce
    assert {type(v) for v in (1, 1.0, "a", None, True, [], {}, Decimal(1), dt.date(2024, 1, 1))}


def test_a_time_zone_name_too_long_for_a_file_is_a_params_error() -> None:
    with pytest.raises(tf.TransformParamsError, match="unknown time zone"):
        tf.build_step("datetime", {"tz": "9" * 300})


@pytest.mark.parametrize(
    ("name", "params", "value"),
    [  # what the fuzzer found: each escaped as ValueError / InvalidOperation, or passed NaN/inf through
        ("float", None, Decimal("sNaN")),
        ("float", None, Decimal("NaN")),
        ("float", None, "1e400"),
        ("float", None, 10**400),
        ("decimal", {"places": 2}, 1e26),
        ("scale", {"factor": "0.01", "places": 2}, 10**28),
        ("scale", {"factor": "1e999999"}, "1e999999"),
        ("bool", None, Decimal("sNaN")),
        ("int", None, "9" * 5000),
        ("int", None, Decimal("1e999999")),
        ("epoch", None, "9" * 5000),
    ],
)
def test_found_by_fuzzing_now_a_transform_error(name: str, params: object, value: object) -> None:
    with pytest.raises(tf.TransformError):
        tf.build_step(name, params)(value)
