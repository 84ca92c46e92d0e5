"""The simulator's write path: Save (create and modify), BatchSave, Submit, Audit, UnAudit, Delete,
and the ``ExcuteOperation`` operations (Forbid/Enable, Cancel), as the K/3 Cloud WebAPI behaves.

What a connector must survive is reproduced on purpose (``../shared/research/bidirectional-sync.md``
§3.4, ``external-apis.md`` §2.4):

* ``Save`` is create (``FCUSTID``/``FID`` 0 or absent) and modify (the id set). On modify,
  ``NeedUpDateFields`` lists the fields to update; without it every field in ``Model`` is applied;
* every applied field fires its value-update event, *even when the value is unchanged*: re-sending an
  order's ``FCustId`` resets the fields the customer drives (settlement currency, salesperson,
  delivery address) to the customer's defaults, clobbering hand edits (counted as
  ``value_updates``/``cascade_resets`` in the stats);
* ``IsDeleteEntry`` defaults to true: a modify whose ``FSaleOrderEntry`` leaves out existing rows
  deletes them; a row with ``FEntryID`` modifies that line, one without adds a line;
* ``FNumber``/``FBillNo`` are unique; ``FName`` (customers), ``FCreateOrgId``, ``FTRADINGCURRID``,
  an order's ``FDate``, ``FCustId``, ``FSaleOrgId`` and at least one line with material and quantity
  are required; base data is referenced by ``{"FNumber": ...}`` and must exist;
* a submitted (B) or audited (C) document refuses ``Save`` (MsgCode 12) until it is UnAudited (C ->
  D) or its submission withdrawn (``CancelAssign``, B -> A); audited documents refuse ``Delete``;
* the server computes what is derived: ``FModifyDate`` on every write, line ``FAmount``/
  ``FAllAmount`` from quantity and prices, ``FPrice`` from ``FTaxPrice`` and the tax rate, the
  header ``FBillAllAmount``, the customer's names behind referenced numbers, and auto numbers.

Errors are :class:`WriteError` with Kingdee's ``Errors[]`` items (``FieldName``, ``Message``,
``DIndex``) and a MsgCode; the HTTP layer (:mod:`.app`) wraps them in ``Result.ResponseStatus``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.kingdee.fields import CUSTOMER_CONTACT, CUSTOMER_REGISTRATION
from connectors.kingdee.simulator import data as kdata
from connectors.kingdee.simulator.forms import (
    MSG_BAD_PARAM,
    MSG_NO_FIELD,
    MSG_NOT_FOUND,
    FormDef,
    form_def,
    kd_format,
    parse_literal_ms,
)
from connectors.kit import fakedata as fd

# MsgCode values the write path adds (Kingdee API doc): 11 验证失败, 12 不可操作, 13 网控冲突.
MSG_VALIDATION, MSG_NOT_ALLOWED, MSG_NETWORK_CONTROL = 11, 12, 13

#: the most entities one BatchSave (or a Submit/Audit/Delete list) may carry
MAX_BATCH = 1000
#: the most lines one order may have
MAX_LINES = 2000


@dataclass
class WriteError(Exception):
    """A refused write: Kingdee ``Errors[]`` items and the MsgCode of the response."""

    errors: list[dict[str, Any]]
    msg_code: int = MSG_VALIDATION

    def __str__(self) -> str:
        return "; ".join(str(e.get("Message")) for e in self.errors)


def _err(
    message: str, field_name: str | None = None, dindex: int = 0, msg_code: int = MSG_VALIDATION
) -> WriteError:
    return WriteError([{"FieldName": field_name, "Message": message, "DIndex": dindex}], msg_code)


@dataclass
class SaveResult:
    """One saved entity: internal id, number, and what the write did (for counters)."""

    id: int
    number: str
    created: bool
    fields: list[str] = field(default_factory=list)
    cascades: int = 0


# -- base data behind {"FNumber": ...} references ------------------------------------------------------
def _ref_tables() -> dict[str, dict[str, tuple[Any, str]]]:
    """FieldKey (lower) -> number -> (internal id or None, name)."""
    sellers = {no: (sid, name) for sid, no, name, _dept in kdata._SELLERS}
    depts = {no: (None, name) for no, name in kdata._DEPTS}
    currencies = {no: (cid, name) for cid, no, name in kdata._CURRENCIES}
    orgs = {kdata._ORG[1]: (kdata._ORG[0], kdata._ORG[2])}
    provinces = {c.division[:2] + "0000": (None, c.province) for c in fd.CITIES}
    return {
        "fcountry": {"China": (None, "中国")},
        "fprovincial": provinces,
        "fcusttypeid": {no: (None, name) for no, name in kdata._CUST_TYPES},
        "fgroup": {no: (None, name) for no, name in kdata._GROUPS},
        "fseller": sellers,
        "fsaldeptid": depts,
        "ftradingcurrid": currencies,
        "fcreateorgid": orgs,
        "fuseorgid": orgs,
        "fbilltypeid": {"XSDD01_SYS": (None, "标准销售订单")},
        "fsaleorgid": orgs,
        "fsaledeptid": depts,
        "fsalerid": sellers,
        "fsettlecurrid": currencies,
    }


REFS = _ref_tables()
MATERIALS = {m[0]: (200_000 + i, m) for i, m in enumerate(kdata._MATERIALS)}
UNITS = {m[3]: m[4] for m in kdata._MATERIALS}

# Plain (non-reference) fields a Save may set, by form; everything else in Model is ignored as the
# real server ignores unknown or locked keys (FDocumentStatus, FModifyDate, FBillAllAmount, ...).
_CUSTOMER_TEXT = (
    *CUSTOMER_REGISTRATION,
    *CUSTOMER_CONTACT,
    "F_TB_ExternalId",
)
_CUSTOMER_NUMBERS = ("F_PAEZ_CreditLimit", "F_PAEZ_ARBalance")
_CUSTOMER_DATES = ("FFoundDate",)
_CUSTOMER_REFS = (
    "FCOUNTRY",
    "FPROVINCIAL",
    "FCustTypeId",
    "FGroup",
    "FSELLER",
    "FSALDEPTID",
    "FTRADINGCURRID",
    "FCreateOrgId",
    "FUseOrgId",
)
_ORDER_TEXT = ("FBillNo", "FLinkMan", "FLinkPhone", "FReceiveAddress", "FNote", "F_TB_ExternalId")
_ORDER_DATES = ("FDate",)
_ORDER_REFS = ("FBillTypeID", "FSaleOrgId", "FSaleDeptId", "FSalerId", "FSettleCurrId", "FCustId")
_LINE_FIELDS = ("FMaterialId", "FUnitID", "FQty", "FPrice", "FTaxPrice", "FEntryTaxRate", "FDeliveryDate")
#: fields whose value-update event resets others (the customer drives currency, seller, address)
_CUSTOMER_DRIVEN = ("FSettleCurrId", "FSalerId", "FReceiveAddress")


def _truthy(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no")
    return bool(value)


def _lower_keys(model: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    return {str(k).lower(): (str(k), v) for k, v in model.items()}


def _ref_number(value: Any) -> str | None:
    """The number of a ``{"FNumber": x}`` reference (``{"FNUMBER": x}`` too); a bare value as is."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if str(k).lower() == "fnumber":
                return None if v in (None, "") else str(v)
        return None
    return None if value in (None, "") else str(value)


