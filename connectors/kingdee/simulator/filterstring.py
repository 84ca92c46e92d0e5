"""Kingdee FilterString (a SQL-like subset) -> a parameterised SQLite condition.

The input comes from clients, so the parser is built not to be slow or deep (issue 17): one pass of
a tokenizer whose alternatives are disjoint (no backtracking blow-up), a recursive-descent parser
with an explicit nesting limit, and hard caps on the text, the tokens and the bound values. Every
rejection is a :class:`QueryError` (Kingdee's own reply to a bad filter), never another exception.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from connectors.kingdee.simulator.forms import (
    MSG_BAD_PARAM,
    FieldDef,
    FormDef,
    QueryError,
    parse_literal_ms,
)

#: the longest FilterString accepted (an ``IN`` list of a few thousand ids still fits)
MAX_FILTER_CHARS = 100_000
#: the deepest nesting of parentheses and ``NOT``
MAX_DEPTH = 64
#: the most literal values one filter may bind (SQLite allows 32,766 per statement)
MAX_PARAMS = 10_000

_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<str>[Nn]?'(?:[^']|'')*')
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<op><>|!=|>=|<=|=|>|<)
      | (?P<punct>[(),])
      | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
_TOO_DEEP = f"过滤条件嵌套过深：最多 {MAX_DEPTH} 层括号或 NOT"
_KEYWORDS = {"and", "or", "not", "like", "in", "is", "null", "between"}


class _Tok(NamedTuple):
    kind: str  # str | num | op | punct | name | kw | end
    value: str


def _tokenize(text: str) -> list[_Tok]:
    if len(text) > MAX_FILTER_CHARS:
        raise QueryError(f"过滤条件过长：{len(text)} 个字符，最多 {MAX_FILTER_CHARS} 个", MSG_BAD_PARAM)
    toks: list[_Tok] = []
    pos = 0
    depth = 0  # open parentheses, checked here so a wall of "(((" fails before it is parsed
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise QueryError(f"过滤条件语法错误：位置 {pos} 附近 “{text[pos : pos + 20]}”")
        pos = m.end()
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "str":
            value = value[value.index("'") + 1 : -1].replace("''", "'")
        elif kind == "name" and value.lower() in _KEYWORDS:
            kind, value = "kw", value.lower()
        elif kind == "punct" and value != ",":
            depth += 1 if value == "(" else -1
            if depth > MAX_DEPTH:
                raise QueryError(_TOO_DEEP, MSG_BAD_PARAM)
        toks.append(_Tok(kind, value))
    toks.append(_Tok("end", ""))
    return toks


class FilterTranslator:
    """Translates a Kingdee FilterString (SQL-like subset) into a parameterised SQLite condition.

    Supported: ``= <> != > >= < <=``, ``[NOT] LIKE``, ``[NOT] IN (...)``, ``IS [NOT] NULL``,
    ``BETWEEN x AND y``, ``AND``/``OR``/``NOT``, parentheses, quoted strings (``''`` escapes, ``N'..'``),
    numbers, and datetime literals compared with datetime fields (``'2024-05-01 10:20:30[.fff]'``).
    ``= NULL`` / ``<> NULL`` read as ``IS [NOT] NULL``; any other comparison with NULL matches no row,
    as in SQL Server. Limits: :data:`MAX_FILTER_CHARS`, :data:`MAX_DEPTH`, :data:`MAX_PARAMS`.
    """

    def __init__(self, form: FormDef) -> None:
        self.form = form
        self.used: list[FieldDef] = []
        self.params: list[Any] = []
        self._depth = 0

    def translate(self, text: str) -> str:
        """SQL for ``text`` (empty text -> ``1=1``); raises :class:`QueryError` on bad input."""
        if not text or not text.strip():
            return "1=1"
        self._toks = _tokenize(text)
        self._i = 0
        self._depth = 0
        sql = self._or()
        if self._peek().kind != "end":
            raise QueryError(f"过滤条件语法错误：多余的 “{self._peek().value}”")
        return sql

    # recursive descent --------------------------------------------------------------------------
    def _peek(self) -> _Tok:
        return self._toks[self._i]

    def _next(self) -> _Tok:
        tok = self._toks[self._i]
        self._i += 1
        return tok

    def _accept_kw(self, word: str) -> bool:
        tok = self._peek()
        if tok.kind == "kw" and tok.value == word:
            self._i += 1
            return True
        return False

    def _expect(self, kind: str, value: str | None = None) -> _Tok:
        tok = self._next()
        if tok.kind != kind or (value is not None and tok.value != value):
            raise QueryError(f"过滤条件语法错误：期望 “{value or kind}”，实际为 “{tok.value or 'end'}”")
        return tok

    def _or(self) -> str:
        parts = [self._and()]
        while self._accept_kw("or"):
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def _and(self) -> str:
        parts = [self._not()]
        while self._accept_kw("and"):
            parts.append(self._not())
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def _not(self) -> str:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise QueryError(_TOO_DEEP, MSG_BAD_PARAM)
        try:
            return self._not_inner()
        finally:
            self._depth -= 1

    def _not_inner(self) -> str:
        if self._accept_kw("not"):
            return f"(NOT {self._not()})"
        tok = self._peek()
        if tok.kind == "punct" and tok.value == "(":
            self._next()
            inner = self._or()
            self._expect("punct", ")")
            return f"({inner})"
        return self._comparison()

    def _field(self) -> FieldDef:
        tok = self._next()
        if tok.kind != "name":
            raise QueryError(f"过滤条件语法错误：期望字段名，实际为 “{tok.value or 'end'}”")
        fd = self.form.field(tok.value)
        self.used.append(fd)
        return fd

    def _value(self, fd: FieldDef) -> str:
        """A literal (or another field) on the right-hand side, coerced to ``fd``'s kind."""
        tok = self._next()
        if tok.kind == "name":
            other = self.form.field(tok.value)
            self.used.append(other)
            return other.sql
        if tok.kind == "kw" and tok.value == "null":
            return "NULL"
        if tok.kind not in ("str", "num"):
            raise QueryError(f"过滤条件语法错误：期望值，实际为 “{tok.value or 'end'}”")
        return self._bind(self._coerce(fd, tok))

    def _coerce(self, fd: FieldDef, tok: _Tok) -> Any:
        if fd.kind == "datetime":
            ms = parse_literal_ms(tok.value)
            if ms is None:
                raise QueryError(f"从字符串转换日期和/或时间时，转换失败。（{tok.value}）")
            return ms
        if fd.kind in ("int", "decimal"):
            try:
                number = float(tok.value)
            except ValueError:
                raise QueryError(f"从数据类型 varchar 转换为 numeric 时出错。（{tok.value}）") from None
            # an integer beyond SQLite's 64 bits is compared as a float, as SQL Server's numeric would
            fits = number.is_integer() and abs(number) < 2**63
            return int(number) if fd.kind == "int" and fits else number
        return tok.value

    def _comparison(self) -> str:
        fd = self._field()
        tok = self._next()
        if tok.kind == "op":
            op = "<>" if tok.value == "!=" else tok.value
            rhs = self._value(fd)
            if rhs == "NULL" and op in ("=", "<>"):
                return f"{fd.sql} IS {'NOT ' if op == '<>' else ''}NULL"
            return f"{fd.sql} {op} {rhs}"  # ``> NULL`` is unknown for every row: nothing matches
        negate = False
        if tok.kind == "kw" and tok.value == "not":
            negate, tok = True, self._next()
        if tok.kind == "kw" and tok.value == "like":
            pattern = self._expect("str").value
            self._bind(pattern)
            return f"{fd.sql} {'NOT ' if negate else ''}LIKE ?"
        if tok.kind == "kw" and tok.value == "in":
            self._expect("punct", "(")
            items = [self._value(fd)]
            while self._peek().kind == "punct" and self._peek().value == ",":
                self._next()
                items.append(self._value(fd))
            self._expect("punct", ")")
            return f"{fd.sql} {'NOT ' if negate else ''}IN ({', '.join(items)})"
        if tok.kind == "kw" and tok.value == "between":
            low = self._value(fd)
            self._expect("kw", "and")
            high = self._value(fd)
            return f"{fd.sql} {'NOT ' if negate else ''}BETWEEN {low} AND {high}"
        if tok.kind == "kw" and tok.value == "is" and not negate:
            neg = self._accept_kw("not")
            self._expect("kw", "null")
            return f"{fd.sql} IS {'NOT ' if neg else ''}NULL"
        raise QueryError(f"过滤条件语法错误：字段 {fd.key} 后不支持 “{tok.value or 'end'}”")

    def _bind(self, value: Any) -> str:
        if len(self.params) >= MAX_PARAMS:
            raise QueryError(f"过滤条件中的值过多：最多 {MAX_PARAMS} 个", MSG_BAD_PARAM)
        self.params.append(value)
        return "?"


