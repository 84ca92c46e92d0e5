"""Property tests for ``tongbu.serve.bodies.parse_json_body``: bounded, linear, only ``BodyRejected`` out."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import examples
from tongbu.serve.bodies import BodyRejected, parse_json_body

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=10), children, max_size=6)
    ),
    max_leaves=40,
)
PIECES = st.sampled_from(
    [
        '{"a":',
        "[",
        "]",
        "{",
        "}",
        ",",
        '"',
        "\\",
        "1e999999",
        "9" * 5000,
        "NaN",
        "-Infinity",
        "null",
        " " * 100,
        "\ud800",
    ]
)
JSONISH = st.lists(PIECES, max_size=80).map("".join)


@given(st.one_of(st.binary(max_size=4096), st.text(max_size=2048), JSONISH))
def test_any_body_parses_or_is_rejected(body: str | bytes) -> None:
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    try:
        parse_json_body(raw)
    except BodyRejected as exc:
        assert str(exc)


@given(JSON_VALUES)
@settings(max_examples=examples(0.1))
def test_valid_json_within_the_bounds_round_trips(value: object) -> None:
    text = json.dumps(value)
    assert parse_json_body(text.encode()) == json.loads(text)


@given(st.integers(33, 200_000), st.sampled_from("[{"))
@settings(max_examples=examples(0.02))
def test_deep_nesting_is_refused_before_the_parser_recurses(depth: int, opener: str) -> None:
    body = (opener if opener == "[" else '{"a":') * depth
    try:
        parse_json_body(body.encode(), max_bytes=10**6)
    except BodyRejected as exc:
        assert "deeper" in str(exc) or "larger" in str(exc)
    else:
        raise AssertionError("a document deeper than the bound was parsed")


def test_size_and_item_bounds() -> None:
    import pytest

    with pytest.raises(BodyRejected, match="larger"):
        parse_json_body(b" " * (64 * 1024 + 1))
    with pytest.raises(BodyRejected, match="items"):
        parse_json_body(b"[" + b"0," * 10_001 + b"0]")
    with pytest.raises(BodyRejected, match="not JSON"):
        parse_json_body(b'{"a": NaN}')
    with pytest.raises(BodyRejected, match="not valid JSON"):
        parse_json_body(b"1" * 5000)  # over Python's int digit limit
    assert parse_json_body(b'{"s": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}') == {"s": "[" * 46}
