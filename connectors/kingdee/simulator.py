"""A local Kingdee K/3 Cloud (金蝶云星空) WebAPI server for tests, demos and benchmarks.

It speaks the documented wire protocol (``../shared/research/external-apis.md`` §2):

* ``POST /k3cloud/Kingdee.BOS.WebApi.ServicesStub.AuthService.ValidateUser.common.kdsvc`` and
  ``...AuthService.LoginByAppSecret.common.kdsvc`` log in and set the ``kdservice-sessionid`` and
  ``ASP.NET_SessionId`` cookies (``LoginResultType`` 1 = success, 0 = failure with ``Message``);
* ``...DynamicFormService.ExecuteBillQuery.common.kdsvc`` answers ``FormId`` / ``FieldKeys`` /
  ``FilterString`` / ``OrderString`` / ``StartRow`` / ``Limit`` / ``TopRowCount`` with an array of
  arrays in FieldKeys order, one row per entry line when an entry field is asked for;
  ``...BillQuery...`` returns the same rows as objects; ``...View...`` returns one entity;
* errors come back as HTTP 200 with ``Result.ResponseStatus`` (nested ``[[{...}]]`` for queries):
  "会话信息已丢失，请重新登录" when the session is gone, ``MsgCode`` 14 when throttled.

Data lives in a SQLite file in a private temp directory, generated deterministically from the seed in
chunks, so a million records need neither much memory nor much time. Three forms are served:
``BD_Customer`` (客户), ``SAL_SaleOrder`` (销售订单, header + ``FSaleOrderEntry`` lines) and
``AR_receivable`` (应收单).

Fault switches (``--faults``; rates are probabilities per request, drawn from a seeded RNG):

* ``throttle=R``: ``MsgCode`` 14 (调用限制) on a query/view;
* ``session_expiry=N``: a session is dropped after serving N queries (the next one gets the nested
  "会话信息已丢失" error); ``session_idle=S`` sets the idle timeout (default 1200 s);
* ``http_5xx=R``: HTTP 500/502/503 with an IIS-style text body;
* ``slow=S``: every service call waits S seconds first;
* ``timeout=R`` (+ ``hang=S``, default 120): the call hangs S seconds, then answers 504 unprocessed;
* ``same_second=F``: a fraction F of the seeded records (or F records when F > 1; the bare switch
  means 25 %) share one ``FModifyDate`` to the millisecond;
* ``malformed=R``: a fraction R of the seeded records carries a bad value (unparsable date,
  non-numeric amount, invalid credit code or missing name); ``truth()`` names the defect;
* ``null_modify_date=R``: a fraction R of the seeded records (R records when R > 1) has a NULL
  ``FModifyDate`` (never-modified rows on some K/3 Cloud versions).

A control API (``/_sim/...``) and the matching Python methods (:meth:`KingdeeSimulator.modify`,
``insert``, ``counts``, ``truth``, ``stats``, ``set_faults``, ``expire_sessions``) let tests and the
demo change data and read the ground truth.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import re
import secrets
import shutil
import sqlite3
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from connectors.kit import uscc
from connectors.simulators.base import FaultConfig, Simulator

SERVICE_PREFIX = "Kingdee.BOS.WebApi.ServicesStub."
VALIDATE_USER = "AuthService.ValidateUser"
LOGIN_BY_APP_SECRET = "AuthService.LoginByAppSecret"
EXECUTE_BILL_QUERY = "DynamicFormService.ExecuteBillQuery"
BILL_QUERY = "DynamicFormService.BillQuery"
VIEW = "DynamicFormService.View"

SESSION_COOKIE = "kdservice-sessionid"
ASPNET_COOKIE = "ASP.NET_SessionId"
SESSION_LOST_MESSAGE = "会话信息已丢失，请重新登录"
THROTTLE_MESSAGE = "接口调用超过限制（调用限制），请稍后再试"
MAX_LIMIT = 10000  # documented cap of ``Limit``
DEFAULT_LIMIT = 2000
LCID_ZH_CN = 2052

# MsgCode values (Kingdee API doc): 1 上下文丢失, 4 异常, 8 参数错误, 9 指定字段/值不存在,
# 10 未找到对应数据, 14 调用限制.
MSG_SESSION_LOST, MSG_EXCEPTION, MSG_BAD_PARAM, MSG_NO_FIELD, MSG_NOT_FOUND, MSG_THROTTLED = (
    1,
    4,
    8,
    9,
    10,
    14,
)

_EPOCH = dt.datetime(1970, 1, 1)
_CST = dt.timezone(dt.timedelta(hours=8))
_SEED_FROM = dt.datetime(2023, 1, 1)
_SEED_TO = dt.datetime(2025, 6, 30, 23, 59, 59)
_SAME_SECOND = dt.datetime(2024, 6, 28, 18, 0, 0)  # a bulk job stamped many rows at once
_FOUND_FROM = (dt.datetime(1993, 1, 1) - dt.datetime(1970, 1, 1)).days * 86_400_000

_CHUNK = 20_000


# -- time helpers (Kingdee times are naive server-local times, interpreted as +08:00) -------------
def _ms(value: dt.datetime) -> int:
    """Naive local datetime -> integer milliseconds (how the simulator stores datetimes)."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def kd_format(ms: int) -> str:
    """Milliseconds -> Kingdee's JSON datetime text: ``2024-05-02T10:11:12.347`` (no offset)."""
    text = (_EPOCH + dt.timedelta(milliseconds=ms)).isoformat(timespec="seconds")
    frac = ms % 1000
    if frac:
        text += f".{frac:03d}".rstrip("0")
    return text


_LITERAL_RE = re.compile(
    r"^\s*(\d{4})[-/](\d{1,2})[-/](\d{1,2})"
    r"(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?)?\s*$"
)


def parse_literal_ms(text: str) -> int | None:
    """Parse a FilterString datetime literal (``'2024-05-01'``, ``'2024-05-01 10:20:30.5'``)."""
    m = _LITERAL_RE.match(text)
    if not m:
        return None
    y, mo, d, h, mi, s, frac = m.groups()
    try:
        value = dt.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0))
    except ValueError:
        return None
    return _ms(value) + (int((frac or "0").ljust(3, "0")[:3]))


def _select_expr(fd: FieldDef) -> str:
    """SELECT expression for a field; datetimes are formatted in SQL (C speed) as :func:`kd_format`
    does, and malformed text in a datetime column passes through unchanged."""
    if fd.kind != "datetime":
        return fd.sql
    x = fd.sql
    return (
        f"CASE WHEN typeof({x}) = 'integer' THEN strftime('%Y-%m-%dT%H:%M:%S', {x} / 1000, 'unixepoch') || "
        f"CASE WHEN {x} % 1000 = 0 THEN '' ELSE rtrim(printf('.%03d', {x} % 1000), '0') END ELSE {x} END"
    )


def _now_local_ms() -> int:
    return _ms(dt.datetime.now(_CST).replace(tzinfo=None))


# -- forms -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FieldDef:
    """One queryable FieldKey of a form and where its value lives."""

    key: str  # canonical FieldKey, e.g. "FCustId.FNumber" or "FSaleOrderEntry_FQty"
    sql: str  # SQL expression
    kind: str  # "int" | "text" | "datetime" | "decimal"
    entry: bool = False  # an entry (line) field: querying it returns one row per line
    join: str | None = None  # alias of an extra joined table ("c" = customers)


@dataclass
class FormDef:
    """A business object (表单) served by the simulator."""

    form_id: str
    table: str
    pk: str
    columns: tuple[str, ...]
    kinds: dict[str, str]
    number_column: str
    entry_table: str | None = None
    entry_name: str | None = None  # e.g. "FSaleOrderEntry"
    entry_pk: str | None = None
    entry_columns: tuple[str, ...] = ()
    entry_kinds: dict[str, str] = field(default_factory=dict)
    customer_ref: str | None = None  # header column holding the customer's internal id
    fields: dict[str, FieldDef] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def key_of(column: str) -> str:
            for suffix in ("_FNumber", "_FName", "_FSpecification"):
                if column.endswith(suffix):
                    return column[: -len(suffix)] + "." + suffix[1:]
            return column

        for col in self.columns:
            if col.startswith("_"):
                continue
            self._add(FieldDef(key_of(col), f'h."{col}"', self.kinds.get(col, "text")))
        if self.entry_table:
            for col in self.entry_columns:
                if col == "FID":
                    continue
                fd = FieldDef(
                    f"{self.entry_name}_{key_of(col)}", f'e."{col}"', self.entry_kinds.get(col, "text"), True
                )
                self._add(fd)
                # Kingdee entry field keys are unique within a form, so they also work unprefixed.
                self._add(FieldDef(key_of(col), fd.sql, fd.kind, True), alias=True)
        if self.customer_ref:
            for sub in ("FNumber", "FName"):
                self._add(FieldDef(f"{self.customer_ref}.{sub}", f'c."{sub}"', "text", join="c"))

    def _add(self, fd: FieldDef, alias: bool = False) -> None:
        lower = fd.key.lower()
        if alias and lower in self.fields:
            return
        self.fields[lower] = fd

    def field(self, key: str) -> FieldDef:
        try:
            return self.fields[key.strip().lower()]
        except KeyError:
            raise QueryError(f"字段不存在：{key.strip()}（表单 {self.form_id}）", MSG_NO_FIELD) from None


