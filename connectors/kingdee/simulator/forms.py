"""The Kingdee forms the simulator serves (schema, FieldKeys) and Kingdee's value formats.

Kingdee times are naive server-local times (interpreted as +08:00); the simulator stores them as
integer milliseconds and formats them as Kingdee's JSON does.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from connectors.kingdee.fields import CUSTOMER_CONTACT, CUSTOMER_REGISTRATION, SALES_ORDER_STATES_AND_DELIVERY

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


class QueryError(ValueError):
    """A query the server rejects; becomes a ``ResponseStatus`` error with ``msg_code``."""

    def __init__(self, message: str, msg_code: int = MSG_EXCEPTION) -> None:
        super().__init__(message)
        self.message = message
        self.msg_code = msg_code


def to_ms(value: dt.datetime) -> int:
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
    return to_ms(value) + (int((frac or "0").ljust(3, "0")[:3]))


def select_expr(fd: FieldDef) -> str:
    """SELECT expression for a field; datetimes are formatted in SQL (C speed) as :func:`kd_format`
    does, and malformed text in a datetime column passes through unchanged."""
    if fd.kind != "datetime":
        return fd.sql
    x = fd.sql
    return (
        f"CASE WHEN typeof({x}) = 'integer' THEN strftime('%Y-%m-%dT%H:%M:%S', {x} / 1000, 'unixepoch') || "
        f"CASE WHEN {x} % 1000 = 0 THEN '' ELSE rtrim(printf('.%03d', {x} % 1000), '0') END ELSE {x} END"
    )


def now_local_ms() -> int:
    """Now, as Kingdee's naive +08:00 milliseconds."""
    return to_ms(dt.datetime.now(_CST).replace(tzinfo=None))


# -- forms -----------------------------------------------------------------------------------------
def field_key(column: str) -> str:
    """The FieldKey of a stored column: ``FSELLER_FNumber`` -> ``FSELLER.FNumber``."""
    for suffix in ("_FNumber", "_FName", "_FSpecification"):
        if column.endswith(suffix):
            return column[: -len(suffix)] + "." + suffix[1:]
    return column


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
        for col in self.columns:
            if col.startswith("_"):
                continue
            self._add(FieldDef(field_key(col), f'h."{col}"', self.kinds.get(col, "text")))
        if self.entry_table:
            for col in self.entry_columns:
                if col == "FID":
                    continue
                fd = FieldDef(
                    f"{self.entry_name}_{field_key(col)}",
                    f'e."{col}"',
                    self.entry_kinds.get(col, "text"),
                    True,
                )
                self._add(fd)
                # Kingdee entry field keys are unique within a form, so they also work unprefixed.
                self._add(FieldDef(field_key(col), fd.sql, fd.kind, True), alias=True)
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
    *CUSTOMER_REGISTRATION,
    "FFoundDate",
    *CUSTOMER_CONTACT,
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
    # Custom fields (a dev partner's F_PAEZ_ prefix, as real accounts have): the credit limit and
    # receivable balance the ERP owns, and tongbu's external id (the create intent key).
    "F_PAEZ_CreditLimit",
    "F_PAEZ_ARBalance",
    "F_TB_ExternalId",
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
    *SALES_ORDER_STATES_AND_DELIVERY,
    "FCreateDate",
    "FModifyDate",
    "FApproveDate",
    "F_TB_ExternalId",
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
            "F_PAEZ_CreditLimit": _DEC,
            "F_PAEZ_ARBalance": _DEC,
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


def form_def(name: str) -> FormDef:
    """The form ``name`` (a FormId or a stream alias such as ``customers``), else :class:`QueryError`."""
    key = _FORM_ALIASES.get(name.lower(), name.lower())
    try:
        return FORMS[key]
    except KeyError:
        raise QueryError(f"业务对象不存在：{name}", MSG_BAD_PARAM) from None
