"""``tap-kingdee``: Kingdee K/3 Cloud (金蝶云星空) customers, sales orders and receivables.

Every stream is incremental on ``FModifyDate`` with a compound cursor ``(FModifyDate, internal id)``
read page by page with keyset paging (``FModifyDate > ts OR (FModifyDate = ts AND id > n)``), so
records sharing a timestamp are never skipped at a page boundary, and a ``lookback_seconds`` window
re-reads the tail of the previous run to catch transactions that committed late with an older time.
Records come out in strictly ascending ``(FModifyDate, id)`` order. Rows whose ``FModifyDate`` is NULL
(never modified, on some K/3 Cloud versions) come first, read in their own keyset pass on the id
(NULL fails every comparison, so they cannot be paged by time); they carry ``FModifyDate``
``1900-01-01T00:00:00.000+08:00`` and are read again only by a full refresh (:mod:`connectors.kit.cursor`).

Property names are the Kingdee FieldKeys with ``.`` turned into ``_`` (``FSELLER.FName`` ->
``FSELLER_FName``); sales order lines drop their ``FSaleOrderEntry_`` prefix. ``FModifyDate`` is
normalised to ISO 8601 with ``+08:00``; every other date is passed through exactly as Kingdee sends
it (naive server-local time), and amounts are numbers, or the raw text when the source holds
something that is not a number, so validation and quarantine can happen downstream with the
original value in hand.

The in-process runner reads a stream without Singer messages: it calls ``get_records`` and stores
``stream.cursor_for_record(record)``; it hands a stored cursor back either as Singer state or with
``stream.start_cursor_from(cursor)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar

from singer_sdk import Stream, Tap
from singer_sdk import typing as th

from connectors.kingdee.client import (
    MAX_PAGE_SIZE,
    KingdeeClient,
    KingdeeError,
    normalize_iso,
    normalize_kingdee_datetime,
    to_filter_literal,
)
from connectors.kit.cursor import CompoundCursor, ReadPlan, plan_read
from connectors.kit.pagination import KeysetPaginator, paginate
from connectors.kit.sdk_compat import CustomBookmarkStream
from connectors.kit.settings import http_properties

REPLICATION_KEY = "FModifyDate"
#: what a record carries as ``FModifyDate`` when Kingdee has none (sorts first, as the server sorts NULLs)
NULL_MODIFY_DATE = "1900-01-01T00:00:00.000+08:00"

_TEXT = th.StringType
_INT = th.IntegerType
# Kingdee dates other than FModifyDate: passed through as sent (naive +08:00 local time).
_KD_TIME = th.CustomType(
    {"type": ["string", "null"], "description": "Kingdee server-local time (+08:00, no offset), as sent"}
)
# Numbers as Kingdee sends them; text only when the source value is not a number (malformed row).
_AMOUNT = th.CustomType({"type": ["number", "string", "null"]})

_UNSET: Any = object()


def property_name(field_key: str, entry_prefix: str | None = None) -> str:
    """The record property for a FieldKey: ``FSELLER.FName`` -> ``FSELLER_FName``."""
    if entry_prefix and field_key.startswith(entry_prefix + "_"):
        field_key = field_key[len(entry_prefix) + 1 :]
    return field_key.replace(".", "_")


def _schema(
    fields: Iterable[tuple[str, Any]],
    *,
    pk: str,
    entry_prefix: str | None = None,
    extra: Iterable[th.Property] = (),
) -> dict[str, Any]:
    props = []
    for key, typ in fields:
        name = property_name(key, entry_prefix)
        if name == REPLICATION_KEY:
            props.append(
                th.Property(
                    name,
                    th.DateTimeType,
                    required=True,
                    description="Last modification, ISO 8601 with +08:00",
                )
            )
        else:
            props.append(th.Property(name, typ, required=name == pk))
    props.extend(extra)
    return th.PropertiesList(*props).to_dict()


def _cursor_from(mapping: Mapping[str, Any] | None, tiebreak_key: str) -> CompoundCursor | None:
    """(normalised FModifyDate or None for the NULL pass, tiebreak id) from a bookmark in either
    accepted shape."""
    if not mapping:
        return None
    rk = mapping.get("replication_key")
    if rk is not None and str(rk).lower() != REPLICATION_KEY.lower():
        return None
    ts = mapping.get("replication_key_value") or mapping.get(REPLICATION_KEY)
    if not ts:
        return None
    tb = mapping.get("tiebreak_value", mapping.get(tiebreak_key, mapping.get("FID")))
    iso = normalize_iso(str(ts))
    return CompoundCursor(None if iso == NULL_MODIFY_DATE else iso, None if tb is None else int(tb))


class KingdeeStream(CustomBookmarkStream):
    """One Kingdee form read with ExecuteBillQuery, incrementally on ``(FModifyDate, id)``.

    Subclasses declare ``form_id``, ``tiebreak_key`` (the internal id FieldKey) and ``fields``.
    """

    form_id: ClassVar[str]
    #: FieldKey (= property) of the internal id that breaks ``FModifyDate`` ties
    tiebreak_key: ClassVar[str]
    #: (FieldKey, JSON type) in query order
    fields: ClassVar[tuple[tuple[str, Any], ...]]

    replication_key = REPLICATION_KEY
    is_sorted = True  # keyset paging yields ascending (FModifyDate, id); state is resumable

    def __init__(self, tap: Tap) -> None:
        super().__init__(tap)
        self._start_override: Any = _UNSET
        self._field_keys = [k for k, _ in self.fields]
        self._props = [property_name(k) for k in self._field_keys]
        self._i_mod = self._field_keys.index(REPLICATION_KEY)
        self._i_id = self._field_keys.index(self.tiebreak_key)

    # -- runner hooks ----------------------------------------------------------------------------------
    def start_cursor_from(self, cursor: Mapping[str, Any] | None) -> None:
        """Start the next ``get_records`` after ``cursor`` instead of the Singer state.

        ``cursor`` is a bookmark from :meth:`cursor_for_record` (``{"replication_key":
        "FModifyDate", "replication_key_value": ..., "tiebreak_key": ..., "tiebreak_value": ...}``)
        or the short form ``{"FModifyDate": "...", "FID": 123}``; ``None`` means from the
        beginning (or ``start_date``). The lookback window still applies.
        """
        self._start_override = None if cursor is None else dict(cursor)

    def cursor_for_record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The bookmark that resumes right after ``record`` (same shape as this stream's state)."""
        return {
            "replication_key": REPLICATION_KEY,
            "replication_key_value": record[REPLICATION_KEY],
            "tiebreak_key": self.tiebreak_key,
            "tiebreak_value": record[self.tiebreak_key],
        }

    def starting_cursor(self, context: Mapping[str, Any] | None = None) -> CompoundCursor | None:
        """The cursor this run starts after: an override, else the stream's Singer bookmark."""
        if self._start_override is not _UNSET:
            return _cursor_from(self._start_override, self.tiebreak_key)
        return _cursor_from(self.get_context_state(dict(context) if context else None), self.tiebreak_key)

    def source_count(self, context: Mapping[str, Any] | None = None) -> int:
        """How many records (distinct ids) this stream holds in Kingdee now, ignoring the cursor.

        Used by the Dagster reconciliation check. ExecuteBillQuery has no COUNT, so this pages the id
        column alone (keyset on the id, one small request per ``page_size`` rows).
        """
        key = self.tiebreak_key
        start_date = self.config.get("start_date")
        floor = (
            f"{REPLICATION_KEY} >= '{to_filter_literal(normalize_iso(str(start_date)))}'"
            if start_date
            else ""
        )

        def fetch(last: int | None) -> list[list[Any]]:
            parts = [p for p in (floor, f"{key} > {int(last)}" if last is not None else "") if p]
            condition = self._with_stream_filter(" AND ".join(parts))
            return self.client.execute_bill_query(
                self.form_id, [key], condition, f"{key} ASC", 0, self.page_size
            )

        # order lines repeat their order's id: count distinct ids, continue after the last one
        return sum(
            len({int(r[0]) for r in rows}) for rows in paginate(fetch, KeysetPaginator(lambda r: int(r[0])))
        )

    # -- Singer state ----------------------------------------------------------------------------------
    def update_bookmark(self, state: dict[str, Any], record: Mapping[str, Any]) -> None:
        """Keep both cursor parts in state, and never move it backwards.

        The SDK's own bookmark holds only ``replication_key_value`` and would reject the records
        the lookback window re-reads as "unsorted"; this keeps ``(FModifyDate, id)`` and only
        advances it.
        """
        new = _cursor_from(self.cursor_for_record(record), self.tiebreak_key)
        old = _cursor_from(state, self.tiebreak_key) if state.get("replication_key_value") else None
        if new is not None and new.after(old):
            state.update(self.cursor_for_record(record))

    # -- reading ---------------------------------------------------------------------------------------
    @property
    def client(self) -> KingdeeClient:
        """The tap's shared, logged-in client."""
        return self._tap.client  # type: ignore[attr-defined, no-any-return]

    @property
    def page_size(self) -> int:
        """Rows per ExecuteBillQuery call (config ``page_size``, capped at Kingdee's 10000)."""
        return max(1, min(int(self.config.get("page_size") or 2000), MAX_PAGE_SIZE))

    def _plan(self, context: Mapping[str, Any] | None) -> ReadPlan:
        """The passes of this read: the NULL-FModifyDate rows (first read only), then the timestamped
        rows after the cursor, re-reading ``lookback_seconds`` before it to catch late commits (a
        transaction that committed after our last read may carry an FModifyDate at or before the
        bookmark; duplicates are fine, targets upsert), never before ``start_date``."""
        start_date = self.config.get("start_date")
        return plan_read(
            self.starting_cursor(context),
            lookback_seconds=float(self.config.get("lookback_seconds", 5) or 0),
            start=normalize_iso(str(start_date)) if start_date else None,
        )

    def _passes(
        self, context: Mapping[str, Any] | None, ids: list[str], i_ids: list[int]
    ) -> Iterator[tuple[str, str, Callable[[list[Any]], str]]]:
        """(order, first FilterString, FilterString after a row) per pass; ``ids`` are the keyset
        columns after FModifyDate (``FID`` or ``FID, FEntryID``) at ``i_ids`` in a row."""
        plan = self._plan(context)
        m = REPLICATION_KEY

        def after_ids(row: list[Any]) -> list[tuple[str, Any]]:
            # an order without lines has no entry id to continue from
            return [(k, row[i]) for k, i in zip(ids, i_ids, strict=True) if row[i] is not None]

        if plan.null_pass:
            first = f"{m} IS NULL"
            if plan.null_after_id is not None:
                first += f" AND {ids[0]} > {int(plan.null_after_id)}"
            yield (
                ", ".join(f"{k} ASC" for k in ids),
                first,
                lambda row: f"{m} IS NULL AND ({_keyset_ids(after_ids(row))})",
            )
        if plan.ts_floor is not None:
            first = f"{m} >= '{to_filter_literal(plan.ts_floor)}'"
        elif plan.ts_after is not None:
            after = plan.ts_after
            first = _keyset(to_filter_literal(str(after.ts)), [(ids[0], after.id)])
        else:
            first = f"{m} IS NOT NULL"
        i_mod = self._i_mod
        yield (
            ", ".join([f"{m} ASC"] + [f"{k} ASC" for k in ids]),
            first,
            lambda row: _keyset(_raw_literal(row[i_mod]), after_ids(row)),
        )

    def _with_stream_filter(self, condition: str) -> str:
        extra = (self.config.get("filters") or {}).get(self.name)
        if extra and condition:
            return f"({extra}) AND ({condition})"
        return extra or condition

    def _to_record(self, row: list[Any]) -> dict[str, Any]:
        record = dict(zip(self._props, row, strict=True))
        record[REPLICATION_KEY] = _normalize_modify_date(row[self._i_mod], self.form_id, row[self._i_id])
        return record

    def _pages(
        self, field_keys: list[str], order: str, condition: str, after_row: Callable[[list[Any]], str]
    ) -> Iterator[list[list[Any]]]:
        """Keyset pages, each starting right after the last row of the one before, until an empty one
        (not a short one: a server whose Limit cap is below our page size would end the sync early).

        Pages are fetched one after the other on purpose: prefetching the next page in a thread was
        measured 2-3x slower (the reader thread queues for the GIL on every socket read).
        """
        size, client, form = self.page_size, self.client, self.form_id

        def fetch(last_row: list[Any] | None) -> list[list[Any]]:
            where = self._with_stream_filter(condition if last_row is None else after_row(last_row))
            return client.execute_bill_query(form, field_keys, where, order, 0, size)

        yield from paginate(fetch, KeysetPaginator(lambda row: row))

    def _rows(
        self, context: Mapping[str, Any] | None, field_keys: list[str], ids: list[str]
    ) -> Iterator[list[Any]]:
        """Every row of every pass, in ``(FModifyDate NULLS FIRST, ids)`` order."""
        i_ids = [field_keys.index(k) for k in ids]
        for order, first, after in self._passes(context, ids, i_ids):
            for rows in self._pages(field_keys, order, first, after):
                yield from rows

    def get_records(self, context: Mapping[str, Any] | None) -> Iterator[dict[str, Any]]:
        """Records in ascending ``(FModifyDate, id)`` order, from the starting cursor on."""
        to_record = self._to_record
        for row in self._rows(context, self._field_keys, [self.tiebreak_key]):
            yield to_record(row)