CUSTOMER_COLUMNS = (
    "FCUSTID",
    "FNumber",
    "FName",
    "FShortName",
    "FSOCIALCRECODE",
    "FTAXREGISTERCODE",
    "FLegalPerson",
    "FRegisterFund",
    "FFoundDate",
    "FTEL",
    "FFAX",
    "FADDRESS",
    "FZIP",
    "FWEBSITE",
    "FDomains",
    "FCOUNTRY_FNumber",
    "FCOUNTRY_FName",
    "FPROVINCIAL_FNumber",
    "FPROVINCIAL_FName",
    "FCustTypeId_FNumber",
    "FCustTypeId_FName",
    "FGroup_FNumber",
    "FGroup_FName",
    "FSELLER",
    "FSELLER_FNumber",
    "FSELLER_FName",
    "FSALDEPTID_FNumber",
    "FSALDEPTID_FName",
    "FTRADINGCURRID",
    "FTRADINGCURRID_FNumber",
    "FTRADINGCURRID_FName",
    "FCreateOrgId",
    "FCreateOrgId_FNumber",
    "FUseOrgId",
    "FUseOrgId_FNumber",
    "FDocumentStatus",
    "FForbidStatus",
    "FCreateDate",
    "FModifyDate",
    "FApproveDate",
    "_malformed",
)
ORDER_COLUMNS = (
    "FID",
    "FBillNo",
    "FBillTypeID_FNumber",
    "FBillTypeID_FName",
    "FDate",
    "FCustId",
    "FSaleOrgId",
    "FSaleOrgId_FNumber",
    "FSaleOrgId_FName",
    "FSaleDeptId_FNumber",
    "FSaleDeptId_FName",
    "FSalerId",
    "FSalerId_FNumber",
    "FSalerId_FName",
    "FSettleCurrId_FNumber",
    "FSettleCurrId_FName",
    "FBillAllAmount",
    "FDocumentStatus",
    "FCloseStatus",
    "FCancelStatus",
    "FLinkMan",
    "FLinkPhone",
    "FReceiveAddress",
    "FNote",
    "FCreateDate",
    "FModifyDate",
    "FApproveDate",
    "_malformed",
)
ORDER_LINE_COLUMNS = (
    "FEntryID",
    "FID",
    "FSeq",
    "FMaterialId",
    "FMaterialId_FNumber",
    "FMaterialId_FName",
    "FMaterialId_FSpecification",
    "FUnitID_FNumber",
    "FUnitID_FName",
    "FQty",
    "FPrice",
    "FTaxPrice",
    "FEntryTaxRate",
    "FAmount",
    "FAllAmount",
    "FDeliveryDate",
)
RECEIVABLE_COLUMNS = (
    "FID",
    "FBillNo",
    "FBillTypeID_FNumber",
    "FBillTypeID_FName",
    "FDATE",
    "FENDDATE_H",
    "FCUSTOMERID",
    "FCURRENCYID_FNumber",
    "FCURRENCYID_FName",
    "FSETTLEORGID_FNumber",
    "FSALEORGID_FNumber",
    "FALLAMOUNTFOR",
    "FWRITTENOFFSTATUS",
    "FWRITTENOFFAMOUNTFOR",
    "FNOTWRITTENOFFAMOUNTFOR",
    "FORDERNUMBER",
    "FDocumentStatus",
    "FCancelStatus",
    "FCreateDate",
    "FModifyDate",
    "FApproveDate",
    "_malformed",
)

_DT = "datetime"
_INT = "int"
_DEC = "decimal"


def _build_forms() -> dict[str, FormDef]:
    customers = FormDef(
        "BD_Customer",
        "customers",
        "FCUSTID",
        CUSTOMER_COLUMNS,
        {
            "FCUSTID": _INT,
            "FFoundDate": _DT,
            "FSELLER": _INT,
            "FTRADINGCURRID": _INT,
            "FCreateOrgId": _INT,
            "FUseOrgId": _INT,
            "FCreateDate": _DT,
            "FModifyDate": _DT,
            "FApproveDate": _DT,
        },
        number_column="FNumber",
    )
    orders = FormDef(
        "SAL_SaleOrder",
        "sale_orders",
        "FID",
        ORDER_COLUMNS,
        {
            "FID": _INT,
            "FDate": _DT,
            "FCustId": _INT,
            "FSaleOrgId": _INT,
            "FSalerId": _INT,
            "FBillAllAmount": _DEC,
            "FCreateDate": _DT,
            "FModifyDate": _DT,
            "FApproveDate": _DT,
        },
        number_column="FBillNo",
        entry_table="sale_order_lines",
        entry_name="FSaleOrderEntry",
        entry_pk="FEntryID",
        entry_columns=ORDER_LINE_COLUMNS,
        entry_kinds={
            "FEntryID": _INT,
            "FSeq": _INT,
            "FMaterialId": _INT,
            "FQty": _DEC,
            "FPrice": _DEC,
            "FTaxPrice": _DEC,
            "FEntryTaxRate": _DEC,
            "FAmount": _DEC,
            "FAllAmount": _DEC,
            "FDeliveryDate": _DT,
        },
        customer_ref="FCustId",
    )
    receivables = FormDef(
        "AR_receivable",
        "receivables",
        "FID",
        RECEIVABLE_COLUMNS,
        {
            "FID": _INT,
            "FDATE": _DT,
            "FENDDATE_H": _DT,
            "FCUSTOMERID": _INT,
            "FALLAMOUNTFOR": _DEC,
            "FWRITTENOFFAMOUNTFOR": _DEC,
            "FNOTWRITTENOFFAMOUNTFOR": _DEC,
            "FCreateDate": _DT,
            "FModifyDate": _DT,
            "FApproveDate": _DT,
        },
        number_column="FBillNo",
        customer_ref="FCUSTOMERID",
    )
    return {f.form_id.lower(): f for f in (customers, orders, receivables)}


FORMS = _build_forms()
_FORM_ALIASES = {"customers": "bd_customer", "sales_orders": "sal_saleorder", "receivables": "ar_receivable"}


def _form(name: str) -> FormDef:
    key = _FORM_ALIASES.get(name.lower(), name.lower())
    try:
        return FORMS[key]
    except KeyError:
        raise QueryError(f"业务对象不存在：{name}", MSG_BAD_PARAM) from None


# -- FilterString ----------------------------------------------------------------------------------
class QueryError(Exception):
    """A query the server rejects; becomes a ``ResponseStatus`` error with ``msg_code``."""

    def __init__(self, message: str, msg_code: int = MSG_EXCEPTION) -> None:
        super().__init__(message)
        self.message = message
        self.msg_code = msg_code


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
_KEYWORDS = {"and", "or", "not", "like", "in", "is", "null", "between"}


@dataclass
class _Tok:
    kind: str  # str | num | op | punct | name | kw | end
    value: str


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
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
        toks.append(_Tok(kind, value))
    toks.append(_Tok("end", ""))
    return toks


class FilterTranslator:
    """Translates a Kingdee FilterString (SQL-like subset) into a parameterised SQLite condition.

    Supported: ``= <> != > >= < <=``, ``[NOT] LIKE``, ``[NOT] IN (...)``, ``IS [NOT] NULL``,
    ``BETWEEN x AND y``, ``AND``/``OR``/``NOT``, parentheses, quoted strings (``''`` escapes, ``N'..'``),
    numbers, and datetime literals compared with datetime fields (``'2024-05-01 10:20:30[.fff]'``).
    """

    def __init__(self, form: FormDef) -> None:
        self.form = form
        self.used: list[FieldDef] = []
        self.params: list[Any] = []

    def translate(self, text: str) -> str:
        """SQL for ``text`` (empty text -> ``1=1``); raises :class:`QueryError` on bad input."""
        if not text or not text.strip():
            return "1=1"
        self._toks = _tokenize(text)
        self._i = 0
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
        self.params.append(self._coerce(fd, tok))
        return "?"

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
            return int(number) if fd.kind == "int" and number.is_integer() else number
        return tok.value

    def _comparison(self) -> str:
        fd = self._field()
        tok = self._next()
        if tok.kind == "op":
            op = "<>" if tok.value == "!=" else tok.value
            rhs = self._value(fd)
            if rhs == "NULL":
                return f"{fd.sql} IS {'NOT ' if op == '<>' else ''}NULL"
            return f"{fd.sql} {op} {rhs}"
        negate = False
        if tok.kind == "kw" and tok.value == "not":
            negate, tok = True, self._next()
        if tok.kind == "kw" and tok.value == "like":
            pattern = self._expect("str").value
            self.params.append(pattern)
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


_ARRAY_COMPARE = {"=", "<>", "!=", ">", ">=", "<", "<=", "like", "not like", "in", "not in"}


def filter_array_to_string(items: list[dict[str, Any]]) -> str:
    """The newer array form ``[{"Left","FieldName","Compare","Value","Right","Logic"}]`` as text.

    Only symbolic ``Compare`` operators are understood; Kingdee's numeric compare codes are not
    publicly documented, so they are rejected with a clear error instead of being guessed.
    """
    parts: list[str] = []
    for i, item in enumerate(items):
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


