"""Fxiaoke as a spoke of the two-way engine: accounts, contacts, leads, opportunities, sales orders
(with their product lines) and payments, read and written through the OpenAPI.

What a careful writer owes Fxiaoke is done here, not left to the engine:

* **only the changed fields are sent** (an ``update`` carries ``_id`` and exactly the fields the
  engine gave), in Fxiaoke's formats: numbers as strings, dates as ms epochs, single-selects as the
  option value (the hub keeps the label; the map comes from the binding), employee fields as lists;
* **the owner never goes through ``update``**: a change of ``owner`` is a ``changeOwner`` call;
* **creates are findable**: the engine's intent key is written to the custom field ``tongbu_key__c``;
  :meth:`FxiaokeSpoke.find` looks it up, then the identity keys (credit code, ERP number), so a
  create whose answer was lost is linked, never sent twice;
* **approval and work flows** run or not by policy (``trigger_approval`` / ``trigger_workflow``;
  the engine's writes default to not starting approvals, which would lock the record); a record
  locked by a running approval is a transient refusal, retried next cycle;
* **deletes are two steps**: ``void`` is ``invalid``; ``delete`` is ``invalid`` then ``delete``;
  a voided record (``life_status`` invalid) reads as deleted;
* **errors in the kit's taxonomy**: throttled, 5xx, timeouts, lost answers and locks are
  :class:`~connectors.kit.spoke.TransientSpokeError`; a refusal is a :class:`SpokeError` carrying
  Fxiaoke's errorCode and message; a spent quota stops the cycle with a message saying so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.fxiaoke.client import FxiaokeApiError, FxiaokeClient, FxiaokeError, FxiaokeQuotaError
from connectors.fxiaoke.reader import high_water, iter_all, iter_changed, key_of
from connectors.kit.errors import Throttled, Transient
from connectors.kit.logs import get_logger
from connectors.kit.spoke import SpokeError, SpokeRecord, TransientSpokeError
from tongbu.canon import canon

__all__ = ["BINDINGS", "Binding", "Field", "FxiaokeSpoke"]

INTENT = "tongbu_key__c"
LOCKED = 320001402
log = get_logger("tongbu.fxiaoke.spoke")


@dataclass(frozen=True)
class Field:
    """One hub field and the Fxiaoke field that holds it, with the conversion between them.

    ``kind``: ``text``, ``number`` (Fxiaoke string, hub decimal), ``percent`` (Fxiaoke percent, hub
    fraction of 1... kept as percent number when ``scale`` is 1), ``time`` (ms epoch <-> UTC datetime),
    ``option`` (option value <-> hub label via ``options``), ``employee`` (list <-> first element),
    ``ref`` (another record's ``_id``).
    """

    hub: str
    fx: str
    kind: str = "text"
    options: Mapping[str, str] = field(default_factory=dict)
    #: Fxiaoke computes it (formula, stage-driven, auto number): read, never written
    read_only: bool = False

    def to_hub(self, value: Any) -> Any:
        if value in (None, "", []):
            return None
        if self.kind == "number":
            try:
                return canon(Decimal(str(value)))
            except InvalidOperation:
                raise ValueError(f"{self.fx}: {str(value)[:40]!r} is not a number") from None
        if self.kind == "time":
            return canon(dt.datetime.fromtimestamp(int(value) / 1000, dt.UTC))
        if self.kind == "option":
            return self.options.get(str(value), str(value))
        if self.kind == "employee":
            return str(value[0]) if isinstance(value, list) else str(value)
        return canon(value)

    def to_fx(self, value: Any) -> Any:
        if value in (None, ""):
            return None
        if self.kind == "number":
            try:
                return format(Decimal(str(value)).normalize(), "f")
            except InvalidOperation:
                raise SpokeError(f"Fxiaoke {self.fx}: {str(value)[:40]!r} is not a number") from None
        if self.kind == "time":
            moment = (
                value
                if isinstance(value, dt.datetime)
                else dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            )
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
            return int(moment.timestamp() * 1000)
        if self.kind == "option":
            back = {label: code for code, label in self.options.items()}
            if str(value) in back:
                return back[str(value)]
            if str(value) in self.options:
                return str(value)
            raise SpokeError(f"Fxiaoke {self.fx}: {value!r} is not an option (one of {', '.join(back)})")
        if self.kind == "employee":
            return [str(value)]
        return str(value)


@dataclass(frozen=True)
class Binding:
    """How one hub object lives in Fxiaoke."""

    object: str
    api_name: str
    fields: tuple[Field, ...]
    #: hub identity field -> Fxiaoke field, for :meth:`FxiaokeSpoke.find`
    identity: Mapping[str, str] = field(default_factory=dict)
    #: hub field holding the lines, and the detail binding (sales orders)
    lines: Binding | None = None
    #: values a create needs when the hub has none
    create_defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def by_hub(self) -> dict[str, Field]:
        return {f.hub: f for f in self.fields}


GRADES = {"1": "A", "2": "B", "3": "C", "4": "D"}
STAGES = {"1": "qualify", "2": "needs", "3": "proposal", "4": "negotiation", "5": "won", "6": "lost"}
PAY_METHODS = {
    "1": "cheque",
    "2": "cash",
    "3": "postal",
    "4": "wire",
    "5": "online",
    "6": "alipay",
    "7": "wechat",
}
LEAD_STATUS = {
    "un_assigned": "new",
    "un_processed": "open",
    "processed": "working",
    "transformed": "converted",
    "closed": "closed",
}
LEAD_SOURCE = {"1": "website", "2": "exhibition", "3": "referral", "4": "telemarketing"}
GENDER = {"1": "male", "2": "female"}

ACCOUNTS = Binding(
    "accounts",
    "AccountObj",
    (
        Field("name", "name"),
        Field("credit_code", "uniform_social_credit_code"),
        Field("number", "erp_number__c"),
        Field("grade", "account_level", "option", GRADES),
        Field("phone", "tel"),
        Field("address", "address"),
        Field("owner", "owner", "employee"),
        Field("credit_limit", "credit_limit__c", "number"),
        Field("receivable_balance", "receivable_balance__c", "number"),
    ),
    identity={"credit_code": "uniform_social_credit_code", "number": "erp_number__c"},
)
CONTACTS = Binding(
    "contacts",
    "ContactObj",
    (
        Field("name", "name"),
        Field("account_ref", "account_id", "ref"),
        Field("title", "job_title"),
        Field("department", "department"),
        Field("mobile", "mobile1"),
        Field("phone", "tel1"),
        Field("email", "email"),
        Field("gender", "gender", "option", GENDER),
        Field("owner", "owner", "employee"),
    ),
    identity={"mobile": "mobile1"},
)
LEADS = Binding(
    "leads",
    "LeadsObj",
    (
        Field("name", "name"),
        Field("company", "company"),
        Field("mobile", "mobile"),
        Field("email", "email"),
        Field("channel", "source", "option", LEAD_SOURCE),
        Field("status", "biz_status", "option", LEAD_STATUS),
        Field("budget", "budget__c", "number"),
        Field("owner", "owner", "employee"),
    ),
)
OPPORTUNITIES = Binding(
    "opportunities",
    "NewOpportunityObj",
    (
        Field("name", "name"),
        Field("account_ref", "account_id", "ref"),
        Field("stage", "sales_stage", "option", STAGES),
        Field("amount", "amount", "number"),
        Field("win_rate", "probability", "number", read_only=True),
        Field("expected_close", "close_date", "time"),
        Field("owner", "owner", "employee"),
    ),
)
ORDER_LINES = Binding(
    "sales_order_lines",
    "SalesOrderProductObj",
    (
        Field("line_no", "line_no__c", "number"),
        Field("product_code", "product_code__c"),
        Field("product_name", "product_name__c"),
        Field("qty", "quantity", "number"),
        Field("unit_price", "sales_price", "number"),
        Field("tax_rate", "tax_rate__c", "number"),
        Field("amount", "subtotal", "number", read_only=True),
    ),
)
SALES_ORDERS = Binding(
    "sales_orders",
    "SalesOrderObj",
    (
        Field("order_no", "name", read_only=True),
        Field("account_ref", "account_id", "ref"),
        Field("order_date", "order_time", "time"),
        Field("currency", "currency__c"),
        Field("amount", "order_amount", "number", read_only=True),
        Field("erp_number", "erp_bill_no__c"),
        Field("erp_status", "erp_status__c"),
        Field("owner", "owner", "employee"),
    ),
    identity={"erp_number": "erp_bill_no__c"},
    lines=ORDER_LINES,
)
PAYMENTS = Binding(
    "payments",
    "PaymentObj",
    (
        Field("bill_no", "erp_bill_no__c"),
        Field("account_ref", "account_id", "ref"),
        Field("pay_date", "payment_time", "time"),
        Field("amount", "payment_amount", "number"),
        Field("method", "payment_term", "option", PAY_METHODS),
        Field("currency", "currency__c"),
    ),
    identity={"bill_no": "erp_bill_no__c"},
)
BINDINGS: dict[str, Binding] = {
    b.object: b for b in (ACCOUNTS, CONTACTS, LEADS, OPPORTUNITIES, SALES_ORDERS, PAYMENTS)
}


class FxiaokeSpoke:
    """The Fxiaoke spoke (see the module docstring).

    ``trigger_approval`` / ``trigger_workflow``: whether the engine's writes start the tenant's
    approval and work flows (default: work flows yes, approvals no — an approval locks the record
    until someone approves it). ``calls`` counts API calls by service.
    """

    system = "fxiaoke"

    def __init__(
        self,
        client: FxiaokeClient,
        *,
        system: str = "fxiaoke",
        trigger_approval: bool = False,
        trigger_workflow: bool = True,
        page_size: int = 100,
    ) -> None:
        self.client = client
        self.system = system
        self.trigger_approval = trigger_approval
        self.trigger_workflow = trigger_workflow
        self.page_size = page_size
        self.calls: dict[str, int] = {}
        #: records a read could not translate: (object, id, reason)
        self.rejected: list[tuple[str, str, str]] = []

    def close(self) -> None:
        """Close the client's connections (the engine calls it after each cycle)."""
        self.client.close()

    # -- reads ----------------------------------------------------------------------------------------
    def changes(self, object_name: str, cursor: Any) -> tuple[list[SpokeRecord], Any]:
        """Records modified after the cursor ``{"t": ms, "id": _id}`` (None: a full pull by ``_id``,
        after which the feed starts at the pull's high-water mark, inclusive)."""
        b = self._binding(object_name)
        if not isinstance(cursor, Mapping) or cursor.get("t") is None:
            mark = self._call("query", lambda: high_water(self.client, b.api_name))
            rows = self._call("query", lambda: list(iter_all(self.client, b.api_name, limit=self.page_size)))
            new_cursor = {"t": mark[0], "id": mark[1]} if mark is not None else None
        else:
            start = (int(cursor["t"]), cursor.get("id"))
            rows = self._call(
                "query", lambda: list(iter_changed(self.client, b.api_name, start, limit=self.page_size))
            )
            if rows:
                t, last = key_of(rows[-1])
                new_cursor = {"t": t, "id": last}
            else:
                new_cursor = dict(cursor)
        return self._records(b, rows), new_cursor

    def fetch(self, object_name: str, external_ids: Sequence[str]) -> dict[str, SpokeRecord]:
        """The current state of some records (missing ids are absent)."""
        b = self._binding(object_name)
        ids = [str(e) for e in external_ids]
        rows: list[dict[str, Any]] = []
        for i in range(0, len(ids), 100):
            chunk = ids[i : i + 100]
            flt = [{"field_name": "_id", "operator": "IN", "field_values": chunk}]
            rows += self._call(
                "query",
                lambda flt=flt: self.client.query(b.api_name, filters=flt, limit=100).get("dataList") or [],
            )
        return {r.external_id: r for r in self._records(b, rows)}

    def scan(self, object_name: str) -> Iterable[SpokeRecord]:
        """Every record (reconciliation)."""
        b = self._binding(object_name)
        return self._records(
            b, self._call("query", lambda: list(iter_all(self.client, b.api_name, limit=self.page_size)))
        )

    def find(self, object_name: str, keys: Mapping[str, Any]) -> str | None:
        """An existing record by the intent key, else by an identity key (exactly one match)."""
        b = self._binding(object_name)
        probes: list[tuple[str, Any]] = []
        if keys.get("intent_key"):
            probes.append((INTENT, keys["intent_key"]))
        for hub_field, fx in b.identity.items():
            value = keys.get(hub_field)
            if value not in (None, ""):
                probes.append((fx, value))
        for fx, value in probes:
            flt = [{"field_name": fx, "operator": "EQ", "field_values": [str(value)]}]
            rows = self._call(
                "query",
                lambda flt=flt: (
                    self.client.query(b.api_name, filters=flt, limit=2, fields=["_id"]).get("dataList") or []
                ),
            )
            if len(rows) == 1:
                return str(rows[0]["_id"])
        return None

    # -- writes ---------------------------------------------------------------------------------------
    def create(self, object_name: str, values: Mapping[str, Any], intent_key: str) -> str:
        """Create a record with its intent key; the owner, if given, is set on create (allowed there)."""
        b = self._binding(object_name)
        data = {**b.create_defaults, **self._to_fx(b, values, creating=True), INTENT: intent_key}
        details = None
        if b.lines is not None:
            details = {
                b.lines.api_name: [self._line_to_fx(b.lines, ln) for ln in _lines(values.get("lines"))]
            }
        return str(
            self._call(
                "create",
                lambda: self.client.create(
                    b.api_name,
                    data,
                    details=details,
                    trigger_approval=self.trigger_approval,
                    trigger_workflow=self.trigger_workflow,
                ),
            )
        )

    def update(self, object_name: str, external_id: str, values: Mapping[str, Any]) -> None:
        """Change exactly the given fields; ``owner`` through ``changeOwner``."""
        b = self._binding(object_name)
        owner = values.get("owner") if "owner" in values and "owner" in b.by_hub else None
        rest = {k: v for k, v in values.items() if k != "owner"}
        data = self._to_fx(b, rest, creating=False)
        details = None
        if b.lines is not None and "lines" in rest:
            details = {b.lines.api_name: self._lines_for_update(b, external_id, _lines(rest["lines"]))}
        if data or details is not None:
            self._call(
                "update",
                lambda: self.client.update(
                    b.api_name,
                    external_id,
                    data,
                    details=details,
                    trigger_approval=self.trigger_approval,
                    trigger_workflow=self.trigger_workflow,
                ),
            )
        if owner not in (None, ""):
            self._call("changeOwner", lambda: self.client.change_owner(b.api_name, external_id, [str(owner)]))

    def delete(self, object_name: str, external_id: str, action: str) -> None:
        """``void``: ``invalid``; ``delete``: ``invalid`` then ``delete``."""
        b = self._binding(object_name)
        if action not in ("void", "delete"):
            raise SpokeError(f"Fxiaoke: unknown delete action {action!r} (delete or void)")
        try:
            self._call("invalid", lambda: self.client.invalid(b.api_name, external_id))
        except SpokeError as exc:
            if "已作废" not in str(exc):
                raise
        if action == "delete":
            self._call("delete", lambda: self.client.delete(b.api_name, [external_id]))

    # -- translation -----------------------------------------------------------------------------------
    def to_hub(self, object_name: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """A Fxiaoke record (``describe`` field names) as hub values."""
        b = self._binding(object_name)
        values = {f.hub: f.to_hub(row.get(f.fx)) for f in b.fields}
        if b.lines is not None:
            lines = sorted(
                row.get("__lines__") or [], key=lambda r: (_num(r.get("line_no__c")), str(r["_id"]))
            )
            values["lines"] = [
                {"entry_id": str(ln["_id"]), **{f.hub: f.to_hub(ln.get(f.fx)) for f in b.lines.fields}}
                for ln in lines
            ]
        return values

    def _records(self, b: Binding, rows: list[dict[str, Any]]) -> list[SpokeRecord]:
        if b.lines is not None and rows:
            self._attach_lines(b, rows)
        out = []
        for row in rows:
            rid = str(row["_id"])
            try:
                values = self.to_hub(b.object, row)
            except ValueError as exc:
                # A value the hub cannot hold is set aside with the reason, never guessed; fixing it
                # in Fxiaoke moves last_modified_time, so the feed brings it back.
                self.rejected.append((b.object, rid, str(exc)))
                log.warning("Fxiaoke %s %s skipped: %s", b.api_name, rid, exc)
                continue
            modified = dt.datetime.fromtimestamp(int(row["last_modified_time"]) / 1000, dt.UTC)
            author = (row.get("last_modified_by") or [None])[0]
            out.append(SpokeRecord(rid, values, modified, author, row.get("life_status") == "invalid"))
        return out

    def _attach_lines(self, b: Binding, rows: list[dict[str, Any]]) -> None:
        assert b.lines is not None
        by_order: dict[str, list[dict[str, Any]]] = {str(r["_id"]): [] for r in rows}
        ids = list(by_order)
        for i in range(0, len(ids), 100):
            flt = [{"field_name": "order_id", "operator": "IN", "field_values": ids[i : i + 100]}]
            lines = self._call(
                "query", lambda flt=flt: list(_all_matching(self.client, b.lines.api_name, flt))
            )  # type: ignore[union-attr]
            for ln in lines:
                by_order.setdefault(str(ln["order_id"]), []).append(ln)
        for r in rows:
            r["__lines__"] = by_order.get(str(r["_id"]), [])

    def _to_fx(self, b: Binding, values: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        fields = b.by_hub
        out: dict[str, Any] = {}
        for hub, value in values.items():
            f = fields.get(hub)
            if f is None or f.read_only or hub == "lines":
                continue
            if f.kind == "employee" and not creating:
                continue
            if f.kind == "employee" and value in (None, ""):
                continue
            out[f.fx] = f.to_fx(value)
        return out

    @staticmethod
    def _line_to_fx(lb: Binding, line: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in lb.fields:
            if f.read_only or line.get(f.hub) in (None, ""):
                continue
            out[f.fx] = f.to_fx(line[f.hub])
        if line.get("entry_id"):
            out["_id"] = str(line["entry_id"])
        return out

    def _lines_for_update(
        self, b: Binding, external_id: str, wanted: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Detail rows for a master-detail update: kept lines by ``_id`` with their changed fields
        only, new lines whole; lines left out are removed (Fxiaoke replaces the detail set)."""
        assert b.lines is not None
        flt = [{"field_name": "order_id", "operator": "EQ", "field_values": [external_id]}]
        current = {
            str(r["_id"]): r
            for r in self._call("query", lambda: list(_all_matching(self.client, b.lines.api_name, flt)))
        }  # type: ignore[union-attr]
        out = []
        for line in wanted:
            lid = str(line.get("entry_id") or "")
            if lid not in current:
                out.append(self._line_to_fx(b.lines, {k: v for k, v in line.items() if k != "entry_id"}))
                continue
            row: dict[str, Any] = {"_id": lid}
            for f in b.lines.fields:
                if f.read_only or f.hub not in line:
                    continue
                new = f.to_fx(line[f.hub])
                if canon(f.to_hub(current[lid].get(f.fx))) != canon(line[f.hub]):
                    row[f.fx] = new
            out.append(row)
        return out

    # -- plumbing ---------------------------------------------------------------------------------------
    def _binding(self, object_name: str) -> Binding:
        try:
            return BINDINGS[object_name]
        except KeyError:
            raise SpokeError(
                f"Fxiaoke spoke: no object {object_name!r} (objects: {', '.join(BINDINGS)})"
            ) from None

    def _call(self, service: str, fn: Callable[[], Any]) -> Any:
        self.calls[service] = self.calls.get(service, 0) + 1
        try:
            return fn()
        except FxiaokeQuotaError as exc:
            raise SpokeError(str(exc)) from None
        except FxiaokeApiError as exc:
            if exc.code == LOCKED:
                raise TransientSpokeError(f"Fxiaoke {service}: {exc}") from None
            raise SpokeError(f"Fxiaoke {service} refused: {exc}") from None
        except (Throttled, Transient) as exc:
            raise TransientSpokeError(f"Fxiaoke {service}: {exc}") from None
        except FxiaokeError as exc:
            raise SpokeError(f"Fxiaoke {service}: {exc}") from None


def _all_matching(
    client: FxiaokeClient, api_name: str, filters: list[dict[str, Any]]
) -> Iterable[dict[str, Any]]:
    """Every record matching ``filters``, keyset-paged by ``_id``."""
    last = None
    while True:
        flt = [*filters, *([{"field_name": "_id", "operator": "GT", "field_values": [last]}] if last else [])]
        rows = (
            client.query(api_name, filters=flt, orders=[{"fieldName": "_id", "isAsc": True}], limit=100).get(
                "dataList"
            )
            or []
        )
        yield from rows
        if len(rows) < 100:
            return
        last = str(rows[-1]["_id"])


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _lines(value: Any) -> list[dict[str, Any]]:
    if value in (None, ""):
        return []
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise SpokeError("Fxiaoke SalesOrderObj: lines must be a list of objects")
    return [dict(v) for v in value]


def make_spoke(config: Mapping[str, Any], *, system: str = "fxiaoke") -> FxiaokeSpoke:
    """The spoke of a project connection (the ``make_spoke`` hook the registry finds, used by ``syncs:``).

    ``config`` is the connection's resolved config (the tap's settings); ``trigger_approval`` /
    ``trigger_workflow`` in it decide whether the engine's writes start the tenant's flows.
    """
    from connectors.fxiaoke.client import client_from_config

    client = client_from_config(config, connection=system)
    return FxiaokeSpoke(
        client,
        system=system,
        trigger_approval=bool(config.get("trigger_approval", False)),
        trigger_workflow=bool(config.get("trigger_workflow", True)),
        page_size=int(config.get("page_size") or 100),
    )