class CustomersStream(KingdeeStream):
    """``customers``: BD_Customer (客户) with credit code, grade (客户分组), seller and region."""

    name = "customers"
    form_id = "BD_Customer"
    tiebreak_key = "FCUSTID"
    primary_keys = ("FCUSTID",)
    fields = (
        ("FCUSTID", _INT),
        ("FNumber", _TEXT),
        ("FName", _TEXT),
        ("FShortName", _TEXT),
        ("FSOCIALCRECODE", _TEXT),
        ("FTAXREGISTERCODE", _TEXT),
        ("FLegalPerson", _TEXT),
        ("FRegisterFund", _TEXT),
        ("FFoundDate", _KD_TIME),
        ("FTEL", _TEXT),
        ("FFAX", _TEXT),
        ("FADDRESS", _TEXT),
        ("FZIP", _TEXT),
        ("FWEBSITE", _TEXT),
        ("FDomains", _TEXT),
        ("FCOUNTRY.FNumber", _TEXT),
        ("FPROVINCIAL.FName", _TEXT),
        ("FCustTypeId.FNumber", _TEXT),
        ("FCustTypeId.FName", _TEXT),
        ("FGroup.FNumber", _TEXT),
        ("FGroup.FName", _TEXT),
        ("FSELLER.FNumber", _TEXT),
        ("FSELLER.FName", _TEXT),
        ("FSALDEPTID.FName", _TEXT),
        ("FTRADINGCURRID.FNumber", _TEXT),
        ("FTRADINGCURRID.FName", _TEXT),
        ("FUseOrgId.FNumber", _TEXT),
        ("FDocumentStatus", _TEXT),
        ("FForbidStatus", _TEXT),
        ("FCreateDate", _KD_TIME),
        ("FApproveDate", _KD_TIME),
        (REPLICATION_KEY, None),
    )
    schema = _schema(fields, pk="FCUSTID")