# -- realistic Chinese master data -------------------------------------------------------------------
# (city, province, administrative division code, telephone area code, postcode, districts)
_CITIES = (
    ("上海", "上海市", "310115", "021", "200120", ("浦东新区", "闵行区", "徐汇区", "嘉定区", "松江区")),
    ("北京", "北京市", "110105", "010", "100020", ("朝阳区", "海淀区", "丰台区", "大兴区")),
    ("深圳", "广东省", "440305", "0755", "518057", ("南山区", "宝安区", "龙岗区", "福田区")),
    ("广州", "广东省", "440106", "020", "510630", ("天河区", "黄埔区", "番禺区", "白云区")),
    ("杭州", "浙江省", "330106", "0571", "310012", ("西湖区", "滨江区", "余杭区", "萧山区")),
    ("苏州", "江苏省", "320506", "0512", "215000", ("吴中区", "工业园区", "相城区", "吴江区")),
    ("成都", "四川省", "510107", "028", "610041", ("武侯区", "高新区", "双流区", "郫都区")),
    ("武汉", "湖北省", "420106", "027", "430071", ("武昌区", "洪山区", "东西湖区", "江夏区")),
    ("青岛", "山东省", "370202", "0532", "266001", ("市南区", "黄岛区", "城阳区", "李沧区")),
    ("西安", "陕西省", "610113", "029", "710061", ("雁塔区", "未央区", "长安区", "高新区")),
    ("南京", "江苏省", "320105", "025", "210019", ("建邺区", "江宁区", "鼓楼区", "浦口区")),
    ("天津", "天津市", "120116", "022", "300450", ("滨海新区", "西青区", "东丽区", "津南区")),
    ("重庆", "重庆市", "500112", "023", "401120", ("渝北区", "江北区", "九龙坡区", "沙坪坝区")),
    ("宁波", "浙江省", "330212", "0574", "315100", ("鄞州区", "北仑区", "镇海区", "江北区")),
    ("东莞", "广东省", "441900", "0769", "523000", ("长安镇", "松山湖", "虎门镇", "塘厦镇")),
    ("佛山", "广东省", "440606", "0757", "528300", ("顺德区", "南海区", "禅城区")),
    ("无锡", "江苏省", "320214", "0510", "214000", ("新吴区", "滨湖区", "惠山区", "梁溪区")),
    ("长沙", "湖南省", "430104", "0731", "410000", ("岳麓区", "雨花区", "开福区")),
    ("郑州", "河南省", "410105", "0371", "450000", ("金水区", "中原区", "管城回族区")),
    ("合肥", "安徽省", "340104", "0551", "230000", ("蜀山区", "包河区", "庐阳区")),
    ("厦门", "福建省", "350206", "0592", "361000", ("湖里区", "思明区", "集美区")),
    ("济南", "山东省", "370112", "0531", "250000", ("历下区", "历城区", "槐荫区")),
)
_TRADE_CHARS = (
    "华瑞恒鑫达盛泰宏嘉创博源德信永丰汇安联科航远众诚润天晨海凯卓启明锦佳腾峰骏东新正和美星弘睿铭宇晟昊磊"
)
# (name part, 行业 FDomains)
_INDUSTRIES = (
    ("机电设备", "制造业"),
    ("电子科技", "电子信息"),
    ("精密机械", "制造业"),
    ("新材料", "新材料"),
    ("生物医药", "医药"),
    ("信息技术", "信息技术"),
    ("建设工程", "建筑业"),
    ("物流", "交通运输"),
    ("食品", "食品饮料"),
    ("环保科技", "节能环保"),
    ("汽车零部件", "汽车"),
    ("化工", "化工"),
    ("医疗器械", "医疗器械"),
    ("新能源", "能源"),
    ("纺织", "纺织服装"),
    ("贸易", "批发零售"),
    ("智能装备", "制造业"),
    ("自动化", "制造业"),
    ("电气", "电力设备"),
    ("光电", "电子信息"),
    ("软件", "信息技术"),
    ("包装材料", "制造业"),
    ("模具", "制造业"),
    ("仪器仪表", "制造业"),
    ("五金", "制造业"),
)
_COMPANY_SUFFIXES = ("有限公司", "有限公司", "有限公司", "股份有限公司", "有限责任公司")
_ROADS = (
    "人民路",
    "建设路",
    "科技路",
    "创新大道",
    "工业园路",
    "中山路",
    "解放路",
    "长江路",
    "滨河路",
    "发展大道",
    "高新大道",
    "金桥路",
)
_SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕"
_GIVEN = (
    "伟",
    "芳",
    "娜",
    "秀英",
    "敏",
    "静",
    "丽",
    "强",
    "磊",
    "军",
    "洋",
    "勇",
    "艳",
    "杰",
    "娟",
    "涛",
    "明",
    "超",
    "秀兰",
    "霞",
    "平",
    "刚",
    "桂英",
    "建华",
    "志强",
    "文",
    "斌",
    "鹏",
    "晓东",
    "海燕",
    "子涵",
    "浩然",
)
_DEPTS = (
    ("BM001", "华东销售部"),
    ("BM002", "华南销售部"),
    ("BM003", "华北销售部"),
    ("BM004", "西南销售部"),
    ("BM005", "华中销售部"),
    ("BM006", "大客户部"),
)
_SELLERS = tuple(
    (100_500 + i, f"YG{i + 1:04d}", name, _DEPTS[i % len(_DEPTS)])
    for i, name in enumerate(
        ("张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵强", "黄敏", "周杰", "吴婷", "徐涛", "孙丽")
    )
)
_CUST_TYPES = (("KHLB001_SYS", "普通销售客户"),) * 8 + (
    ("KHLB002_SYS", "寄售客户"),
    ("KHLB003_SYS", "内部结算客户"),
)
_GROUPS = (
    ("A", "A类客户"),
    ("B", "B类客户"),
    ("B", "B类客户"),
    ("C", "C类客户"),
    ("C", "C类客户"),
    ("C", "C类客户"),
)
_CURRENCIES = ((1, "PRE001", "人民币"),) * 9 + ((7, "PRE007", "美元"),)
_ORG = (1, "100", "总部")
_DOC_STATUS = "C" * 17 + "ABDZ"  # mostly 已审核
# (number, name, specification, unit number, unit name, low price, high price, tax rate %)
_MATERIALS = (
    ("1.01.001", "伺服电机", "SGM7J-08A 750W", "Pcs", "台", 1800, 2600, 13),
    ("1.01.002", "交流伺服驱动器", "SGD7S-5R5 1.5kW", "Pcs", "台", 2500, 3800, 13),
    ("1.02.001", "变频器", "ACS580 11kW", "Pcs", "台", 5200, 7600, 13),
    ("1.03.001", "PLC控制器", "S7-1200 CPU1214C", "Pcs", "台", 2100, 2900, 13),
    ("1.03.002", "PLC扩展模块", "SM1223 DI8/DQ8", "Pcs", "块", 900, 1300, 13),
    ("1.04.001", "工业触摸屏", "10英寸 TP1000", "Pcs", "台", 2800, 4200, 13),
    ("1.05.001", "增量型编码器", "1024线 E6B2", "Pcs", "个", 380, 620, 13),
    ("1.06.001", "行星减速机", "PLF090 1:10", "Pcs", "台", 1500, 2300, 13),
    ("1.07.001", "光电传感器", "漫反射型 E3Z-D61", "Pcs", "个", 120, 260, 13),
    ("1.07.002", "接近开关", "M12 NPN常开", "Pcs", "个", 45, 90, 13),
    ("1.08.001", "交流接触器", "LC1D25 AC220V", "Pcs", "个", 160, 260, 13),
    ("1.08.002", "小型断路器", "C32 3P", "Pcs", "个", 55, 120, 13),
    ("1.09.001", "工业相机", "500万像素 GigE", "Pcs", "台", 3600, 5800, 13),
    ("1.10.001", "直线导轨", "HGR20 1000mm", "Pcs", "根", 260, 420, 13),
    ("1.11.001", "滚珠丝杠", "SFU1605 500mm", "Pcs", "根", 300, 520, 13),
    ("1.12.001", "标准气缸", "SC63x100", "Pcs", "个", 210, 360, 13),
    ("1.12.002", "电磁阀", "4V210-08 DC24V", "Pcs", "个", 65, 110, 13),
    ("2.01.001", "工业控制软件授权", "V3.0 单机版", "Set", "套", 12000, 30000, 13),
    ("3.01.001", "设备安装调试服务", "现场服务", "Time", "次", 2000, 8000, 6),
    ("3.02.001", "年度维保服务", "7x24 响应", "Year", "年", 8000, 25000, 6),
)
_NOTES = (
    "",
    "",
    "",
    "加急",
    "客户要求分批发货",
    "含安装调试",
    "月结60天",
    "需开具增值税专用发票",
    "框架协议下单",
)

# A bijection of the record index onto (city, 字号, industry) so names stay distinct up to ~1.4M.
_NAME_SPACE = len(_CITIES) * len(_TRADE_CHARS) ** 2 * len(_INDUSTRIES)
_NAME_STEP = 1_000_003  # prime, coprime with _NAME_SPACE
_ORG_SPACE = 31**9
_ORG_STEP = 9_007_199_254_740_881  # not a multiple of 31, so i -> code is a bijection on 31**9


def _company(i: int) -> tuple[int, str, str, int]:
    """(city index, 字号, industry part, industry index) of customer ``i``."""
    x = (i * _NAME_STEP + 7919) % _NAME_SPACE
    x, city = divmod(x, len(_CITIES))
    x, ind = divmod(x, len(_INDUSTRIES))
    a, b = divmod(x, len(_TRADE_CHARS))
    a %= len(_TRADE_CHARS)
    return city, _TRADE_CHARS[a] + _TRADE_CHARS[b], _INDUSTRIES[ind][0], ind


_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)  # GB 32100-2015
_PREFIX_SUM: dict[str, int] = {}


def _credit_code(i: int, division: str, seed: int) -> str:
    """A valid, distinct 统一社会信用代码 for customer ``i`` (organisation code from ``i``)."""
    head = "91" + division
    base = _PREFIX_SUM.get(head)
    if base is None:
        base = _PREFIX_SUM[head] = sum(int(c) * w for c, w in zip(head, _USCC_WEIGHTS, strict=False))
    x = (i * _ORG_STEP + seed * 1_000_003 + 12_345_678_901) % _ORG_SPACE
    chars = []
    total = base
    for w in _USCC_WEIGHTS[8:]:
        x, r = divmod(x, 31)
        chars.append(uscc.ALPHABET[r])
        total += r * w
    return head + "".join(chars) + uscc.ALPHABET[(31 - total % 31) % 31]


class _FastRandom(random.Random):
    """``random.Random`` with float-based ``choice``/``randrange``: ~10x faster, still seeded.

    Seeding a million rows makes ~20 draws per row; the exact-uniform rejection sampling of the
    stock methods dominated the seeding time and buys nothing for synthetic data.
    """

    def choice(self, seq: Sequence[Any]) -> Any:  # type: ignore[override]
        return seq[int(self.random() * len(seq))]

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:  # type: ignore[override]
        if stop is None:
            start, stop = 0, start
        return start + int(self.random() * (stop - start))

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.random()