def _decimal(value: Any, name: str, dindex: int) -> float:
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        raise _err(f"字段“{name}”的值“{value}”不是有效的数值", name, dindex) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise _err(f"字段“{name}”的值“{value}”不是有效的数值", name, dindex)
    return number


def _date(value: Any, name: str, dindex: int) -> int | None:
    if value in (None, ""):
        return None
    ms = parse_literal_ms(str(value).replace("T", " "))
    if ms is None:
        raise _err(f"字段“{name}”的值“{value}”不是有效的日期", name, dindex)
    if ms <= parse_literal_ms("1900-01-01"):  # Kingdee's "empty date" sentinel
        return None
    return ms


class Writer:
    """Applies write services to the store's SQLite database (callers hold the store's lock)."""

    def __init__(self, db: sqlite3.Connection, tick: Any, next_number: Any) -> None:
        self.db = db
        self.tick = tick
        self.next_number = next_number

    # -- Save -------------------------------------------------------------------------------------
    def save(
        self, form_id: str, data: Mapping[str, Any], model: Mapping[str, Any], dindex: int = 0
    ) -> SaveResult:
        """Create or modify one entity; raises :class:`WriteError` (nothing applied) when refused."""
        form = form_def(form_id)
        if not isinstance(model, Mapping):
            raise _err("Model 必须是对象", None, dindex, MSG_BAD_PARAM)
        need = data.get("NeedUpDateFields")
        if isinstance(need, str):
            need = [p for p in (s.strip() for s in need.split(",")) if p]
        if need is not None and not isinstance(need, list):
            raise _err("NeedUpDateFields 必须是数组", "NeedUpDateFields", dindex, MSG_BAD_PARAM)
        need_set = {str(n).lower() for n in need or []}
        delete_entry = _truthy(data.get("IsDeleteEntry"), True)
        keys = _lower_keys(model)
        pk = form.pk.lower()
        raw_id = keys.get(pk, (None, None))[1]
        try:
            the_id = int(raw_id or 0)
        except (TypeError, ValueError):
            raise _err(f"{form.pk} 的值“{raw_id}”不是有效的内码", form.pk, dindex, MSG_BAD_PARAM) from None
        self.db.execute("SAVEPOINT kd_save")
        try:
            if the_id == 0:
                result = self._create(form, keys, dindex)
            else:
                result = self._modify(form, the_id, keys, need_set, delete_entry, dindex)
        except BaseException:
            self.db.execute("ROLLBACK TO kd_save")
            self.db.execute("RELEASE kd_save")
            raise
        self.db.execute("RELEASE kd_save")
        return result

    def _applied(
        self, keys: Mapping[str, tuple[str, Any]], need: set[str], allowed: Sequence[str]
    ) -> list[str]:
        """The fields of ``allowed`` this Save applies: present in Model, and named in
        NeedUpDateFields when that is given (a modify)."""
        out = []
        for name in allowed:
            low = name.lower()
            if low in keys and (not need or low in need):
                out.append(name)
        return out

    def _values(
        self, form: FormDef, keys: Mapping[str, tuple[str, Any]], names: Sequence[str], dindex: int
    ) -> dict[str, Any]:
        """Column values for the applied fields (references resolved to id, number and name)."""
        cols: dict[str, Any] = {}
        text, numbers, dates, refs = _field_sets(form)
        for name in names:
            value = keys[name.lower()][1]
            if name in text:
                cols[name] = None if value is None else str(value)
            elif name in numbers:
                cols[name] = None if value in (None, "") else _decimal(value, name, dindex)
            elif name in dates:
                cols[name] = _date(value, name, dindex)
            elif name in refs:
                cols.update(self._ref(form, name, value, dindex))
        return cols

    def _ref(self, form: FormDef, name: str, value: Any, dindex: int) -> dict[str, Any]:
        number = _ref_number(value)
        cols: dict[str, Any] = {}
        has_id = form.kinds.get(name) == "int"
        if number is None:
            if has_id:
                cols[name] = None
            if f"{name}_FNumber" in form.columns:
                cols[f"{name}_FNumber"] = None
            if f"{name}_FName" in form.columns:
                cols[f"{name}_FName"] = None
            return cols
        if name == "FCustId":
            row = self.db.execute(
                'SELECT "FCUSTID" FROM customers WHERE "FNumber" = ? AND "FForbidStatus" = \'A\'', (number,)
            ).fetchone()
            if row is None:
                raise _err(f"字段“客户”的值“{number}”在基础资料中不存在或已禁用", name, dindex, MSG_NO_FIELD)
            return {"FCustId": int(row[0])}
        table = REFS.get(name.lower(), {})
        if number not in table:
            raise _err(f"字段“{name}”的值“{number}”在基础资料中不存在", name, dindex, MSG_NO_FIELD)
        ref_id, ref_name = table[number]
        if has_id and name in form.columns:
            cols[name] = ref_id
        if f"{name}_FNumber" in form.columns:
            cols[f"{name}_FNumber"] = number
        if f"{name}_FName" in form.columns:
            cols[f"{name}_FName"] = ref_name
        return cols

    def _create(self, form: FormDef, keys: Mapping[str, tuple[str, Any]], dindex: int) -> SaveResult:
        text, numbers, dates, refs = _field_sets(form)
        names = self._applied(keys, set(), (*text, *numbers, *dates, *refs))
        cols = self._values(form, keys, names, dindex)
        now = self.tick()
        number_col = form.number_column
        number = cols.get(number_col)
        if form.form_id == "BD_Customer":
            self._require(
                cols,
                dindex,
                ("FName", "客户名称"),
                ("FCreateOrgId", "创建组织"),
                ("FTRADINGCURRID", "结算币别"),
            )
            cols.setdefault("FUseOrgId", cols.get("FCreateOrgId"))
            cols.setdefault("FUseOrgId_FNumber", cols.get("FCreateOrgId_FNumber"))
            cols.setdefault("FForbidStatus", "A")
        else:
            self._require(
                cols,
                dindex,
                ("FDate", "日期"),
                ("FCustId", "客户"),
                ("FSaleOrgId", "销售组织"),
                ("FBillTypeID_FNumber", "单据类型"),
            )
            cols.setdefault("FCloseStatus", "A")
            cols.setdefault("FCancelStatus", "A")
            self._customer_defaults(cols, set(names), force=True)
        if not number:
            number = self.next_number(form)
            cols[number_col] = number
        self._unique(form, number, None, dindex)
        new_id = int(
            self.db.execute(
                f'SELECT COALESCE(MAX("{form.pk}"), {kdata.ID_BASE - 1}) + 1 FROM "{form.table}"'
            ).fetchone()[0]
        )
        cols.update({form.pk: new_id, "FDocumentStatus": "A", "FCreateDate": now, "FModifyDate": now})
        lines_written = 0
        if form.entry_table:
            entry = keys.get((form.entry_name or "").lower(), (None, None))[1]
            if not isinstance(entry, list) or not entry:
                raise _err("单据体“订单明细”至少需要一行", form.entry_name, dindex)
            # insert the header first (lines reference it), then the lines, then the totals
            self._insert_row(form.table, cols)
            for i, row in enumerate(entry):
                self._add_line(form, new_id, row, i + 1, dindex)
                lines_written += 1
            self._recompute(form, new_id)
        else:
            self._insert_row(form.table, cols)
        return SaveResult(new_id, str(number), True, names + (["FSaleOrderEntry"] if lines_written else []))

    def _modify(
        self,
        form: FormDef,
        the_id: int,
        keys: Mapping[str, tuple[str, Any]],
        need: set[str],
        delete_entry: bool,
        dindex: int,
    ) -> SaveResult:
        row = self.db.execute(
            f'SELECT "{form.number_column}", "FDocumentStatus" FROM "{form.table}" WHERE "{form.pk}" = ?',
            (the_id,),
        ).fetchone()
        if row is None:
            raise _err(f"内码为 {the_id} 的数据不存在或已被删除", form.pk, dindex, MSG_NOT_FOUND)
        number, status = row
        if status in ("B", "C"):
            what = "已审核" if status == "C" else "已提交（审核中）"
            raise _err(f"单据“{number}”{what}，不允许修改；请先反审核", None, dindex, 12)
        text, numbers, dates, refs = _field_sets(form)
        names = self._applied(keys, need, (*text, *numbers, *dates, *refs))
        cols = self._values(form, keys, names, dindex)
        if form.form_id == "BD_Customer" and "FName" in cols and not cols["FName"]:
            raise _err("“客户名称”是必填项", "FName", dindex)
        new_number = cols.get(form.number_column)
        if form.number_column in cols:
            if not new_number:
                raise _err("编码不能为空", form.number_column, dindex)
            self._unique(form, str(new_number), the_id, dindex)
        cascades = 0
        if form.form_id == "SAL_SaleOrder" and "FCustId" in names:
            # The customer's value-update event fires whether or not the value changed.
            cascades = self._customer_defaults(cols, set(names), force=False)
        cols["FModifyDate"] = self.tick()
        sets = ", ".join(f'"{c}" = ?' for c in cols)
        self.db.execute(f'UPDATE "{form.table}" SET {sets} WHERE "{form.pk}" = ?', [*cols.values(), the_id])
        entry_key = (form.entry_name or "").lower()
        if form.entry_table and entry_key in keys and (not need or entry_key in need):
            self._modify_lines(form, the_id, keys[entry_key][1], need, delete_entry, dindex)
            names = [*names, form.entry_name or ""]
        if form.entry_table:
            self._recompute(form, the_id)
        return SaveResult(the_id, str(new_number or number), False, names, cascades)

    def _require(self, cols: Mapping[str, Any], dindex: int, *fields: tuple[str, str]) -> None:
        missing = [(f, label) for f, label in fields if cols.get(f) in (None, "")]
        if missing:
            raise WriteError(
                [
                    {
                        "FieldName": f.removesuffix("_FNumber"),
                        "Message": f"“{label}”是必填项",
                        "DIndex": dindex,
                    }
                    for f, label in missing
                ],
                MSG_VALIDATION,
            )

    def _unique(self, form: FormDef, number: str, own_id: int | None, dindex: int) -> None:
        hit = self.db.execute(
            f'SELECT "{form.pk}" FROM "{form.table}" WHERE "{form.number_column}" = ? AND "{form.pk}" IS NOT ?',
            (number, own_id),
        ).fetchone()
        if hit is not None:
            raise _err(
                f"违反字段唯一性要求：编码唯一。[{number}]已经被内码为 {hit[0]} 的数据使用",
                form.number_column,
                dindex,
            )

    def _customer_defaults(self, cols: dict[str, Any], applied: set[str], *, force: bool) -> int:
        """The customer's value-update event: currency, salesperson and address follow the customer
        unless this same Save sets them. Returns how many fields it reset."""
        cust = self.db.execute(
            'SELECT "FTRADINGCURRID_FNumber", "FTRADINGCURRID_FName", "FSELLER", "FSELLER_FNumber", "FSELLER_FName", '
            '"FADDRESS" FROM customers WHERE "FCUSTID" = ?',
            (cols.get("FCustId"),),
        ).fetchone()
        if cust is None:
            return 0
        defaults = {
            "FSettleCurrId": {"FSettleCurrId_FNumber": cust[0], "FSettleCurrId_FName": cust[1]},
            "FSalerId": {"FSalerId": cust[2], "FSalerId_FNumber": cust[3], "FSalerId_FName": cust[4]},
            "FReceiveAddress": {"FReceiveAddress": cust[5]},
        }
        n = 0
        for name in _CUSTOMER_DRIVEN:
            if name in applied:
                continue
            for col, value in defaults[name].items():
                if force:
                    cols.setdefault(col, value)
                else:
                    cols[col] = value
            n += 1
        return n

    # -- lines --------------------------------------------------------------------------------------
    def _line_values(self, row: Mapping[str, Any], names: Sequence[str], dindex: int) -> dict[str, Any]:
        keys = _lower_keys(row)
        cols: dict[str, Any] = {}
        for name in names:
            value = keys[name.lower()][1]
            if name == "FMaterialId":
                number = _ref_number(value)
                if number is None or number not in MATERIALS:
                    raise _err(
                        f"字段“物料编码”的值“{number}”在基础资料中不存在", "FMaterialId", dindex, MSG_NO_FIELD
                    )
                mid, m = MATERIALS[number]
                cols.update(
                    {
                        "FMaterialId": mid,
                        "FMaterialId_FNumber": number,
                        "FMaterialId_FName": m[1],
                        "FMaterialId_FSpecification": m[2],
                    }
                )
                cols.setdefault("FUnitID_FNumber", m[3])
                cols.setdefault("FUnitID_FName", m[4])
                cols.setdefault("FEntryTaxRate", float(m[7]))
            elif name == "FUnitID":
                number = _ref_number(value)
                if number not in UNITS:
                    raise _err(
                        f"字段“销售单位”的值“{number}”在基础资料中不存在", "FUnitID", dindex, MSG_NO_FIELD
                    )
                cols["FUnitID_FNumber"], cols["FUnitID_FName"] = number, UNITS[number]
            elif name == "FDeliveryDate":
                cols[name] = _date(value, name, dindex)
            else:
                cols[name] = None if value in (None, "") else _decimal(value, name, dindex)
        return cols

    def _add_line(self, form: FormDef, fid: int, row: Any, seq: int, dindex: int) -> None:
        if not isinstance(row, Mapping):
            raise _err("单据体行必须是对象", form.entry_name, dindex, MSG_BAD_PARAM)
        keys = _lower_keys(row)
        names = [n for n in _LINE_FIELDS if n.lower() in keys]
        cols = self._line_values(row, names, dindex)
        if cols.get("FMaterialId") is None:
            raise _err(f"第{seq}行分录，“物料编码”是必填项", "FMaterialId", dindex)
        if not cols.get("FQty"):
            raise _err(f"第{seq}行分录，“销售数量”必须大于零", "FQty", dindex)
        next_entry = int(
            self.db.execute('SELECT COALESCE(MAX("FEntryID"), 0) + 1 FROM sale_order_lines').fetchone()[0]
        )
        cols.update({"FEntryID": next_entry, "FID": fid, "FSeq": seq})
        self._fill_prices(cols, set(names))
        self._insert_row(form.entry_table or "", cols)

    def _modify_lines(
        self, form: FormDef, fid: int, entry: Any, need: set[str], delete_entry: bool, dindex: int
    ) -> None:
        if not isinstance(entry, list):
            raise _err("单据体必须是数组", form.entry_name, dindex, MSG_BAD_PARAM)
        if len(entry) > MAX_LINES:
            raise _err(f"单据体最多 {MAX_LINES} 行", form.entry_name, dindex, MSG_BAD_PARAM)
        existing = {
            int(r[0]): r[1]
            for r in self.db.execute(
                'SELECT "FEntryID", "FSeq" FROM sale_order_lines WHERE "FID" = ?', (fid,)
            )
        }
        kept: set[int] = set()
        seq = max(existing.values(), default=0)
        for row in entry:
            if not isinstance(row, Mapping):
                raise _err("单据体行必须是对象", form.entry_name, dindex, MSG_BAD_PARAM)
            keys = _lower_keys(row)
            raw = keys.get("fentryid", (None, None))[1]
            try:
                entry_id = int(raw or 0)
            except (TypeError, ValueError):
                raise _err(f"FEntryID 的值“{raw}”无效", "FEntryID", dindex, MSG_BAD_PARAM) from None
            if entry_id == 0:
                seq += 1
                self._add_line(form, fid, row, seq, dindex)
                continue
            if entry_id not in existing:
                raise _err(f"分录内码 {entry_id} 不属于该单据", "FEntryID", dindex, MSG_NOT_FOUND)
            kept.add(entry_id)
            names = [n for n in _LINE_FIELDS if n.lower() in keys and (not need or n.lower() in need)]
            cols = self._line_values(row, names, dindex)
            if not cols:
                continue
            if "FQty" in cols and not cols["FQty"]:
                raise _err(f"第{existing[entry_id]}行分录，“销售数量”必须大于零", "FQty", dindex)
            current = dict(
                zip(
                    ("FPrice", "FTaxPrice", "FEntryTaxRate"),
                    self.db.execute(
                        'SELECT "FPrice", "FTaxPrice", "FEntryTaxRate" FROM sale_order_lines WHERE "FEntryID" = ?',
                        (entry_id,),
                    ).fetchone(),
                    strict=True,
                )
            )
            merged = {**current, **cols}
            self._fill_prices(merged, set(names))
            cols.update({k: merged[k] for k in ("FPrice", "FTaxPrice")})
            sets = ", ".join(f'"{c}" = ?' for c in cols)
            self.db.execute(
                f'UPDATE sale_order_lines SET {sets} WHERE "FEntryID" = ?', [*cols.values(), entry_id]
            )
        if delete_entry:
            gone = [e for e in existing if e not in kept]
            self.db.executemany('DELETE FROM sale_order_lines WHERE "FEntryID" = ?', [(e,) for e in gone])
        if not self.db.execute('SELECT 1 FROM sale_order_lines WHERE "FID" = ? LIMIT 1', (fid,)).fetchone():
            raise _err("单据体“订单明细”至少需要一行", form.entry_name, dindex)

    @staticmethod
    def _fill_prices(cols: dict[str, Any], given: set[str]) -> None:
        """Kingdee derives the price excluding tax from the price including it, or the other way."""
        rate = float(cols.get("FEntryTaxRate") or 0.0)
        if "FTaxPrice" in given and cols.get("FTaxPrice") is not None:
            cols["FPrice"] = fd.round2(float(cols["FTaxPrice"]) / (1 + rate / 100))
        elif "FPrice" in given and cols.get("FPrice") is not None:
            cols["FTaxPrice"] = fd.round2(float(cols["FPrice"]) * (1 + rate / 100))
        elif "FEntryTaxRate" in given and cols.get("FTaxPrice") is not None:
            cols["FPrice"] = fd.round2(float(cols["FTaxPrice"]) / (1 + rate / 100))
        cols.setdefault("FPrice", 0.0)
        cols.setdefault("FTaxPrice", 0.0)

    def _recompute(self, form: FormDef, fid: int) -> None:
        """Line amounts and the order total, as the server computes them on every save."""
        self.db.execute(
            'UPDATE sale_order_lines SET "FAmount" = ROUND("FQty" * "FPrice" + 1e-9, 2), '
            '"FAllAmount" = ROUND("FQty" * "FTaxPrice" + 1e-9, 2) WHERE "FID" = ?',
            (fid,),
        )
        self.db.execute(
            'UPDATE sale_orders SET "FBillAllAmount" = (SELECT ROUND(SUM("FAllAmount") + 1e-9, 2) FROM sale_order_lines '
            'WHERE sale_order_lines."FID" = ?) WHERE "FID" = ?',
            (fid, fid),
        )

    def _insert_row(self, table: str, cols: Mapping[str, Any]) -> None:
        names = ", ".join(f'"{c}"' for c in cols)
        marks = ", ".join("?" * len(cols))
        self.db.execute(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', list(cols.values()))

    # -- lifecycle ---------------------------------------------------------------------------------------
    def targets(self, form: FormDef, data: Mapping[str, Any]) -> list[tuple[int | None, str]]:
        """(id or None when not found, the number or id as given) for ``Numbers`` / ``Ids``."""
        numbers = data.get("Numbers") or []
        ids = data.get("Ids") or []
        if isinstance(numbers, str):
            numbers = [n for n in (p.strip() for p in numbers.split(",")) if n]
        if isinstance(ids, str):
            ids = [n for n in (p.strip() for p in ids.split(",")) if n]
        if not isinstance(numbers, list) or not isinstance(ids, list):
            raise _err("Numbers/Ids 必须是数组或逗号分隔的文本", None, 0, MSG_BAD_PARAM)
        if not numbers and not ids:
            raise _err("Numbers 和 Ids 不能同时为空", None, 0, MSG_BAD_PARAM)
        if len(numbers) + len(ids) > MAX_BATCH:
            raise _err(f"一次最多操作 {MAX_BATCH} 条数据", None, 0, MSG_BAD_PARAM)
        out: list[tuple[int | None, str]] = []
        for n in numbers:
            row = self.db.execute(
                f'SELECT "{form.pk}" FROM "{form.table}" WHERE "{form.number_column}" = ?', (str(n),)
            ).fetchone()
            out.append((int(row[0]) if row else None, str(n)))
        for i in ids:
            try:
                the_id = int(i)
            except (TypeError, ValueError):
                out.append((None, str(i)))
                continue
            row = self.db.execute(
                f'SELECT "{form.pk}" FROM "{form.table}" WHERE "{form.pk}" = ?', (the_id,)
            ).fetchone()
            out.append((the_id if row else None, str(i)))
        return out

    def transition(self, form: FormDef, op: str, the_id: int, label: str, dindex: int) -> str:
        """Apply ``op`` (submit, audit, unaudit, cancelassign, delete, forbid, enable, cancel) to one
        entity; returns its number. Raises :class:`WriteError` when its state does not allow it."""
        number, status = self.db.execute(
            f'SELECT "{form.number_column}", "FDocumentStatus" FROM "{form.table}" WHERE "{form.pk}" = ?',
            (the_id,),
        ).fetchone()
        allowed = {
            "submit": ("AD", "B", "只有创建或重新审核状态的数据才能提交"),
            "audit": ("B", "C", "只有审核中的数据才能审核"),
            "unaudit": ("C", "D", "只有已审核的数据才能反审核"),
            "cancelassign": ("B", "A", "只有审核中的数据才能撤销"),
        }
        now = self.tick()
        if op in allowed:
            states, new, why = allowed[op]
            if status not in states:
                raise _err(f"{label}：{why}（当前状态 {status}）", "FDocumentStatus", dindex, 12)
            approve = now if op == "audit" else (None if op == "unaudit" else _KEEP)
            sets = '"FDocumentStatus" = ?, "FModifyDate" = ?'
            args: list[Any] = [new, now]
            if approve is not _KEEP:
                sets += ', "FApproveDate" = ?'
                args.append(approve)
            self.db.execute(f'UPDATE "{form.table}" SET {sets} WHERE "{form.pk}" = ?', [*args, the_id])
        elif op == "delete":
            if status in ("B", "C"):
                raise _err(f"{label}：已提交或已审核的数据不允许删除", "FDocumentStatus", dindex, 12)
            self.db.execute(f'DELETE FROM "{form.table}" WHERE "{form.pk}" = ?', (the_id,))
            if form.entry_table:
                self.db.execute(f'DELETE FROM "{form.entry_table}" WHERE "FID" = ?', (the_id,))
        elif op in ("forbid", "enable"):
            if form.form_id != "BD_Customer":
                raise _err(f"{form.form_id} 不支持操作 {op}", None, dindex, MSG_BAD_PARAM)
            if op == "forbid" and status != "C":
                raise _err(f"{label}：只有已审核的数据才能禁用", "FDocumentStatus", dindex, 12)
            self.db.execute(
                'UPDATE customers SET "FForbidStatus" = ?, "FModifyDate" = ? WHERE "FCUSTID" = ?',
                ("B" if op == "forbid" else "A", now, the_id),
            )
        elif op in ("cancel", "undocancel"):
            if form.form_id != "SAL_SaleOrder":
                raise _err(f"{form.form_id} 不支持操作 {op}", None, dindex, MSG_BAD_PARAM)
            self.db.execute(
                'UPDATE sale_orders SET "FCancelStatus" = ?, "FModifyDate" = ? WHERE "FID" = ?',
                ("B" if op == "cancel" else "A", now, the_id),
            )
        else:
            raise _err(f"不支持的操作：{op}", None, dindex, MSG_BAD_PARAM)
        return str(number)


_KEEP = object()


def _field_sets(form: FormDef) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    if form.form_id == "BD_Customer":
        return _CUSTOMER_TEXT, _CUSTOMER_NUMBERS, _CUSTOMER_DATES, _CUSTOMER_REFS
    if form.form_id == "SAL_SaleOrder":
        return _ORDER_TEXT, (), _ORDER_DATES, _ORDER_REFS
    raise _err(f"业务对象 {form.form_id} 在模拟器中只读", None, 0, MSG_BAD_PARAM)


def parse_data(raw: Any) -> dict[str, Any]:
    """The ``data`` of a write request: an object, or JSON text of one (both occur in the wild)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise _err("data 不是合法的 JSON", None, 0, MSG_BAD_PARAM) from None
    if not isinstance(raw, dict):
        raise _err("data 必须是对象", None, 0, MSG_BAD_PARAM)
    return raw


def format_ms(ms: int | None) -> str | None:
    """Milliseconds as Kingdee's datetime text (None stays None)."""
    return None if ms is None else kd_format(ms)