class ReceivablesStream(KingdeeStream):
    """``receivables``: AR_receivable (应收单), with written-off (核销) amounts and the source order."""

    name = "receivables"
    form_id = "AR_receivable"
    tiebreak_key = "FID"
    primary_keys = ("FID",)
    fields = (
        ("FID", _INT),
        ("FBillNo", _TEXT),
        ("FBillTypeID.FNumber", _TEXT),
        ("FDATE", _KD_TIME),
        ("FENDDATE_H", _KD_TIME),
        ("FCUSTOMERID", _INT),
        ("FCUSTOMERID.FNumber", _TEXT),
        ("FCUSTOMERID.FName", _TEXT),
        ("FCURRENCYID.FNumber", _TEXT),
        ("FSETTLEORGID.FNumber", _TEXT),
        ("FSALEORGID.FNumber", _TEXT),
        ("FALLAMOUNTFOR", _AMOUNT),
        ("FWRITTENOFFSTATUS", _TEXT),
        ("FWRITTENOFFAMOUNTFOR", _AMOUNT),
        ("FNOTWRITTENOFFAMOUNTFOR", _AMOUNT),
        ("FORDERNUMBER", _TEXT),
        ("FDocumentStatus", _TEXT),
        ("FCancelStatus", _TEXT),
        ("FCreateDate", _KD_TIME),
        ("FApproveDate", _KD_TIME),
        (REPLICATION_KEY, None),
    )
    schema = _schema(fields, pk="FID")