def _address(rng: random.Random, city_i: int) -> str:
    city, province, _, _, _, districts = _CITIES[city_i]
    prefix = province if province == city + "市" else province + city + "市"
    return f"{prefix}{rng.choice(districts)}{rng.choice(_ROADS)}{rng.randrange(1, 999)}号"


def _person(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + rng.choice(_GIVEN)


def _mobile(rng: random.Random) -> str:
    return f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"


def _round2(x: float) -> float:
    return round(x + 1e-9, 2)


# -- the simulator -----------------------------------------------------------------------------------
@dataclass
class _Session:
    sid: str
    acct_id: str
    username: str
    last_used: float
    queries: int = 0


_STAT_KEYS = (
    "requests",
    "logins",
    "login_failures",
    "queries",
    "views",
    "rows_returned",
    "throttled",
    "session_lost",
    "sessions_expired",
    "http_5xx",
    "timeouts",
    "slow",
    "bad_requests",
    "query_errors",
)


class KingdeeSimulator(Simulator):
    """A Kingdee K/3 Cloud WebAPI server with deterministic data and fault injection.

    ``records`` is the number of customers; sales orders and receivables default to the same count
    (each order has 1-4 lines). Data is generated from ``seed``, so two simulators with the same
    arguments serve identical data. Seeding happens on :meth:`start` (or on first use of a data
    method) and costs a few seconds per 100k records.
    """

    system: ClassVar[str] = "kingdee"

    ACCT_ID: ClassVar[str] = "65f1d7e2c3b4a59687706152"
    USERNAME: ClassVar[str] = "demo"
    PASSWORD: ClassVar[str] = "Kd@demo2024"
    APP_ID: ClassVar[str] = "312478_Rc3/W8uJ0qKaXf0OT2TpSbzuU40Y5pJm"
    APP_SECRET: ClassVar[str] = "f3c0a9d7e1b24c6a8e5d9b0c7a6f4e21"
    LCID: ClassVar[int] = LCID_ZH_CN

    def __init__(
        self,
        *,
        records: int = 100,
        faults: FaultConfig | str | None = None,
        seed: int = 7,
        orders: int | None = None,
        receivables: int | None = None,
        db_path: str | None = None,
    ) -> None:
        super().__init__(records=records, faults=faults, seed=seed)
        self.counts_wanted = {
            "BD_Customer": max(0, int(records)),
            "SAL_SaleOrder": max(0, int(records if orders is None else orders)),
            "AR_receivable": max(0, int(records if receivables is None else receivables)),
        }
        self._lock = threading.RLock()
        self._tmpdir: str | None = None
        self._db_path = db_path
        self._db: sqlite3.Connection | None = None
        self._seeded = False
        self._sessions: dict[str, _Session] = {}
        self._stats = dict.fromkeys(_STAT_KEYS, 0)
        self._fault_rng = random.Random(seed * 7919 + 1)
        self._change_rng = random.Random(seed * 104_729 + 3)
        self._last_ts = 0
        self._stopping = False
        self._next_id: dict[str, int] = {}
        self._next_entry_id = 0

    # -- Simulator API ------------------------------------------------------------------------------
    def credentials(self) -> dict[str, Any]:
        """The demo credentials: session login (acct_id/username/password) or app secret."""
        return {
            "acct_id": self.ACCT_ID,
            "username": self.USERNAME,
            "password": self.PASSWORD,
            "app_id": self.APP_ID,
            "app_secret": self.APP_SECRET,
            "lcid": self.LCID,
        }

    def tap_config(self, **overrides: Any) -> dict[str, Any]:
        """A ready ``tap-kingdee`` config for this running simulator (password login)."""
        cfg = {
            "base_url": self.base_url,
            "acct_id": self.ACCT_ID,
            "username": self.USERNAME,
            "password": self.PASSWORD,
            "lcid": self.LCID,
        }
        cfg.update(overrides)
        return cfg

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Seed the data (if not done yet), then serve; returns the base URL."""
        self.seed_data()
        self._stopping = False
        return super().start(host, port)

    def stop(self) -> None:
        """Stop serving; hung requests (``timeout`` fault) are released so shutdown is prompt."""
        self._stopping = True
        super().stop()

    def close(self) -> None:
        """Stop and delete the data file."""
        self.stop()
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            if self._tmpdir:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None
            self._seeded = False

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_faults(self, faults: FaultConfig | str | None) -> None:
        """Replace the fault switches at run time (e.g. turn throttling on mid-test)."""
        self.faults = faults if isinstance(faults, FaultConfig) else FaultConfig.parse(faults)

    # -- data -----------------------------------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self.seed_data()
        assert self._db is not None
        return self._db

    def seed_data(self) -> None:
        """Create and fill the database (idempotent)."""
        with self._lock:
            if self._seeded:
                return
            if self._db_path is None:
                self._tmpdir = tempfile.mkdtemp(prefix="tongbu-kingdee-sim-")
                weakref.finalize(self, shutil.rmtree, self._tmpdir, True)
                path = f"{self._tmpdir}/k3cloud.sqlite"
            else:
                path = self._db_path
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            # A throwaway test database: durability buys nothing, speed does.
            for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-65536", "temp_store=MEMORY"):
                db.execute(f"PRAGMA {pragma}")
            self._db = db
            self._create_schema()
            db.execute("BEGIN")
            self._seed_customers(self.counts_wanted["BD_Customer"])
            self._seed_orders(self.counts_wanted["SAL_SaleOrder"])
            self._seed_receivables(self.counts_wanted["AR_receivable"])
            db.execute("COMMIT")
            self._create_indexes()
            self._apply_same_second()
            self._apply_null_modify_date()
            self._last_ts = max(self._max_ts(), _ms(_SEED_TO))
            self._seeded = True

    def _create_schema(self) -> None:
        # Declared affinities matter: an untyped FID would keep SQLite from using the join index.
        affinity = {"int": "INTEGER", "datetime": "INTEGER", "decimal": "REAL", "text": "TEXT"}

        def ddl(table: str, columns: Sequence[str], kinds: dict[str, str], pk: str | None) -> str:
            cols = ", ".join(
                f'"{c}" ' + ("INTEGER PRIMARY KEY" if c == pk else affinity[kinds.get(c, "text")])
                for c in columns
            )
            return f'CREATE TABLE "{table}" ({cols})'

        for form in FORMS.values():
            self.db_raw.execute(ddl(form.table, form.columns, form.kinds, form.pk))
            if form.entry_table:
                kinds = {**form.entry_kinds, "FID": "int"}
                self.db_raw.execute(ddl(form.entry_table, form.entry_columns, kinds, form.entry_pk))

    def _create_indexes(self) -> None:
        for form in FORMS.values():
            # (FModifyDate, pk) makes keyset paging an index range scan instead of a sort.
            self.db_raw.execute(
                f'CREATE INDEX "ix_{form.table}_mod" ON "{form.table}" ("FModifyDate", "{form.pk}")'
            )
            self.db_raw.execute(
                f'CREATE INDEX "ix_{form.table}_no" ON "{form.table}" ("{form.number_column}")'
            )
            if form.entry_table:
                self.db_raw.execute(
                    f'CREATE INDEX "ix_{form.entry_table}_fid" ON "{form.entry_table}" ("FID")'
                )

    @property
    def db_raw(self) -> sqlite3.Connection:
        assert self._db is not None
        return self._db

    def _insert(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        if rows:
            marks = ",".join("?" * len(columns))
            self.db_raw.executemany(f'INSERT INTO "{table}" VALUES ({marks})', rows)

    def _malformed_rng(self, form_id: str) -> tuple[random.Random, float]:
        rate = self.faults.value("malformed", 0.0) if self.faults.enabled("malformed") else 0.0
        return _FastRandom(f"{self.seed}:{form_id}:malformed"), rate

    # customers ------------------------------------------------------------------------------------
    def _customer_row(self, i: int, rng: random.Random, modified: int | None = None) -> list[Any]:
        cid = 100_000 + i
        city_i, trade, industry, ind_i = _company(i)
        city, province, division, area, zipcode, districts = _CITIES[city_i]
        name = f"{city}{trade}{industry}{rng.choice(_COMPANY_SUFFIXES)}"
        code = _credit_code(i, division, self.seed)
        seller_id, seller_no, seller_name, (dept_no, dept_name) = rng.choice(_SELLERS)
        cur_id, cur_no, cur_name = rng.choice(_CURRENCIES)
        lo, hi = _ms(_SEED_FROM), _ms(_SEED_TO)
        mod = modified if modified is not None else rng.randrange(lo, hi)
        created = mod - rng.randrange(0, 400 * 86_400_000) if modified is None else mod
        status = rng.choice(_DOC_STATUS)
        approve = created + rng.randrange(0, max(1, mod - created + 1)) if status == "C" else None
        found = _FOUND_FROM + rng.randrange(0, 11_000) * 86_400_000
        address = _address(rng, city_i)
        group_no, group_name = rng.choice(_GROUPS)
        type_no, type_name = rng.choice(_CUST_TYPES)
        phone = f"{area}-{rng.randrange(10**7, 10**8)}"
        return [
            cid,
            f"CUST{i + 1:07d}",
            name,
            trade + industry[:2],
            code,
            code,
            _person(rng),
            f"{rng.choice((50, 100, 200, 500, 1000, 2000, 5000))}万元人民币",
            found,
            phone,
            f"{area}-{rng.randrange(10**7, 10**8)}",
            address,
            zipcode,
            f"www.{cid}.com.cn",
            _INDUSTRIES[ind_i][1],
            "China",
            "中国",
            division[:2] + "0000",
            province,
            type_no,
            type_name,
            group_no,
            group_name,
            seller_id,
            seller_no,
            seller_name,
            dept_no,
            dept_name,
            cur_id,
            cur_no,
            cur_name,
            _ORG[0],
            _ORG[1],
            _ORG[0],
            _ORG[1],
            status,
            "B" if rng.random() < 0.04 else "A",
            created,
            mod,
            approve,
            None,
        ]

    def _seed_customers(self, n: int, start: int = 0) -> None:
        rng = _FastRandom(f"{self.seed}:BD_Customer")
        mrng, rate = self._malformed_rng("BD_Customer")
        rows: list[tuple[Any, ...]] = []
        cols = CUSTOMER_COLUMNS
        i_name, i_code, i_found = cols.index("FName"), cols.index("FSOCIALCRECODE"), cols.index("FFoundDate")
        for i in range(start, start + n):
            row = self._customer_row(i, rng)
            if rate and mrng.random() < rate:
                kind = mrng.randrange(3)
                if kind == 0:
                    row[i_name], row[-1] = None, "FName: missing customer name"
                elif kind == 1:
                    good = row[i_code]
                    bad = good[:17] + uscc.ALPHABET[(uscc.ALPHABET.index(good[17]) + 1) % 31]
                    row[i_code], row[-1] = bad, "FSOCIALCRECODE: invalid check character"
                else:
                    row[i_found], row[-1] = "2019-02-30T00:00:00", "FFoundDate: unparsable date"
            rows.append(tuple(row))
            if len(rows) >= _CHUNK:
                self._insert("customers", cols, rows)
                rows = []
        self._insert("customers", cols, rows)
        self._next_id["BD_Customer"] = start + n

    # sales orders ---------------------------------------------------------------------------------
    def _order_rows(
        self, i: int, rng: random.Random, n_customers: int, modified: int | None = None
    ) -> tuple[list[Any], list[list[Any]]]:
        fid = 100_000 + i
        cust = 100_000 + (rng.randrange(n_customers) if n_customers else 0)
        lo, hi = _ms(_SEED_FROM), _ms(_SEED_TO)
        mod = modified if modified is not None else rng.randrange(lo, hi)
        created = mod - rng.randrange(0, 90 * 86_400_000) if modified is None else mod
        day = created - created % 86_400_000
        status = rng.choice(_DOC_STATUS)
        approve = created + rng.randrange(0, max(1, mod - created + 1)) if status == "C" else None
        seller_id, seller_no, seller_name, (dept_no, dept_name) = rng.choice(_SELLERS)
        cur_id, cur_no, cur_name = rng.choice(_CURRENCIES)
        address = _address(rng, rng.randrange(len(_CITIES)))
        lines: list[list[Any]] = []
        total = 0.0
        for seq in range(1, rng.choice((1, 1, 2, 2, 3, 3, 4)) + 1):
            m_i = rng.randrange(len(_MATERIALS))
            number, mname, spec, unit_no, unit_name, low, high, rate = _MATERIALS[m_i]
            qty = float(rng.choice((1, 1, 2, 2, 3, 5, 10, 20, 50)))
            tax_price = _round2(rng.uniform(low, high))
            price = _round2(tax_price / (1 + rate / 100))
            all_amount = _round2(qty * tax_price)
            amount = _round2(qty * price)
            total += all_amount
            self._next_entry_id += 1
            lines.append(
                [
                    self._next_entry_id,
                    fid,
                    seq,
                    200_000 + m_i,
                    number,
                    mname,
                    spec,
                    unit_no,
                    unit_name,
                    qty,
                    price,
                    tax_price,
                    float(rate),
                    amount,
                    all_amount,
                    day + rng.randrange(3, 45) * 86_400_000,
                ]
            )
        header = [
            fid,
            f"XSDD{i + 1:08d}",
            "XSDD01_SYS",
            "标准销售订单",
            day,
            cust,
            _ORG[0],
            _ORG[1],
            _ORG[2],
            dept_no,
            dept_name,
            seller_id,
            seller_no,
            seller_name,
            cur_no,
            cur_name,
            _round2(total),
            status,
            "B" if status == "C" and rng.random() < 0.3 else "A",
            "B" if rng.random() < 0.02 else "A",
            _person(rng),
            _mobile(rng),
            address,
            rng.choice(_NOTES),
            created,
            mod,
            approve,
            None,
        ]
        return header, lines

    def _seed_orders(self, n: int, start: int = 0) -> None:
        rng = _FastRandom(f"{self.seed}:SAL_SaleOrder")
        mrng, rate = self._malformed_rng("SAL_SaleOrder")
        n_customers = self._next_id.get("BD_Customer", 0)
        heads: list[tuple[Any, ...]] = []
        lines: list[tuple[Any, ...]] = []
        i_date, i_total = ORDER_COLUMNS.index("FDate"), ORDER_COLUMNS.index("FBillAllAmount")
        i_taxprice = ORDER_LINE_COLUMNS.index("FTaxPrice")
        for i in range(start, start + n):
            head, ls = self._order_rows(i, rng, n_customers)
            if rate and mrng.random() < rate:
                kind = mrng.randrange(3)
                if kind == 0:
                    head[i_date], head[-1] = "2024-13-45T00:00:00", "FDate: unparsable date"
                elif kind == 1:
                    head[i_total], head[-1] = "1,2O4.5", "FBillAllAmount: not a number"
                else:
                    ls[0][i_taxprice], head[-1] = "N/A", "FSaleOrderEntry_FTaxPrice: not a number (line 1)"
            heads.append(tuple(head))
            lines.extend(tuple(x) for x in ls)
            if len(heads) >= _CHUNK:
                self._insert("sale_orders", ORDER_COLUMNS, heads)
                self._insert("sale_order_lines", ORDER_LINE_COLUMNS, lines)
                heads, lines = [], []
        self._insert("sale_orders", ORDER_COLUMNS, heads)
        self._insert("sale_order_lines", ORDER_LINE_COLUMNS, lines)
        self._next_id["SAL_SaleOrder"] = start + n

    # receivables ----------------------------------------------------------------------------------
    def _receivable_row(
        self, i: int, rng: random.Random, n_customers: int, n_orders: int, modified: int | None = None
    ) -> list[Any]:
        fid = 100_000 + i
        cust = 100_000 + (rng.randrange(n_customers) if n_customers else 0)
        lo, hi = _ms(_SEED_FROM), _ms(_SEED_TO)
        mod = modified if modified is not None else rng.randrange(lo, hi)
        created = mod - rng.randrange(0, 60 * 86_400_000) if modified is None else mod
        day = created - created % 86_400_000
        status = rng.choice(_DOC_STATUS)
        approve = created + rng.randrange(0, max(1, mod - created + 1)) if status == "C" else None
        cur_id, cur_no, cur_name = rng.choice(_CURRENCIES)
        amount = _round2(rng.uniform(500, 300_000))
        state = rng.choice("AAABC")
        written = (
            0.0 if state == "A" else (amount if state == "C" else _round2(amount * rng.uniform(0.1, 0.9)))
        )
        order_no = f"XSDD{rng.randrange(n_orders) + 1:08d}" if n_orders and rng.random() < 0.8 else None
        return [
            fid,
            f"AR{i + 1:08d}",
            "YSD01_SYS",
            "标准应收单",
            day,
            day + rng.choice((30, 60, 90)) * 86_400_000,
            cust,
            cur_no,
            cur_name,
            _ORG[1],
            _ORG[1],
            amount,
            state,
            written,
            _round2(amount - written),
            order_no,
            status,
            "B" if rng.random() < 0.02 else "A",
            created,
            mod,
            approve,
            None,
        ]

    def _seed_receivables(self, n: int, start: int = 0) -> None:
        rng = _FastRandom(f"{self.seed}:AR_receivable")
        mrng, rate = self._malformed_rng("AR_receivable")
        n_customers = self._next_id.get("BD_Customer", 0)
        n_orders = self._next_id.get("SAL_SaleOrder", 0)
        cols = RECEIVABLE_COLUMNS
        i_date, i_end, i_amount = cols.index("FDATE"), cols.index("FENDDATE_H"), cols.index("FALLAMOUNTFOR")
        rows: list[tuple[Any, ...]] = []
        for i in range(start, start + n):
            row = self._receivable_row(i, rng, n_customers, n_orders)
            if rate and mrng.random() < rate:
                kind = mrng.randrange(3)
                if kind == 0:
                    row[i_amount], row[-1] = "￥12,000.00", "FALLAMOUNTFOR: not a number"
                elif kind == 1:
                    row[i_date], row[-1] = "0000-00-00", "FDATE: unparsable date"
                else:
                    row[i_end], row[-1] = "2024-02-30T00:00:00", "FENDDATE_H: unparsable date"
            rows.append(tuple(row))
            if len(rows) >= _CHUNK:
                self._insert("receivables", cols, rows)
                rows = []
        self._insert("receivables", cols, rows)
        self._next_id["AR_receivable"] = start + n

    def _apply_same_second(self) -> None:
        if not self.faults.enabled("same_second"):
            return
        v = self.faults.value("same_second")
        rng = random.Random(f"{self.seed}:same_second")
        ts = _ms(_SAME_SECOND)
        for form in FORMS.values():
            total = self._next_id.get(form.form_id, 0)
            k = int(v) if v > 1 else int(round(total * (0.25 if v == 1.0 else v)))
            k = min(k, total)
            ids = rng.sample(range(total), k)
            self.db_raw.executemany(
                f'UPDATE "{form.table}" SET "FModifyDate" = ? WHERE "{form.pk}" = ?',
                [(ts, 100_000 + i) for i in ids],
            )

    def _apply_null_modify_date(self) -> None:
        v = self.faults.value("null_modify_date") if self.faults.enabled("null_modify_date") else 0.0
        rng = random.Random(f"{self.seed}:null_modify_date")
        for form in FORMS.values() if v else ():
            total = self._next_id.get(form.form_id, 0)
            ids = rng.sample(range(total), min(total, int(v) if v > 1 else round(total * v)))
            self.db_raw.executemany(
                f'UPDATE "{form.table}" SET "FModifyDate" = NULL WHERE "{form.pk}" = ?',
                [(100_000 + i,) for i in ids],
            )

    def _max_ts(self) -> int:
        best = 0
        for form in FORMS.values():
            v = self.db_raw.execute(f'SELECT MAX("FModifyDate") FROM "{form.table}"').fetchone()[0]
            best = max(best, int(v or 0))
        return best

    def _tick(self) -> int:
        """A new modification time: the wall clock (+08:00), never going backwards."""
        self._last_ts = max(_now_local_ms(), self._last_ts + 1)
        return self._last_ts

    # -- control methods (also behind /_sim/...) ----------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Records per form (and sales order lines)."""
        with self._lock:
            db = self.db
            out = {
                f.form_id: db.execute(f'SELECT COUNT(*) FROM "{f.table}"').fetchone()[0]
                for f in FORMS.values()
            }
            out["SAL_SaleOrder.lines"] = db.execute('SELECT COUNT(*) FROM "sale_order_lines"').fetchone()[0]
            out["malformed"] = sum(
                db.execute(f'SELECT COUNT(*) FROM "{f.table}" WHERE "_malformed" IS NOT NULL').fetchone()[0]
                for f in FORMS.values()
            )
            return out

    def stats(self) -> dict[str, int]:
        """Request counters, including how many faults were injected."""
        with self._lock:
            return dict(self._stats)

    def reset_stats(self) -> None:
        """Zero the request counters."""
        with self._lock:
            self._stats = dict.fromkeys(_STAT_KEYS, 0)

    def expire_sessions(self) -> int:
        """Drop every session (as a server restart or idle timeout would); returns how many."""
        with self._lock:
            n = len(self._sessions)
            self._sessions.clear()
            return n

    def modify(self, form: str, count: int, *, modified_at: str | None = None) -> dict[str, Any]:
        """Change ``count`` random records of ``form`` and stamp them with one new ``FModifyDate``.

        All changed records share the timestamp (one bulk update), which is the case a plain
        ``FModifyDate >`` cursor gets wrong. ``modified_at`` (``'YYYY-MM-DD HH:MM:SS[.fff]'``) stamps an
        older time instead, to play a transaction that commits late.
        """
        fd = _form(form)
        with self._lock:
            db = self.db
            ts = self._stamp(modified_at)
            total = db.execute(f'SELECT MAX("{fd.pk}") FROM "{fd.table}"').fetchone()[0]
            if total is None:
                return {"form": fd.form_id, "ids": [], "FModifyDate": kd_format(ts)}
            population = range(100_000, int(total) + 1)
            ids = sorted(self._change_rng.sample(population, min(count, len(population))))
            rng = self._change_rng
            if fd.form_id == "BD_Customer":
                seller = [rng.choice(_SELLERS) for _ in ids]
                db.executemany(
                    'UPDATE customers SET "FTEL" = ?, "FSELLER" = ?, "FSELLER_FNumber" = ?, "FSELLER_FName" = ?, '
                    '"FModifyDate" = ? WHERE "FCUSTID" = ?',
                    [
                        (f"021-{rng.randrange(10**7, 10**8)}", s[0], s[1], s[2], ts, i)
                        for s, i in zip(seller, ids, strict=True)
                    ],
                )
            elif fd.form_id == "SAL_SaleOrder":
                db.executemany(
                    'UPDATE sale_orders SET "FNote" = ?, "FModifyDate" = ? WHERE "FID" = ?',
                    [(f"变更：交期调整（{kd_format(ts)[:10]}）", ts, i) for i in ids],
                )
                # One more unit on the first line; amounts follow (malformed text stays as it is).
                db.executemany(
                    'UPDATE sale_order_lines SET "FQty" = "FQty" + 1, '
                    '"FAmount" = ROUND(("FQty" + 1) * "FPrice", 2), "FAllAmount" = ROUND(("FQty" + 1) * "FTaxPrice", 2) '
                    'WHERE "FEntryID" = (SELECT MIN("FEntryID") FROM sale_order_lines WHERE "FID" = ?) '
                    "AND typeof(\"FTaxPrice\") = 'real'",
                    [(i,) for i in ids],
                )
                db.executemany(
                    'UPDATE sale_orders SET "FBillAllAmount" = (SELECT ROUND(SUM("FAllAmount"), 2) FROM sale_order_lines '
                    'WHERE sale_order_lines."FID" = sale_orders."FID") WHERE "FID" = ? AND typeof("FBillAllAmount") = \'real\'',
                    [(i,) for i in ids],
                )
            else:
                # A payment arrives (回款) and is written off against the receivable in full.
                db.executemany(
                    'UPDATE receivables SET "FModifyDate" = ?, '
                    '"FWRITTENOFFAMOUNTFOR" = CASE WHEN typeof("FALLAMOUNTFOR") = \'real\' THEN "FALLAMOUNTFOR" '
                    'ELSE "FWRITTENOFFAMOUNTFOR" END, '
                    '"FNOTWRITTENOFFAMOUNTFOR" = CASE WHEN typeof("FALLAMOUNTFOR") = \'real\' THEN 0.0 '
                    'ELSE "FNOTWRITTENOFFAMOUNTFOR" END, "FWRITTENOFFSTATUS" = \'C\' WHERE "FID" = ?',
                    [(ts, i) for i in ids],
                )
            return {"form": fd.form_id, "ids": ids, "FModifyDate": kd_format(ts)}

    def insert(self, form: str, count: int, *, modified_at: str | None = None) -> dict[str, Any]:
        """Create ``count`` new records of ``form`` (new ids), stamped with one new ``FModifyDate``."""
        fd = _form(form)
        with self._lock:
            self.db  # noqa: B018 - make sure the data exists
            ts = self._stamp(modified_at)
            start = self._next_id.get(fd.form_id, 0)
            rng = _FastRandom(f"{self.seed}:{fd.form_id}:insert:{start}")
            n_customers = self._next_id.get("BD_Customer", 0)
            if fd.form_id == "BD_Customer":
                rows = [tuple(self._customer_row(i, rng, ts)) for i in range(start, start + count)]
                self._insert("customers", CUSTOMER_COLUMNS, rows)
            elif fd.form_id == "SAL_SaleOrder":
                heads, lines = [], []
                for i in range(start, start + count):
                    h, ls = self._order_rows(i, rng, n_customers, ts)
                    heads.append(tuple(h))
                    lines.extend(tuple(x) for x in ls)
                self._insert("sale_orders", ORDER_COLUMNS, heads)
                self._insert("sale_order_lines", ORDER_LINE_COLUMNS, lines)
            else:
                n_orders = self._next_id.get("SAL_SaleOrder", 0)
                rows = [
                    tuple(self._receivable_row(i, rng, n_customers, n_orders, ts))
                    for i in range(start, start + count)
                ]
                self._insert("receivables", RECEIVABLE_COLUMNS, rows)
            self._next_id[fd.form_id] = start + count
            return {
                "form": fd.form_id,
                "ids": [100_000 + i for i in range(start, start + count)],
                "FModifyDate": kd_format(ts),
            }

    def _stamp(self, modified_at: str | None) -> int:
        if modified_at is None:
            return self._tick()
        ms = parse_literal_ms(modified_at)
        if ms is None:
            raise ValueError(f"modified_at {modified_at!r} is not 'YYYY-MM-DD HH:MM:SS[.fff]'")
        return ms

    def truth(self, form: str, *, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Ground truth of ``form`` in id order: every field by FieldKey, ``lines`` for orders and
        ``_malformed`` (the injected defect, or None)."""
        fd = _form(form)
        with self._lock:
            db = self.db
            cols = [c for c in fd.columns]
            sql = f'SELECT {", ".join(f"{chr(34)}{c}{chr(34)}" for c in cols)} FROM "{fd.table}" ORDER BY "{fd.pk}"'
            sql += " LIMIT ? OFFSET ?"
            rows = db.execute(sql, (-1 if limit is None else limit, offset)).fetchall()
            keys = self._keys_of(fd, cols)
            out = []
            for row in rows:
                rec = {}
                for key, col, value in zip(keys, cols, row, strict=True):
                    rec[key] = self._out(fd.kinds.get(col, "text"), value)
                out.append(rec)
            if fd.entry_table and out:
                by_id: dict[int, list[dict[str, Any]]] = {r[fd.pk]: [] for r in out}
                ecols = [c for c in fd.entry_columns if c != "FID"]
                marks = ",".join("?" * len(by_id))
                lines = db.execute(
                    f'SELECT "FID", {", ".join(f"{chr(34)}{c}{chr(34)}" for c in ecols)} FROM "{fd.entry_table}" '
                    f'WHERE "FID" IN ({marks}) ORDER BY "FID", "{fd.entry_pk}"',
                    list(by_id),
                ).fetchall()
                ekeys = [f"{fd.entry_name}_{k}" for k in self._keys_of(fd, ecols)]
                for line in lines:
                    by_id[line[0]].append(
                        {
                            k: self._out(fd.entry_kinds.get(c, "text"), v)
                            for k, c, v in zip(ekeys, ecols, line[1:], strict=True)
                        }
                    )
                for r in out:
                    r["lines"] = by_id[r[fd.pk]]
            return out

    @staticmethod
    def _keys_of(fd: FormDef, cols: Sequence[str]) -> list[str]:
        out = []
        for c in cols:
            for suffix in ("_FNumber", "_FName", "_FSpecification"):
                if c.endswith(suffix):
                    c = c[: -len(suffix)] + "." + suffix[1:]
                    break
            out.append(c)
        return out

    @staticmethod
    def _out(kind: str, value: Any) -> Any:
        if kind == "datetime" and isinstance(value, int):
            return kd_format(value)
        return value

    # -- query engine -------------------------------------------------------------------------------
    def execute_bill_query(self, data: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run an ExecuteBillQuery ``data`` object; raises :class:`QueryError`."""
        form = _form(str(data.get("FormId") or data.get("formid") or ""))
        keys = data.get("FieldKeys") or ""
        if isinstance(keys, list):
            keys = ",".join(keys)
        field_keys = [k.strip() for k in str(keys).split(",") if k.strip()]
        if not field_keys:
            raise QueryError("FieldKeys 不能为空", MSG_BAD_PARAM)
        selected = [form.field(k) for k in field_keys]
        translator = FilterTranslator(form)
        raw_filter = data.get("FilterString") or ""
        if isinstance(raw_filter, list):
            raw_filter = filter_array_to_string(raw_filter)
        where = translator.translate(str(raw_filter))
        order_fields, order_sql = self._order_by(form, str(data.get("OrderString") or ""))
        try:
            start_row = max(0, int(data.get("StartRow") or 0))
            limit = int(data.get("Limit") or 0)
            top = int(data.get("TopRowCount") or 0)
        except (TypeError, ValueError):
            raise QueryError("StartRow/Limit/TopRowCount 必须是整数", MSG_BAD_PARAM) from None
        limit = DEFAULT_LIMIT if limit <= 0 else min(limit, MAX_LIMIT)
        if top > 0:  # TopRowCount behaves as an absolute end row
            limit = max(0, min(limit, top - start_row))
        used = selected + translator.used + order_fields
        with_entry = any(f.entry for f in used)
        joins = ""
        if with_entry:
            joins += f' LEFT JOIN "{form.entry_table}" e ON e."FID" = h."{form.pk}"'
        if any(f.join == "c" for f in used):
            joins += f' LEFT JOIN customers c ON c."FCUSTID" = h."{form.customer_ref}"'
        tiebreak = [f'h."{form.pk}"'] + ([f'e."{form.entry_pk}"'] if with_entry else [])
        order_sql = ", ".join(
            order_sql + [t for t in tiebreak if t not in {o.split(" ")[0] for o in order_sql}]
        )
        sql = (
            f'SELECT {", ".join(_select_expr(f) for f in selected)} FROM "{form.table}" h{joins} '
            f"WHERE {where} ORDER BY {order_sql} LIMIT ? OFFSET ?"
        )
        with self._lock:
            try:
                return self.db.execute(sql, [*translator.params, limit, start_row]).fetchall()
            except sqlite3.Error as exc:
                raise QueryError(f"数据库操作失败：{exc}", 6) from exc

    @staticmethod
    def _order_by(form: FormDef, text: str) -> tuple[list[FieldDef], list[str]]:
        fields: list[FieldDef] = []
        parts: list[str] = []
        for item in (p.strip() for p in text.split(",")):
            if not item:
                continue
            bits = item.split()
            direction = bits[1].upper() if len(bits) > 1 else "ASC"
            if direction not in ("ASC", "DESC") or len(bits) > 2:
                raise QueryError(f"排序字段格式错误：{item}", MSG_BAD_PARAM)
            fd = form.field(bits[0])
            fields.append(fd)
            parts.append(f"{fd.sql} {direction}")
        return fields, parts

    def view(self, form_id: str, number: str | None = None, id_: Any = None) -> dict[str, Any] | None:
        """The View entity (ORM property names, multilingual names) or None when not found."""
        form = _form(form_id)
        with self._lock:
            db = self.db
            if id_ not in (None, "", 0, "0"):
                where, arg = f'"{form.pk}" = ?', int(id_)
            elif number:
                where, arg = f'"{form.number_column}" = ?', number
            else:
                raise QueryError("Number 和 Id 不能同时为空", MSG_BAD_PARAM)
            cols = list(form.columns)
            row = db.execute(
                f'SELECT {", ".join(chr(34) + c + chr(34) for c in cols)} FROM "{form.table}" WHERE {where}',
                (arg,),
            ).fetchone()
            if row is None:
                return None
            entity = _orm_entity(cols, row, form.kinds, form.pk)
            if form.customer_ref:
                cust = db.execute(
                    'SELECT "FNumber", "FName" FROM customers WHERE "FCUSTID" = ?',
                    (entity.get(form.customer_ref[1:] + "_Id"),),
                ).fetchone()
                ref = form.customer_ref[1:]
                entity[ref] = (
                    None
                    if cust is None
                    else {
                        "Id": entity.get(ref + "_Id"),
                        "Number": cust[0],
                        "Name": [{"Key": LCID_ZH_CN, "Value": cust[1]}],
                    }
                )
            if form.entry_table:
                ecols = list(form.entry_columns)
                lines = db.execute(
                    f'SELECT {", ".join(chr(34) + c + chr(34) for c in ecols)} FROM "{form.entry_table}" '
                    f'WHERE "FID" = ? ORDER BY "{form.entry_pk}"',
                    (row[0],),
                ).fetchall()
                entity[(form.entry_name or "Entry")[1:]] = [
                    _orm_entity(ecols, line, form.entry_kinds, form.entry_pk or "", skip=("FID",))
                    for line in lines
                ]
            return entity

    # -- HTTP -------------------------------------------------------------------------------------------
    def build_app(self) -> Starlette:
        """The ASGI app: ``/k3cloud/<service>.common.kdsvc`` plus the ``/_sim`` control API."""
        routes = [
            Route("/k3cloud/{service:path}", self._service, methods=["POST"]),
            Route("/_sim/health", self._sim_health, methods=["GET"]),
            Route("/_sim/counts", self._sim_counts, methods=["GET"]),
            Route("/_sim/stats", self._sim_stats, methods=["GET"]),
            Route("/_sim/stats/reset", self._sim_stats_reset, methods=["POST"]),
            Route("/_sim/modify", self._sim_modify, methods=["POST"]),
            Route("/_sim/insert", self._sim_insert, methods=["POST"]),
            Route("/_sim/truth", self._sim_truth, methods=["GET"]),
            Route("/_sim/faults", self._sim_faults, methods=["GET", "POST"]),
            Route("/_sim/sessions/expire", self._sim_expire, methods=["POST"]),
        ]
        return Starlette(routes=routes)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._stats[key] += n

    def _chance(self, name: str) -> bool:
        rate = self.faults.value(name, 0.0)
        if rate <= 0:
            return False
        with self._lock:
            return self._fault_rng.random() < rate

    async def _sleep(self, seconds: float) -> None:
        # Sleep in slices so stop() is not held up by a request hung on purpose.
        deadline = time.monotonic() + seconds
        while not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.05))

    async def _service(self, request: Request) -> Response:
        name = request.path_params["service"]
        lowered = name.lower()
        if not (lowered.startswith(SERVICE_PREFIX.lower()) and lowered.endswith(".common.kdsvc")):
            return PlainTextResponse("404 - File or directory not found.", status_code=404)
        service = name[len(SERVICE_PREFIX) : -len(".common.kdsvc")].lower()
        self._count("requests")
        slow = self.faults.value("slow", 0.0)
        if slow > 0:
            self._count("slow")
            await self._sleep(slow)
        if self._chance("timeout"):
            self._count("timeouts")
            await self._sleep(self.faults.value("hang", 120.0))
            return PlainTextResponse("504 Gateway Timeout", status_code=504)
        if self._chance("http_5xx"):
            self._count("http_5xx")
            with self._lock:
                status = self._fault_rng.choice((500, 502, 503))
            return PlainTextResponse(
                f"<html><head><title>{status} - 服务器错误</title></head><body><h2>{status} - Internal server error."
                "</h2><p>IIS 服务器遇到问题，无法完成请求。</p></body></html>",
                status_code=status,
                media_type="text/html",
            )
        body = await request.body()
        try:
            payload = json.loads(body.decode("utf-8-sig") or "{}")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._count("bad_requests")
            # The official SDK checks for this text prefix on failures it cannot wrap in JSON.
            return PlainTextResponse(
                f"response_error:{type(exc).__name__}: 请求报文不是合法的 JSON", status_code=200
            )
        if service == VALIDATE_USER.lower():
            return self._login(payload, by_app_secret=False)
        if service == LOGIN_BY_APP_SECRET.lower():
            return self._login(payload, by_app_secret=True)
        if service in (EXECUTE_BILL_QUERY.lower(), BILL_QUERY.lower()):
            return self._query(request, payload, as_objects=service == BILL_QUERY.lower())
        if service == VIEW.lower():
            return self._view(request, payload)
        return _json(_status_error(f"不支持的服务：{name}", MSG_BAD_PARAM))

    # login ------------------------------------------------------------------------------------------
    def _login(self, payload: dict[str, Any], *, by_app_secret: bool) -> Response:
        params = payload.get("parameters")
        if isinstance(params, str):
            try:
                params = json.loads(params)
            except json.JSONDecodeError:
                params = None
        if not isinstance(params, list):
            names = (
                ("acctid", "username", "appid", "appsecret", "lcid")
                if by_app_secret
                else ("acctid", "username", "password", "lcid")
            )
            lowered = {str(k).lower(): v for k, v in payload.items()}
            params = [lowered.get(n) for n in names]
        acct, user, secret_a, *rest = [*params, None, None, None, None][:5]
        if by_app_secret:
            ok = (
                acct == self.ACCT_ID
                and user == self.USERNAME
                and secret_a == self.APP_ID
                and (rest[0] if rest else None) == self.APP_SECRET
            )
            reason = "应用ID或应用密钥错误"
        else:
            ok = acct == self.ACCT_ID and user == self.USERNAME and secret_a == self.PASSWORD
            reason = "用户名或密码错误！"
        if acct != self.ACCT_ID:
            reason = "数据中心不存在或已被禁用"
        self._count("logins")
        if not ok:
            self._count("login_failures")
            return _json(_login_result(None, reason, 0))
        sid = secrets.token_hex(16)
        with self._lock:
            self._sessions[sid] = _Session(sid, str(acct), str(user), time.monotonic())
        response = _json(_login_result(sid, None, 1))
        response.set_cookie(SESSION_COOKIE, sid, path="/", httponly=True)
        response.set_cookie(ASPNET_COOKIE, sid, path="/", httponly=True)
        return response

    def _session(self, request: Request) -> _Session | None:
        sid = request.cookies.get(SESSION_COOKIE) or request.cookies.get(ASPNET_COOKIE)
        if not sid:
            return None
        idle = self.faults.value("session_idle", 1200.0)
        with self._lock:
            s = self._sessions.get(sid)
            if s is None:
                return None
            now = time.monotonic()
            if now - s.last_used > idle:
                del self._sessions[sid]
                self._stats["sessions_expired"] += 1
                return None
            s.last_used = now
            return s

    def _gate(self, request: Request) -> tuple[_Session | None, dict[str, Any] | None]:
        """Session and throttling checks shared by query and view; returns (session, error)."""
        session = self._session(request)
        if session is None:
            self._count("session_lost")
            return None, _status_error(SESSION_LOST_MESSAGE, MSG_SESSION_LOST)
        if self._chance("throttle"):
            self._count("throttled")
            return None, _status_error(THROTTLE_MESSAGE, MSG_THROTTLED)
        budget = self.faults.value("session_expiry", 0.0)
        if budget > 0 and session.queries >= budget:
            with self._lock:
                self._sessions.pop(session.sid, None)
                self._stats["sessions_expired"] += 1
                self._stats["session_lost"] += 1
            return None, _status_error(SESSION_LOST_MESSAGE, MSG_SESSION_LOST)
        return session, None

    # query / view ---------------------------------------------------------------------------------------
    def _query(self, request: Request, payload: dict[str, Any], *, as_objects: bool) -> Response:
        session, error = self._gate(request)
        if error is not None or session is None:
            return _json([[error]])
        try:
            data = _query_data(payload)
            rows = self.execute_bill_query(data)
        except QueryError as exc:
            self._count("query_errors")
            return _json([[_status_error(exc.message, exc.msg_code)]])
        with self._lock:
            session.queries += 1
            self._stats["queries"] += 1
            self._stats["rows_returned"] += len(rows)
        if as_objects:
            keys = [k.strip() for k in str(data.get("FieldKeys")).split(",") if k.strip()]
            return _json([dict(zip(keys, r, strict=True)) for r in rows])
        return _json(rows)

    def _view(self, request: Request, payload: dict[str, Any]) -> Response:
        session, error = self._gate(request)
        if error is not None or session is None:
            return _json(error)
        try:
            data = payload.get("data", payload)
            if isinstance(data, str):
                data = json.loads(data)
            form_id = str(payload.get("formid") or payload.get("FormId") or data.get("FormId") or "")
            entity = self.view(form_id, number=data.get("Number") or None, id_=data.get("Id"))
        except (QueryError, json.JSONDecodeError, ValueError) as exc:
            self._count("query_errors")
            message = exc.message if isinstance(exc, QueryError) else str(exc)
            return _json(_status_error(message, getattr(exc, "msg_code", MSG_BAD_PARAM)))
        with self._lock:
            session.queries += 1
            self._stats["views"] += 1
        if entity is None:
            return _json(_status_error("单据不存在或已被删除", MSG_NOT_FOUND))
        return _json(
            {
                "Result": {
                    "ResponseStatus": {
                        "IsSuccess": True,
                        "Errors": [],
                        "SuccessEntitys": [],
                        "SuccessMessages": [],
                        "MsgCode": 0,
                    },
                    "Result": entity,
                }
            }
        )

    # control API ------------------------------------------------------------------------------------------
    async def _sim_health(self, request: Request) -> Response:
        return _json({"ok": True, "system": self.system})

    async def _sim_counts(self, request: Request) -> Response:
        return _json(self.counts())

    async def _sim_stats(self, request: Request) -> Response:
        return _json(self.stats())

    async def _sim_stats_reset(self, request: Request) -> Response:
        self.reset_stats()
        return _json({"ok": True})

    async def _sim_modify(self, request: Request) -> Response:
        return await self._sim_change(request, self.modify)

    async def _sim_insert(self, request: Request) -> Response:
        return await self._sim_change(request, self.insert)

    async def _sim_change(self, request: Request, fn: Callable[..., dict[str, Any]]) -> Response:
        try:
            body = await request.json()
            result = fn(str(body["form"]), int(body.get("count", 1)), modified_at=body.get("modified_at"))
        except (KeyError, ValueError, TypeError, QueryError) as exc:
            return _json({"error": getattr(exc, "message", str(exc))}, status=400)
        return _json(result)

    async def _sim_truth(self, request: Request) -> Response:
        q = request.query_params
        try:
            records = self.truth(
                q.get("form", "BD_Customer"), offset=int(q.get("offset", 0)), limit=int(q.get("limit", 1000))
            )
        except (ValueError, QueryError) as exc:
            return _json({"error": getattr(exc, "message", str(exc))}, status=400)
        return _json({"form": _form(q.get("form", "BD_Customer")).form_id, "records": records})

    async def _sim_faults(self, request: Request) -> Response:
        if request.method == "POST":
            body = await request.json()
            try:
                self.set_faults(body.get("faults"))
            except ValueError as exc:
                return _json({"error": str(exc)}, status=400)
        return _json({"faults": self.faults.switches})

    async def _sim_expire(self, request: Request) -> Response:
        return _json({"expired": self.expire_sessions()})