_ARRAY_COMPARE = {"=", "<>", "!=", ">", ">=", "<", "<=", "like", "not like", "in", "not in"}


def filter_array_to_string(items: list[dict[str, Any]]) -> str:
    """The newer array form ``[{"Left","FieldName","Compare","Value","Right","Logic"}]`` as text.

    Only symbolic ``Compare`` operators are understood; Kingdee's numeric compare codes are not
    publicly documented, so they are rejected with a clear error instead of being guessed.
    """
    parts: list[str] = []
    if not isinstance(items, list):
        raise QueryError("FilterString 数组格式错误：应为对象数组", MSG_BAD_PARAM)
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("FieldName"), str):
            raise QueryError(f"FilterString 数组第 {i + 1} 项缺少 FieldName", MSG_BAD_PARAM)
        compare = str(item.get("Compare", "=")).strip().lower()
        if compare not in _ARRAY_COMPARE:
            raise QueryError(
                f"不支持的比较符 Compare={item.get('Compare')!r}（请使用 = <> > >= < <= like in）"
            )
        value = item.get("Value", "")
        if compare.endswith("in"):
            vals = value if isinstance(value, list) else str(value).split(",")
            rendered = "(" + ",".join("'" + str(v).strip().replace("'", "''") + "'" for v in vals) + ")"
        else:
            rendered = "'" + str(value).replace("'", "''") + "'"
        if i:
            parts.append("OR" if str(item.get("Logic", "0")) in ("1", "or", "OR") else "AND")
        parts.append(f"{item.get('Left', '')}{item['FieldName']} {compare} {rendered}{item.get('Right', '')}")
    return " ".join(parts)