ORDER_ENTRY = "FSaleOrderEntry"
_ORDER_LINE_FIELDS: tuple[tuple[str, Any], ...] = (
    (f"{ORDER_ENTRY}_FEntryID", _INT),
    (f"{ORDER_ENTRY}_FSeq", _INT),
    ("FMaterialId.FNumber", _TEXT),
    ("FMaterialId.FName", _TEXT),
    ("FMaterialId.FSpecification", _TEXT),
    ("FUnitID.FName", _TEXT),
    ("FQty", _AMOUNT),
    ("FPrice", _AMOUNT),
    ("FTaxPrice", _AMOUNT),
    ("FEntryTaxRate", _AMOUNT),
    ("FAmount", _AMOUNT),
    ("FAllAmount", _AMOUNT),
    ("FDeliveryDate", _KD_TIME),
)


class SalesOrdersStream(KingdeeStream):
    """``sales_orders``: SAL_SaleOrder (销售订单), one record per order with its ``lines``.

    ExecuteBillQuery returns one row per line; rows are read in ``(FModifyDate, FID, FEntryID)``
    order with a three-part keyset, and consecutive rows of one order version are folded into a
    record, so an order whose lines straddle a page boundary still comes out whole. An order edited
    between two page reads comes out twice (first partial, then whole with its newer
    ``FModifyDate``); an upserting target ends with the whole one.
    """

    name = "sales_orders"
    form_id = "SAL_SaleOrder"
    tiebreak_key = "FID"
    primary_keys = ("FID",)
    fields = (
        ("FID", _INT),
        ("FBillNo", _TEXT),
        ("FBillTypeID.FNumber", _TEXT),
        ("FDate", _KD_TIME),
        ("FCustId", _INT),
        ("FCustId.FNumber", _TEXT),
        ("FCustId.FName", _TEXT),
        ("FSaleOrgId.FNumber", _TEXT),
        ("FSaleDeptId.FName", _TEXT),
        ("FSalerId.FNumber", _TEXT),
        ("FSalerId.FName", _TEXT),
        ("FSettleCurrId.FNumber", _TEXT),
        ("FBillAllAmount", _AMOUNT),
        ("FDocumentStatus", _TEXT),
        ("FCloseStatus", _TEXT),
        ("FCancelStatus", _TEXT),
        ("FLinkMan", _TEXT),
        ("FLinkPhone", _TEXT),
        ("FReceiveAddress", _TEXT),
        ("FNote", _TEXT),
        ("FCreateDate", _KD_TIME),
        ("FApproveDate", _KD_TIME),
        (REPLICATION_KEY, None),
    )
    line_fields = _ORDER_LINE_FIELDS
    schema = _schema(
        fields,
        pk="FID",
        extra=[
            th.Property(
                "lines",
                th.ArrayType(
                    th.ObjectType(
                        *[
                            th.Property(property_name(k, ORDER_ENTRY), t, required=k.endswith("_FEntryID"))
                            for k, t in _ORDER_LINE_FIELDS
                        ]
                    )
                ),
                description="Order lines (FSaleOrderEntry) in FEntryID order",
            ),
        ],
    )

    def __init__(self, tap: Tap) -> None:
        super().__init__(tap)
        self._line_keys = [k for k, _ in self.line_fields]
        self._line_props = [property_name(k, ORDER_ENTRY) for k in self._line_keys]
        self._n_header = len(self._field_keys)
        self._i_entry = self._n_header  # first line field is the entry id

    def get_records(self, context: Mapping[str, Any] | None) -> Iterator[dict[str, Any]]:
        """Orders in ascending ``(FModifyDate, FID)`` order, each with all of its lines."""
        keys = self._field_keys + self._line_keys
        n, i_id, i_mod, i_entry = self._n_header, self._i_id, self._i_mod, self._i_entry
        current: dict[str, Any] | None = None
        current_key: tuple[Any, Any] | None = None
        for row in self._rows(context, keys, ["FID", f"{ORDER_ENTRY}_FEntryID"]):
            # One record per order *version*: the same FID with a newer FModifyDate (edited
            # between two page reads) starts a new record instead of doubling the lines.
            row_key = (row[i_id], row[i_mod])
            if row_key != current_key:
                if current is not None:
                    yield current
                current = self._to_record(row[:n])
                current["lines"] = []
                current_key = row_key
            if row[i_entry] is not None:
                assert current is not None
                current["lines"].append(dict(zip(self._line_props, row[n:], strict=True)))
        if current is not None:
            yield current