# -- response shapes ---------------------------------------------------------------------------------------
def _json(content: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(content, status_code=status)


def _status_error(message: str, msg_code: int, error_code: int = 500) -> dict[str, Any]:
    """``{"Result": {"ResponseStatus": {...}}}`` as Kingdee reports a failed call."""
    return {
        "Result": {
            "ResponseStatus": {
                "ErrorCode": error_code,
                "IsSuccess": False,
                "Errors": [{"FieldName": None, "Message": message, "DIndex": 0}],
                "SuccessEntitys": [],
                "SuccessMessages": [],
                "MsgCode": msg_code,
            }
        }
    }


def _login_result(sid: str | None, message: str | None, result_type: int) -> dict[str, Any]:
    return {
        "Message": message,
        "MessageCode": "CheckPasswordPolicy" if sid else None,
        "LoginResultType": result_type,
        "Context": None
        if sid is None
        else {
            "UserLocale": "zh-CN",
            "LogLocale": "zh-CN",
            "DBid": KingdeeSimulator.ACCT_ID,
            "UserName": KingdeeSimulator.USERNAME,
            "SessionId": sid,
        },
        "KDSVCSessionId": sid,
        "FormId": None,
        "RedirectFormParam": None,
        "FormInputObject": None,
        "ErrorStackTrace": None,
        "Lcid": LCID_ZH_CN,
        "AccessToken": None,
        "KdAccessResult": None,
        "IsSuccessByAPI": sid is not None,
    }


def _query_data(payload: dict[str, Any]) -> dict[str, Any]:
    """The query object from any of the request styles clients use.

    ``{"data": {...}}`` (SDK), ``{"FormId": .., "data": "<json>"}`` (raw) or the classic
    ``{"format": 1, "parameters": [{...}]}`` envelope.
    """
    data: Any = payload.get("data")
    if data is None and isinstance(payload.get("parameters"), list) and payload["parameters"]:
        params = payload["parameters"]
        data = params[-1]
        if isinstance(params[0], str) and len(params) > 1 and not str(params[0]).lstrip().startswith("{"):
            payload = {**payload, "FormId": params[0]}
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError:
            raise QueryError("data 不是合法的 JSON", MSG_BAD_PARAM) from None
    if data is None:
        data = payload
    if not isinstance(data, dict):
        raise QueryError("data 必须是对象", MSG_BAD_PARAM)
    if not (data.get("FormId") or data.get("formid")):
        form_id = payload.get("FormId") or payload.get("formid")
        if form_id:
            data = {**data, "FormId": form_id}
    return data


_REF_ID_COLUMNS = frozenset(
    {
        "FCustId",
        "FCUSTOMERID",
        "FSELLER",
        "FSalerId",
        "FSaleOrgId",
        "FMaterialId",
        "FTRADINGCURRID",
        "FCreateOrgId",
        "FUseOrgId",
    }
)


def _orm_entity(
    cols: Sequence[str], row: Sequence[Any], kinds: dict[str, str], pk: str, skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A row in View's ORM style: ``Id``, ``Number``, multilingual ``Name``, reference objects."""
    out: dict[str, Any] = {}
    refs: dict[str, dict[str, Any]] = {}
    for col, value in zip(cols, row, strict=True):
        if col.startswith("_") or col in skip:
            continue
        if kinds.get(col) == "datetime" and isinstance(value, int):
            value = kd_format(value)
        if col == pk:
            out["Id"] = value
            continue
        for suffix, prop in (
            ("_FNumber", "Number"),
            ("_FName", "Name"),
            ("_FSpecification", "Specification"),
        ):
            if col.endswith(suffix):
                ref = refs.setdefault(col[1 : -len(suffix)], {})
                ref[prop] = [{"Key": LCID_ZH_CN, "Value": value}] if prop != "Number" else value
                break
        else:
            if col in _REF_ID_COLUMNS:
                out[col[1:] + "_Id"] = value
            elif col == "FName":
                out["Name"] = [{"Key": LCID_ZH_CN, "Value": value}]
            else:
                out[col[1:]] = value
    for name, ref in refs.items():
        if name + "_Id" in out:
            ref = {"Id": out[name + "_Id"], **ref}
        out[name] = ref
    return out


def iter_form_ids() -> Iterator[str]:
    """Form ids the simulator serves."""
    return (f.form_id for f in FORMS.values())
