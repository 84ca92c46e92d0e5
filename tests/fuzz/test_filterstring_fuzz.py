"""Property tests: the Kingdee simulator's FilterString parser cannot be made slow or crash (issue 17).

Whatever a client sends as ``FilterString``, the simulator answers with rows or with a
:class:`QueryError` (Kingdee's own error reply), within a bounded time per input (hypothesis'
``deadline``); a filter written in the documented grammar always becomes SQL that SQLite accepts.

The profile comes from the environment: ``TONGBU_FUZZ_PROFILE=ci`` (also chosen when CI runs with
``TONGBU_REQUIRE_SERVICES`` or ``CI`` set) draws 10,000 examples for the any-text property; the default ``dev``
profile draws 300 so a local run stays quick (the two grammar-driven properties draw half as many).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.kingdee.simulator import FORMS, FilterTranslator, KingdeeStore, QueryError
from connectors.kit.simulator import FaultConfig

_COMMON = {
    "deadline": timedelta(milliseconds=500),  # per input: the parser is linear, far below this
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    "database": None,
    "derandomize": False,
}
settings.register_profile("ci", max_examples=10_000, **_COMMON)
settings.register_profile("dev", max_examples=300, **_COMMON)
_CI = os.environ.get("CI") or os.environ.get("TONGBU_REQUIRE_SERVICES")
PROFILE = os.environ.get("TONGBU_FUZZ_PROFILE") or ("ci" if _CI else "dev")
FUZZ = settings.get_profile(PROFILE)
# The two grammar-driven properties draw half as many (their inputs cost more to generate).
FUZZ_HALF = settings(FUZZ, max_examples=max(1, FUZZ.max_examples // 2))

FORM = FORMS["sal_saleorder"]  # header, entry and joined customer fields: every SQL shape
FIELDS = sorted({fd.key for fd in FORM.fields.values()})
DB_ERROR = 6  # the msg_code the store gives SQLite's own errors: must never come from valid input


@pytest.fixture(scope="module")
def store() -> Iterator[KingdeeStore]:
    s = KingdeeStore(1, {"BD_Customer": 3, "SAL_SaleOrder": 3, "AR_receivable": 0})
    s.populate(FaultConfig())
    yield s
    s.close()


def run(store: KingdeeStore, text: str) -> None:
    store.execute_bill_query(
        {"FormId": "SAL_SaleOrder", "FieldKeys": "FID,FSaleOrderEntry_FQty", "FilterString": text}
    )


# -- inputs in the documented grammar --------------------------------------------------------------------
_literal = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda f: f"{f:.3f}"),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12).map(
        lambda s: "'" + s.replace("'", "''") + "'"
    ),
    st.datetimes().map(lambda d: f"'{d:%Y-%m-%d %H:%M:%S}.{d.microsecond // 1000:03d}'"),
    st.just("NULL"),
    st.sampled_from(FIELDS),  # a field on the right-hand side
)
_field = st.sampled_from(FIELDS)
_compare = st.one_of(
    st.tuples(_field, st.sampled_from(["=", "<>", "!=", ">", ">=", "<", "<="]), _literal).map(" ".join),
    st.tuples(
        _field, st.sampled_from(["LIKE", "NOT LIKE"]), _literal.filter(lambda v: v.startswith("'"))
    ).map(" ".join),
    st.tuples(_field, st.sampled_from(["IN", "NOT IN"]), st.lists(_literal, min_size=1, max_size=5)).map(
        lambda t: f"{t[0]} {t[1]} ({', '.join(t[2])})"
    ),
    st.tuples(_field, st.sampled_from(["BETWEEN", "NOT BETWEEN"]), _literal, _literal).map(
        lambda t: f"{t[0]} {t[1]} {t[2]} AND {t[3]}"
    ),
    st.tuples(_field, st.sampled_from(["IS NULL", "IS NOT NULL"])).map(" ".join),
)
grammar = st.recursive(
    _compare,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["AND", "OR", "and", "Or"]), inner).map(" ".join),
        inner.map(lambda x: f"NOT {x}"),
        inner.map(lambda x: f"({x})"),
    ),
    max_leaves=12,
)

# -- inputs made of the grammar's own pieces, in any order ----------------------------------------------
_pieces = st.sampled_from(
    ["(", ")", ",", "'", "''", "N'", "=", "<>", "!=", ">=", "<", "AND", "OR", "NOT", "IN", "LIKE", "IS",
     "NULL", "BETWEEN", " ", "FID", "FDate", "FCustId.FName", "FSaleOrderEntry_FQty", "-1", "3.5",
     "'2024-05-01'", "'x'", "\t", "\n", "中文", "%", "FNope"]
)  # fmt: skip
token_soup = st.lists(_pieces, max_size=60).map("".join)


@FUZZ_HALF
@given(text=grammar)
def test_documented_grammar_becomes_valid_sql(store: KingdeeStore, text: str) -> None:
    try:
        run(store, text)
    except QueryError as exc:
        # a literal the field's type cannot take (Kingdee rejects these too); never SQLite failing
        assert exc.msg_code != DB_ERROR, (text, exc.message)


@FUZZ
@given(text=st.one_of(token_soup, st.text(max_size=300)))
def test_any_text_is_rows_or_a_query_error(store: KingdeeStore, text: str) -> None:
    try:
        run(store, text)
    except QueryError as exc:
        assert exc.message and exc.msg_code != DB_ERROR, (text, exc.message)


@FUZZ
@given(
    text=grammar, cut=st.integers(0, 400), insert=st.sampled_from(["(", ")", "'", " AND", "NOT ", ",", ""])
)
def test_damaged_filters_are_rows_or_a_query_error(
    store: KingdeeStore, text: str, cut: int, insert: str
) -> None:
    damaged = text[:cut] + insert + text[cut + 1 :]
    try:
        run(store, damaged)
    except QueryError as exc:
        assert exc.msg_code != DB_ERROR, (damaged, exc.message)


@pytest.mark.parametrize(
    "text",
    [
        "(" * 50_000,
        "NOT " * 20_000,
        "N'" + "''" * 40_000,
        "'" * 99_999,
        "FID IN (" + "1," * 40_000,
        "FID = 1 AND " * 8_000 + "FID = 1",
        "x" * 100_001,
    ],
    ids=["parens", "nots", "quotes", "odd-quotes", "open-in", "long-and", "too-long"],
)
def test_adversarial_inputs_are_rejected_or_answered_in_one_pass(text: str) -> None:
    # Each is one linear pass; the benchmark-free check is that it ends, with a documented outcome.
    started = time.perf_counter()
    with contextlib.suppress(QueryError):
        FilterTranslator(FORM).translate(text)
    elapsed = time.perf_counter() - started
    print(f"{len(text):>7} chars: {elapsed * 1000:.1f} ms")  # for the report, not asserted