class TapKingdee(Tap):
    """Singer tap for Kingdee K/3 Cloud (金蝶云星空) WebAPI: customers, sales orders, receivables."""

    name = "tap-kingdee"
    package_name = "tongbu"  # the distribution that ships this tap (for --about / --version)
    config_jsonschema = th.PropertiesList(
        th.Property(
            "base_url",
            th.StringType,
            required=True,
            description="K/3 Cloud site, e.g. https://erp.example.com/k3cloud/ (or the simulator URL)",
        ),
        th.Property("acct_id", th.StringType, required=True, description="Account (数据中心) id"),
        th.Property("username", th.StringType, required=True),
        th.Property("password", th.StringType, secret=True, description="Password for ValidateUser login"),
        th.Property(
            "app_id", th.StringType, description="App id for LoginByAppSecret (instead of a password)"
        ),
        th.Property("app_secret", th.StringType, secret=True, description="App secret for LoginByAppSecret"),
        th.Property("lcid", th.IntegerType, default=2052, description="Locale id (2052 = zh-CN)"),
        th.Property(
            "page_size", th.IntegerType, default=2000, description="Rows per ExecuteBillQuery (max 10000)"
        ),
        th.Property(
            "lookback_seconds",
            th.NumberType,
            default=5,
            description="Re-read this many seconds before the bookmark to catch late commits",
        ),
        th.Property("start_date", th.DateTimeType, description="Ignore records modified before this time"),
        *http_properties(
            request_timeout=60, retried="throttling (MsgCode 14, 429), 5xx, timeouts, lost sessions"
        ),
        th.Property(
            "filters",
            th.ObjectType(
                th.Property("customers", th.StringType),
                th.Property("sales_orders", th.StringType),
                th.Property("receivables", th.StringType),
            ),
            description="Extra FilterString per stream, ANDed with the cursor (e.g. \"FDocumentStatus = 'C'\")",
        ),
    ).to_dict()

    _client: KingdeeClient | None = None

    def discover_streams(self) -> list[Stream]:
        """The three streams (no network access needed)."""
        return [CustomersStream(self), SalesOrdersStream(self), ReceivablesStream(self)]

    @property
    def client(self) -> KingdeeClient:
        """The shared client, created on first use from the config."""
        if self._client is None:
            self._client = KingdeeClient.from_config(self.config, connector="tap-kingdee")
        return self._client


