"""Kingdee K/3 Cloud as a spoke of the two-way engine: customers (``accounts``) and sales orders
(``sales_orders``, with their lines) read and written through the WebAPI.

Reads go through ExecuteBillQuery and the inbound mapping ``mappings/library/kingdee_to_crm.yaml``
(the same translation tap-kingdee's records get), writes through the reverse mapping
``mappings/library/crm_to_kingdee.yaml``. What Kingdee needs from a careful writer is done here,
not left to mapping authors (``../shared/research/bidirectional-sync.md`` §3.4):

* **only the changed fields are sent**: a modify's ``Model`` holds the id and exactly the fields the
  engine gave, and ``NeedUpDateFields`` names exactly those (Kingdee fires a value-update event for
  every field present, so an unchanged field is never sent);
* **lines are never deleted by accident**: a header-only change does not send ``FSaleOrderEntry`` at
  all; a change of lines sends every line that stays (kept lines by ``FEntryID`` alone, changed ones
  with their changed fields only), so ``IsDeleteEntry`` removes exactly the lines the hub removed;
* **creates are findable**: the engine's intent key is written to the custom field
  ``F_TB_ExternalId``; :meth:`KingdeeSpoke.find` looks a record up by it, then by number or credit
  code, so a create whose answer was lost is linked, never sent twice;
* **lifecycle by policy** (:class:`Lifecycle`): Save, then Submit and Audit (in the same call,
  ``IsAutoSubmitAndAudit``); a change of an audited document is UnAudit → Save → Submit → Audit,
  or refused (``modify_audited: refuse``);
* **errors in the kit's taxonomy**: throttled, locked (网络互斥), 5xx, timeouts and lost answers are
  :class:`~connectors.kit.spoke.TransientSpokeError` (the engine retries next cycle; a write whose
  outcome is unknown is never re-sent blind), a refusal is a :class:`SpokeError` carrying Kingdee's
  ``FieldName: Message``.

Deletes and voids: a forbidden customer (``FForbidStatus`` B) or a cancelled order
(``FCancelStatus`` B) reads as deleted; ``delete(.., "void")`` forbids / cancels, ``"delete"`` deletes
(un-auditing first when the policy allows).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from connectors.kingdee.client import (
    CHINA_TZ,
    KingdeeClient,
    KingdeeError,
    KingdeeWriteError,
    to_filter_literal,
)
from connectors.kingdee.fields import CUSTOMER_CONTACT, CUSTOMER_REGISTRATION, SALES_ORDER_STATES_AND_DELIVERY
from connectors.kit.errors import Throttled, Transient
from connectors.kit.logs import get_logger
from connectors.kit.spoke import SpokeError, SpokeRecord, TransientSpokeError
from mappings.engine import CompiledMapping, MappingError, compile_mapping
from mappings.spec import load_mappings
from tongbu.canon import canon

LIBRARY = Path(__file__).resolve().parents[2] / "mappings" / "library"
INBOUND = LIBRARY / "kingdee_to_crm.yaml"
OUTBOUND = LIBRARY / "crm_to_kingdee.yaml"
#: the custom field carrying tongbu's intent key (idempotent creates)
EXTERNAL_ID = "F_TB_ExternalId"
ENTRY = "FSaleOrderEntry"
#: MsgCode 12 (不可操作): the document's status forbids the operation
MSG_NOT_ALLOWED = 12
PAGE = 2000
log = get_logger("tongbu.kingdee.spoke")


@dataclass(frozen=True)
class Lifecycle:
    """What happens around a Save, per object."""

    #: after a create or change: submit and audit (``IsAutoSubmitAndAudit``), or leave it created
    audit: bool = True
    #: a change of an audited document: ``unaudit`` it first (and audit again), or ``refuse``
    modify_audited: Literal["unaudit", "refuse"] = "unaudit"
    #: a delete of an audited document: ``unaudit`` it first, or ``refuse``
    delete_audited: Literal["unaudit", "refuse"] = "unaudit"


@dataclass(frozen=True)
class Binding:
    """How one hub object lives in Kingdee."""

    object: str
    form_id: str
    pk: str
    number_key: str
    header_keys: tuple[str, ...]
    inbound: str
    outbound: str
    #: hub identity field -> Kingdee FieldKey, for :meth:`KingdeeSpoke.find`
    identity: Mapping[str, str]
    #: Save Model values a create needs when the hub has none (required fields)
    create_defaults: Mapping[str, Any]
    #: extra hub fields read from Kingdee fields the inbound mapping does not cover
    extra_inbound: Mapping[str, str] = field(default_factory=dict)
    #: hub fields only Kingdee computes: never written
    read_only: frozenset[str] = frozenset()
    line_keys: tuple[str, ...] = ()


_ORG = {"FNumber": "100"}
ACCOUNTS = Binding(
    object="accounts",
    form_id="BD_Customer",
    pk="FCUSTID",
    number_key="FNumber",
    header_keys=(
        "FCUSTID",
        *CUSTOMER_REGISTRATION,
        "FFoundDate",
        *CUSTOMER_CONTACT,
        "FPROVINCIAL.FName",
        "FCustTypeId.FName",
        "FGroup.FNumber",
        "FSELLER.FName",
        "FSALDEPTID.FName",
        "FTRADINGCURRID.FNumber",
        "FDocumentStatus",
        "FForbidStatus",
        "F_PAEZ_CreditLimit",
        "F_PAEZ_ARBalance",
        EXTERNAL_ID,
        "FModifyDate",
    ),
    inbound="kingdee_customers_to_accounts",
    outbound="crm_accounts_to_kingdee_customers",
    identity={"number": "FNumber", "credit_code": "FSOCIALCRECODE"},
    create_defaults={"FCreateOrgId": _ORG, "FUseOrgId": _ORG, "FTRADINGCURRID": {"FNumber": "PRE001"}},
    extra_inbound={"credit_limit": "F_PAEZ_CreditLimit", "receivable_balance": "F_PAEZ_ARBalance"},
    read_only=frozenset(
        {"receivable_balance", "status", "region", "city", "province", "owner", "account_type"}
    ),
)
SALES_ORDERS = Binding(
    object="sales_orders",
    form_id="SAL_SaleOrder",
    pk="FID",
    number_key="FBillNo",
    header_keys=(
        "FID",
        "FBillNo",
        "FBillTypeID.FNumber",
        "FDate",
        "FCustId",
        "FCustId.FNumber",
        "FCustId.FName",
        "FSaleDeptId.FName",
        "FSalerId.FName",
        "FSettleCurrId.FNumber",
        "FBillAllAmount",
        *SALES_ORDER_STATES_AND_DELIVERY,
        EXTERNAL_ID,
        "FModifyDate",
    ),
    line_keys=(
        f"{ENTRY}_FEntryID",
        f"{ENTRY}_FSeq",
        "FMaterialId.FNumber",
        "FMaterialId.FName",
        "FQty",
        "FTaxPrice",
        "FEntryTaxRate",
        "FAllAmount",
    ),
    inbound="kingdee_sales_orders_to_sales_orders",
    outbound="crm_sales_orders_to_kingdee_sales_orders",
    identity={"erp_number": "FBillNo"},
    create_defaults={"FBillTypeID": {"FNumber": "XSDD01_SYS"}, "FSaleOrgId": _ORG},
    read_only=frozenset({"amount", "erp_number", "erp_status", "status", "owner", "order_no"}),
)
BINDINGS = {b.object: b for b in (ACCOUNTS, SALES_ORDERS)}
#: the fields of one hub order line (``sales_orders.lines``), in a stable order
LINE_FIELDS = (
    "entry_id",
    "line_no",
    "product_code",
    "product_name",
    "qty",
    "unit_price",
    "tax_rate",
    "amount",
)
#: hub line field -> Kingdee entry field a write may set
_LINE_WRITE = {
    "product_code": "FMaterialId",
    "qty": "FQty",
    "unit_price": "FTaxPrice",
    "tax_rate": "FEntryTaxRate",
}


def _prop(key: str) -> str:
    if key.startswith(ENTRY + "_"):
        key = key[len(ENTRY) + 1 :]
    return key.replace(".", "_")


def _quote(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


class KingdeeSpoke:
    """The Kingdee spoke for ``accounts`` and ``sales_orders`` (see the module docstring).

    ``lifecycle`` gives the policy per hub object (default: audit, un-audit to change or delete).
    ``calls`` counts the API calls made, by service, for cost reports.
    """

    system = "kingdee"

    def __init__(
        self,
        client: KingdeeClient,
        *,
        system: str = "kingdee",
        lifecycle: Mapping[str, Lifecycle] | None = None,
    ) -> None:
        self.client = client
        self.system = system
        self.lifecycle = {name: (lifecycle or {}).get(name, Lifecycle()) for name in BINDINGS}
        unknown = sorted(set(lifecycle or {}) - set(BINDINGS))
        if unknown:
            raise ValueError(f"Kingdee spoke: no object {unknown[0]!r} (objects: {', '.join(BINDINGS)})")
        inbound = {s.name: s for s in load_mappings(INBOUND)}
        outbound = {s.name: s for s in load_mappings(OUTBOUND)}
        self._in: dict[str, CompiledMapping] = {}
        self._out: dict[str, CompiledMapping] = {}
        self._out_sources: dict[str, dict[str, str]] = {}
        for b in BINDINGS.values():
            self._in[b.object] = compile_mapping(inbound[b.inbound])
            spec = outbound[b.outbound]
            self._out[b.object] = compile_mapping(spec)
            self._out_sources[b.object] = {
                str(f.target): str(f.source)
                for f in spec.fields
                if isinstance(f.source, str) and f.target != "source_id"
            }
        #: document status by (object, id), from every read and write: saves a failed call later
        self._status: dict[tuple[str, str], str] = {}
        self._customer_numbers: dict[str, str] = {}
        self.calls: dict[str, int] = {}
        #: records a read could not translate: (object, id, reason)
        self.rejected: list[tuple[str, str, str]] = []

    def close(self) -> None:
        """Close the client's connections (a spoke made by :func:`make_spoke` owns its client)."""
        self.client.close()

    # -- reads ---------------------------------------------------------------------------------------
    def changes(self, object_name: str, cursor: Any) -> tuple[list[SpokeRecord], Any]:
        """Records modified at or after the cursor's ``FModifyDate`` (inclusive: rows sharing the
        last millisecond are read again and found equal to their bases, never missed)."""
        b = self._binding(object_name)
        since = (cursor or {}).get("modified") if isinstance(cursor, Mapping) else None
        where = f"FModifyDate >= '{to_filter_literal(since)}'" if since else ""
        records = self._read(b, where)
        stamps = [r.modified_at for r in records if r.modified_at is not None]
        newest = max(stamps).isoformat() if stamps else since
        return records, ({"modified": newest} if newest else cursor)

    def fetch(self, object_name: str, external_ids: Sequence[str]) -> dict[str, SpokeRecord]:
        """The current state of some records (missing ids are absent)."""
        b = self._binding(object_name)
        ids = [str(int(e)) for e in external_ids if str(e).isdigit()]
        out: dict[str, SpokeRecord] = {}
        for i in range(0, len(ids), 200):
            chunk = ids[i : i + 200]
            for r in self._read(b, f"{b.pk} in ({','.join(chunk)})"):
                out[r.external_id] = r
        return out

    def scan(self, object_name: str) -> Iterable[SpokeRecord]:
        """Every record (reconciliation)."""
        return self._read(self._binding(object_name), "")

    def find(self, object_name: str, keys: Mapping[str, Any]) -> str | None:
        """An existing record by the intent key (``F_TB_ExternalId``), else by an identity key."""
        b = self._binding(object_name)
        # One query for every probe (intent key, number, credit code), chosen in that order.
        probes: list[tuple[str, Any]] = []
        if keys.get("intent_key"):
            probes.append((EXTERNAL_ID, keys["intent_key"]))
        for hub_field, key in b.identity.items():
            value = keys.get(hub_field)
            if value not in (None, ""):
                probes.append((key, value))
        if not probes:
            return None
        where = " OR ".join(f"{key} = {_quote(value)}" for key, value in probes)
        fields = [b.pk, *dict.fromkeys(k for k, _ in probes)]
        rows = self._query(b.form_id, fields, where, limit=50)
        for key, value in probes:
            i = fields.index(key)
            ids = {str(r[0]) for r in rows if r[i] is not None and str(r[i]) == str(value)}
            if len(ids) == 1:
                return ids.pop()
        return None

    # -- writes --------------------------------------------------------------------------------------
    def create(self, object_name: str, values: Mapping[str, Any], intent_key: str) -> str:
        """Save a new record carrying ``intent_key`` (submitted and audited by policy)."""
        b = self._binding(object_name)
        model = {**b.create_defaults, **self._model(b, values, "0")}
        model[b.pk] = 0
        model[EXTERNAL_ID] = intent_key
        if b is SALES_ORDERS:
            model.setdefault("FDate", dt.datetime.now(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S"))
            model[ENTRY] = [self._new_line(line) for line in _lines(values.get("lines"))]
        policy = self.lifecycle[b.object]
        the_id, _number = self._call(
            "Save", lambda: self.client.save(b.form_id, model, extra={"IsAutoSubmitAndAudit": policy.audit})
        )
        self._status[(b.object, str(the_id))] = "C" if policy.audit else "A"
        return str(the_id)

    def create_many(
        self, object_name: str, items: Sequence[tuple[Mapping[str, Any], str]]
    ) -> list[str | SpokeError]:
        """Create several records in one ``BatchSave`` (``(values, intent_key)`` each); per item the
        new id, or the :class:`SpokeError` that refused it. A transient failure of the call itself
        is raised: every item's outcome is then unknown (look them up by intent key)."""
        b = self._binding(object_name)
        if not items:
            return []
        models = []
        out: list[str | SpokeError] = []
        for values, intent in items:
            model = {**b.create_defaults, **self._model(b, values, "0"), b.pk: 0, EXTERNAL_ID: intent}
            if b is SALES_ORDERS:
                model.setdefault("FDate", dt.datetime.now(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S"))
                model[ENTRY] = [self._new_line(line) for line in _lines(values.get("lines"))]
            models.append(model)
        policy = self.lifecycle[b.object]
        outcome = self._call(
            "BatchSave",
            lambda: self.client.batch_save(b.form_id, models, extra={"IsAutoSubmitAndAudit": policy.audit}),
        )
        errors: dict[int, list[str]] = {}
        for e in outcome.errors:
            errors.setdefault(int(e.get("DIndex") or 0), []).append(_error_text(e))
        for i in range(len(models)):
            if i in outcome.done:
                the_id = str(outcome.done[i][0])
                self._status[(b.object, the_id)] = "C" if policy.audit else "A"
                out.append(the_id)
            else:
                out.append(
                    SpokeError(f"Kingdee BatchSave refused: {'; '.join(errors.get(i, ['no entity saved']))}")
                )
        return out

    def update(self, object_name: str, external_id: str, values: Mapping[str, Any]) -> None:
        """Change exactly the given fields (un-auditing first when the document is audited)."""
        b = self._binding(object_name)
        fields = {k: v for k, v in values.items() if k not in b.read_only}
        if not fields:
            return
        model = self._model(b, fields, external_id)
        need = [k for k in model if k != b.pk]
        if b is SALES_ORDERS and "lines" in fields:
            entry, changed = self._line_changes(external_id, _lines(fields["lines"]))
            model[ENTRY] = entry
            need += [ENTRY, *changed]
        if not need:
            return
        policy = self.lifecycle[b.object]
        key = (b.object, str(external_id))
        status = self._status.get(key)
        if status is None:
            # Unknown to this process (a new run): one read instead of a refused write.
            rows = self._query(b.form_id, ["FDocumentStatus"], f"{b.pk} = {int(external_id)}", limit=1)
            status = str(rows[0][0]) if rows else None
        if status in ("B", "C"):
            self._unaudit(b, external_id, status, policy)
        # A 暂存 (Z) draft stays a draft: its owner submits it; we only change the fields.
        audit = policy.audit and status != "Z"
        try:
            self._call(
                "Save",
                lambda: self.client.save(
                    b.form_id, model, need_update_fields=need, extra={"IsAutoSubmitAndAudit": audit}
                ),
            )
        except _StatusRefused as refused:
            rows = self._query(b.form_id, ["FDocumentStatus"], f"{b.pk} = {int(external_id)}", limit=1)
            now = str(rows[0][0]) if rows else None
            if now not in ("B", "C"):
                # Not audited, so the refusal was the submit or audit after the Save (a 暂存 Z
                # document, …): the Save itself may be applied. The outcome is unknown, so the engine
                # keeps the write pending and reads the record back next cycle instead of re-sending
                # it blind or taking our own value for a Kingdee edit (a false conflict).
                self._status[key] = now or ""
                raise TransientSpokeError(
                    f"Kingdee {b.form_id} {external_id}: saved but not submitted/audited "
                    f"(status {now}): {refused}"
                ) from None
            # Audited or submitted meanwhile (or unknown to this process): un-audit, then once more.
            self._unaudit(b, external_id, now, policy)
            self._call(
                "Save",
                lambda: self.client.save(
                    b.form_id, model, need_update_fields=need, extra={"IsAutoSubmitAndAudit": policy.audit}
                ),
            )
        self._status[key] = "Z" if status == "Z" else ("C" if policy.audit else "A")

    def delete(self, object_name: str, external_id: str, action: str) -> None:
        """``void``: forbid a customer / cancel an order; ``delete``: delete (un-audit first by policy)."""
        b = self._binding(object_name)
        the_id = int(external_id)
        if action == "void":
            op = "Forbid" if b is ACCOUNTS else "Cancel"
            try:
                self._outcome("ExcuteOperation", lambda: self.client.operation(b.form_id, op, ids=[the_id]))
            except _StatusRefused:
                # Only audited base data can be forbidden: audit it, then forbid.
                self._outcome("Submit", lambda: self.client.lifecycle("submit", b.form_id, ids=[the_id]))
                self._outcome("Audit", lambda: self.client.lifecycle("audit", b.form_id, ids=[the_id]))
                self._outcome("ExcuteOperation", lambda: self.client.operation(b.form_id, op, ids=[the_id]))
            return
        if action != "delete":
            raise SpokeError(f"Kingdee: unknown delete action {action!r} (delete or void)")
        try:
            self._outcome("Delete", lambda: self.client.lifecycle("delete", b.form_id, ids=[the_id]))
        except _StatusRefused:
            self._unaudit(b, external_id, "C", self.lifecycle[b.object])
            self._outcome("Delete", lambda: self.client.lifecycle("delete", b.form_id, ids=[the_id]))
        self._status.pop((b.object, str(external_id)), None)

    # -- translation -----------------------------------------------------------------------------------
    def to_hub(self, object_name: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """A Kingdee record (tap-kingdee property names, ``lines`` for orders) as hub values."""
        b = self._binding(object_name)
        mapped = self._in[b.object].apply(record)
        values = {
            k: v for k, v in mapped.items() if k not in ("source_id", "source_system", "extra", "__lines__")
        }
        values.pop("source_modified_at", None)
        for hub_field, key in b.extra_inbound.items():
            values[hub_field] = record.get(_prop(key))
        if b is SALES_ORDERS:
            values["erp_number"] = values.pop("order_no", None)
            values["erp_status"] = values.pop("status", None)
            values["lines"] = [
                {
                    "entry_id": line.get("source_id"),
                    "line_no": line.get("line_no"),
                    "product_code": line.get("product_code"),
                    "product_name": line.get("product_name"),
                    "qty": line.get("qty"),
                    "unit_price": line.get("unit_price"),
                    "tax_rate": line.get("tax_rate"),
                    "amount": line.get("amount"),
                }
                for line in mapped.get("__lines__") or []
            ]
        return {k: canon(v) for k, v in values.items()}

    def _model(self, b: Binding, values: Mapping[str, Any], external_id: str) -> dict[str, Any]:
        """Save Model keys for exactly the hub fields in ``values`` (through the reverse mapping)."""
        given = {k for k in values if k not in b.read_only and k != "lines"}
        try:
            mapped = self._out[b.object].apply({"id": external_id, **{k: values[k] for k in given}})
        except MappingError as exc:
            raise SpokeError(f"Kingdee {b.form_id}: cannot translate {exc.field}: {exc.reason}") from None
        model: dict[str, Any] = {b.pk: int(external_id)}
        sources = self._out_sources[b.object]
        for target, source in sources.items():
            if source not in given:
                continue
            value = mapped.get(target)
            if target == "FCustId":
                model["FCustId"] = {"FNumber": self._customer_number(value)} if value else {"FNumber": ""}
            elif target.endswith("_FNumber"):
                model[target[: -len("_FNumber")]] = {"FNumber": "" if value is None else str(value)}
            elif isinstance(value, dt.datetime):
                model[target] = value.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")
            elif isinstance(value, Decimal):
                model[target] = format(value, "f")
            else:
                model[target] = "" if value is None else value
        return model

    def _customer_number(self, customer_id: Any) -> str:
        """The number of the Kingdee customer whose internal id an order's ``account_ref`` holds."""
        key = str(customer_id)
        if key not in self._customer_numbers:
            if not key.isdigit():
                raise SpokeError(f"Kingdee SAL_SaleOrder: account_ref {key!r} is not a Kingdee customer id")
            rows = self._query("BD_Customer", ["FNumber"], f"FCUSTID = {int(key)}", limit=1)
            if not rows:
                raise SpokeError(f"Kingdee SAL_SaleOrder: no customer with id {key} (account_ref)")
            self._customer_numbers[key] = str(rows[0][0])
        return self._customer_numbers[key]

    @staticmethod
    def _new_line(line: Mapping[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {"FEntryID": 0}
        for hub_field, key in _LINE_WRITE.items():
            value = line.get(hub_field)
            if value in (None, ""):
                continue
            row[key] = _line_value(hub_field, value)
        return row

    def _line_changes(
        self, external_id: str, wanted: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """The entry rows that turn the order's current lines into ``wanted``: kept lines by
        ``FEntryID`` alone, changed fields only, new lines whole; and the line keys that change."""
        current = {}
        for row in self._query(
            "SAL_SaleOrder",
            [f"{ENTRY}_FEntryID", "FMaterialId.FNumber", "FQty", "FTaxPrice", "FEntryTaxRate"],
            f"FID = {int(external_id)}",
        ):
            if row[0] is None:
                continue
            current[str(row[0])] = {
                "product_code": row[1],
                "qty": canon(row[2]),
                "unit_price": canon(row[3]),
                "tax_rate": canon(Decimal(str(row[4])) / 100) if row[4] is not None else None,
            }
        entry: list[dict[str, Any]] = []
        changed: set[str] = set()
        for line in wanted:
            entry_id = str(line.get("entry_id") or "")
            if entry_id not in current:
                entry.append(self._new_line(line))
                changed.update(k for k, v in self._new_line(line).items() if k != "FEntryID")
                continue
            row: dict[str, Any] = {"FEntryID": int(entry_id)}
            for hub_field, key in _LINE_WRITE.items():
                value = canon(line.get(hub_field))
                if value is not None and value != current[entry_id][hub_field]:
                    row[key] = _line_value(hub_field, value)
                    changed.add(key)
            entry.append(row)
        return entry, sorted(changed)

    # -- plumbing ---------------------------------------------------------------------------------------
    def _binding(self, object_name: str) -> Binding:
        try:
            return BINDINGS[object_name]
        except KeyError:
            raise SpokeError(
                f"Kingdee spoke: no object {object_name!r} (objects: {', '.join(BINDINGS)})"
            ) from None

    def _read(self, b: Binding, where: str) -> list[SpokeRecord]:
        keys = list(b.header_keys) + list(b.line_keys)
        order = ["FModifyDate", b.pk] + ([f"{ENTRY}_FEntryID"] if b.line_keys else [])
        rows: list[list[Any]] = []
        start = 0
        while True:
            page = self._query(
                b.form_id, keys, where, order=", ".join(f"{k} ASC" for k in order), start=start
            )
            rows.extend(page)
            if len(page) < PAGE:
                break
            start += len(page)
        n = len(b.header_keys)
        props = [_prop(k) for k in b.header_keys]
        line_props = [_prop(k) for k in b.line_keys]
        records: dict[str, dict[str, Any]] = {}
        for row in rows:
            the_id = str(row[0])
            rec = records.get(the_id)
            if rec is None:
                rec = dict(zip(props, row[:n], strict=True))
                rec["lines"] = []
                records[the_id] = rec
            if line_props and row[n] is not None:
                rec["lines"].append(dict(zip(line_props, row[n:], strict=True)))
        out = []
        for the_id, rec in records.items():
            self._status[(b.object, the_id)] = str(rec.get("FDocumentStatus") or "")
            try:
                values = self.to_hub(b.object, rec)
            except MappingError as exc:
                # A record the mapping refuses (a malformed value) is set aside with the reason,
                # never guessed; the others go on. Fixing it in Kingdee bumps FModifyDate, so the
                # next incremental read sees it again.
                self.rejected.append((b.object, the_id, str(exc)))
                log.warning("Kingdee %s %s skipped: %s", b.form_id, the_id, exc)
                continue
            deleted = (
                (rec.get("FForbidStatus") == "B") if b is ACCOUNTS else (rec.get("FCancelStatus") == "B")
            )
            out.append(SpokeRecord(the_id, values, _modified(rec.get("FModifyDate")), None, deleted))
        return out

    def _query(
        self, form_id: str, keys: list[str], where: str, *, order: str = "", start: int = 0, limit: int = PAGE
    ) -> list[list[Any]]:
        return self._call(
            "ExecuteBillQuery",
            lambda: self.client.execute_bill_query(form_id, keys, where, order, start_row=start, limit=limit),
        )

    def _unaudit(self, b: Binding, external_id: str, status: str, policy: Lifecycle) -> None:
        if policy.modify_audited == "refuse":
            raise SpokeError(
                f"Kingdee {b.form_id} {external_id} is audited and the policy refuses to change audited documents"
            )
        op = "cancelassign" if status == "B" else "unaudit"
        self._outcome(op, lambda: self.client.lifecycle(op, b.form_id, ids=[int(external_id)]))
        self._status[(b.object, str(external_id))] = "A" if status == "B" else "D"

    def _outcome(self, service: str, fn: Any) -> Any:
        outcome = self._call(service, fn)
        if not outcome.ok:
            if outcome.msg_code == MSG_NOT_ALLOWED:
                raise _StatusRefused("; ".join(str(e.get("Message")) for e in outcome.errors))
            raise SpokeError(
                f"Kingdee {service} refused: " + "; ".join(_error_text(e) for e in outcome.errors)
            )
        return outcome

    def _call(self, service: str, fn: Any) -> Any:
        self.calls[service] = self.calls.get(service, 0) + 1
        try:
            return fn()
        except KingdeeWriteError as exc:
            if exc.msg_code == MSG_NOT_ALLOWED:
                raise _StatusRefused(str(exc)) from None
            detail = "; ".join(_error_text(e) for e in exc.errors) or str(exc)
            raise SpokeError(f"Kingdee {service} refused: {detail}") from None
        except (Throttled, Transient) as exc:
            # Throttled, locked, 5xx, timeout, connection, lost answer: the same call may work later;
            # a write's outcome is unknown, so the engine looks the record up before repeating it.
            raise TransientSpokeError(f"Kingdee {service}: {exc}") from None
        except KingdeeError as exc:
            raise SpokeError(f"Kingdee {service}: {exc}") from None


class _StatusRefused(SpokeError):
    """MsgCode 12: the document's status forbids the operation (audited, submitted)."""


def _error_text(e: Mapping[str, Any]) -> str:
    return (f"{e.get('FieldName')}: " if e.get("FieldName") else "") + str(e.get("Message"))


def _line_value(hub_field: str, value: Any) -> Any:
    if hub_field == "product_code":
        return {"FNumber": str(value)}
    number = Decimal(str(value))
    if hub_field == "tax_rate":
        number *= 100  # the hub keeps a fraction, Kingdee percent
    return format(number.normalize(), "f")


def _lines(value: Any) -> list[dict[str, Any]]:
    if value in (None, ""):
        return []
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise SpokeError("Kingdee SAL_SaleOrder: lines must be a list of objects")
    return [dict(v) for v in value]


def _modified(raw: Any) -> dt.datetime | None:
    if not raw:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(raw))
    except ValueError:
        return None
    moment = moment.replace(tzinfo=CHINA_TZ) if moment.tzinfo is None else moment
    # In UTC: a hub on SQLite keeps datetimes without their offset and reads them back as UTC.
    return moment.astimezone(dt.UTC)


def make_spoke(config: Mapping[str, Any], *, system: str = "kingdee") -> KingdeeSpoke:
    """The spoke of a project connection (``connectors.kit.spoke`` hook: found by the registry).

    ``config`` is the connection's resolved config (the tap's settings); the lifecycle is the
    default (audit, un-audit to change) unless ``audit`` / ``modify_audited`` say otherwise.
    """
    client = KingdeeClient.from_config(config, connector=f"the {system} spoke")
    policy = Lifecycle(
        audit=bool(config.get("audit", True)), modify_audited=config.get("modify_audited") or "unaudit"
    )
    return KingdeeSpoke(client, system=system, lifecycle=dict.fromkeys(BINDINGS, policy))