# -- FilterString helpers ---------------------------------------------------------------------------------
def _keyset_ids(after: list[tuple[str, Any]]) -> str:
    """``k1 > v1 OR (k1 = v1 AND k2 > v2)``: strictly after the ids (integers only)."""
    tail = ""
    for key, value in reversed(after):
        lit = int(value)  # ids are integers; never interpolate anything else
        tail = f"{key} > {lit}" if not tail else f"{key} > {lit} OR ({key} = {lit} AND ({tail}))"
    return tail


def _keyset(ts_literal: str, after: list[tuple[str, Any]]) -> str:
    """``FModifyDate >= ts AND (FModifyDate > ts OR (FModifyDate = ts AND (k1 > v1 OR (k1 = v1 AND k2 > v2))))``.

    The leading ``>=`` is redundant logically but gives the server a plain range to use its index
    on; the rest is the strict "after (ts, k1, k2)" comparison.
    """
    tail = _keyset_ids(after)
    m = REPLICATION_KEY
    return f"{m} >= '{ts_literal}' AND ({m} > '{ts_literal}' OR ({m} = '{ts_literal}' AND ({tail})))"


def _raw_literal(raw: Any) -> str:
    """A row's own FModifyDate as a FilterString literal (exact, so the keyset neither skips nor
    repeats). Only rows of the timestamped pass get here: a NULL has no literal that compares."""
    if raw is None:
        raise KingdeeError("FModifyDate is NULL in the timestamped pass (the server ignored IS NOT NULL)")
    text = str(raw)
    normalize_kingdee_datetime(text)  # validates
    return text.replace("T", " ")


def _normalize_modify_date(raw: Any, form_id: str, record_id: Any) -> str:
    if raw is None:
        # Never-modified rows can carry no FModifyDate; they sort first, like the server sorts NULLs.
        return NULL_MODIFY_DATE
    try:
        return normalize_kingdee_datetime(str(raw))
    except ValueError:
        raise KingdeeError(f"{form_id} {record_id}: FModifyDate {raw!r} is not a timestamp") from None


if __name__ == "__main__":
    TapKingdee.cli()
