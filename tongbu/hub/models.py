"""The CRM hub: SQLAlchemy 2.x models for the sales-force-automation objects every sync lands in.

Every hub row carries the tenant, the system it came from and its id there (``source_system`` +
``source_id``, unique per tenant), so re-running a sync upserts instead of duplicating, and a
``row_hash`` of its business fields, so an upsert of an unchanged record writes nothing (the
incremental path stays cheap even when a lookback window re-reads rows). Links to the same record in
*other* systems live in :class:`RecordLink`, which also keeps the last snapshot synced with each
system for the bi-directional engine.

Business columns are deliberately nullable: what a source does not send stays NULL rather than being
invented, and later issues add columns through migrations without rewriting these classes.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from tongbu.config import DEFAULT_TENANT
from tongbu.db import Base

Money = Numeric(18, 2)


class HubRecord:
    """Columns every hub object shares: identity per source system, change detection, audit times."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT, nullable=False)
    source_system: Mapped[str] = mapped_column(String(32), nullable=False)
    source_id: Mapped[str] = mapped_column(String(128), nullable=False)
    # Hash of the mapped business fields; the upsert skips rows whose hash did not change.
    row_hash: Mapped[str] = mapped_column(String(32), nullable=False)
    # Unmapped source fields the mapping chose to keep (``extra.*`` targets).
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    source_modified_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.current_timestamp(), nullable=False
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.current_timestamp(), nullable=False
    )

    @declared_attr.directive
    def __table_args__(cls) -> tuple:  # noqa: N805 - SQLAlchemy passes the class
        return (UniqueConstraint("tenant_id", "source_system", "source_id"),)


class Account(HubRecord, Base):
    """客户: a customer company."""

    __tablename__ = "accounts"
    number: Mapped[str | None] = mapped_column(String(64))
    # No index on name: no sync looks accounts up by name (credit code and source id do that), and
    # every changed name would rewrite an index page too, doubling the cost of an incremental update.
    name: Mapped[str | None] = mapped_column(String(255))
    short_name: Mapped[str | None] = mapped_column(String(128))
    credit_code: Mapped[str | None] = mapped_column(String(18), index=True)  # 统一社会信用代码
    grade: Mapped[str | None] = mapped_column(String(32))
    industry: Mapped[str | None] = mapped_column(String(64))
    region: Mapped[str | None] = mapped_column(String(64))
    province: Mapped[str | None] = mapped_column(String(32))
    city: Mapped[str | None] = mapped_column(String(32))
    address: Mapped[str | None] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(String(32))
    owner: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str | None] = mapped_column(String(32))
    account_type: Mapped[str | None] = mapped_column(String(32))
    currency: Mapped[str | None] = mapped_column(String(8))
    # Owned by the ERP in two-way syncs (信用额度, 应收余额): the CRM shows them, the ERP decides them.
    credit_limit: Mapped[Decimal | None] = mapped_column(Money)
    receivable_balance: Mapped[Decimal | None] = mapped_column(Money)


class Contact(HubRecord, Base):
    """联系人: a person at a customer (including WeCom external contacts)."""

    __tablename__ = "contacts"
    account_ref: Mapped[str | None] = mapped_column(String(128), index=True)
    name: Mapped[str | None] = mapped_column(String(128))
    title: Mapped[str | None] = mapped_column(String(64))
    department: Mapped[str | None] = mapped_column(String(64))
    mobile: Mapped[str | None] = mapped_column(String(32), index=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(128))
    gender: Mapped[str | None] = mapped_column(String(16))
    wecom_external_userid: Mapped[str | None] = mapped_column(String(64), index=True)
    # A shop buyer's address (migration 0011): evidence for identity resolution, and where orders go.
    address: Mapped[str | None] = mapped_column(String(255))
    owner: Mapped[str | None] = mapped_column(String(64))
    tags: Mapped[list[Any] | None] = mapped_column(JSON)
    remark: Mapped[str | None] = mapped_column(Text)


class Lead(HubRecord, Base):
    """线索: an unqualified prospect (tender notices, web forms, shop buyers)."""

    __tablename__ = "leads"
    name: Mapped[str | None] = mapped_column(String(255))
    company: Mapped[str | None] = mapped_column(String(255))
    credit_code: Mapped[str | None] = mapped_column(String(18))
    mobile: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(128))
    channel: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str | None] = mapped_column(String(32))
    budget: Mapped[Decimal | None] = mapped_column(Money)
    owner: Mapped[str | None] = mapped_column(String(64))


class Opportunity(HubRecord, Base):
    """商机: a sales opportunity with stage, amount and win rate."""

    __tablename__ = "opportunities"
    name: Mapped[str | None] = mapped_column(String(255))
    account_ref: Mapped[str | None] = mapped_column(String(128), index=True)
    stage: Mapped[str | None] = mapped_column(String(32))
    amount: Mapped[Decimal | None] = mapped_column(Money)
    win_rate: Mapped[float | None] = mapped_column(Numeric(5, 2))
    expected_close: Mapped[dt.date | None] = mapped_column(DateTime(timezone=True))
    owner: Mapped[str | None] = mapped_column(String(64))


class SalesOrder(HubRecord, Base):
    """销售订单: an order header; its lines are :class:`SalesOrderLine` rows."""

    __tablename__ = "sales_orders"
    order_no: Mapped[str | None] = mapped_column(String(64), index=True)
    account_ref: Mapped[str | None] = mapped_column(String(128), index=True)
    order_date: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    currency: Mapped[str | None] = mapped_column(String(8))
    amount: Mapped[Decimal | None] = mapped_column(Money)
    status: Mapped[str | None] = mapped_column(String(32))
    owner: Mapped[str | None] = mapped_column(String(64))
    # Lead-to-cash: the ERP's bill number and document status, owned by the ERP (migration 0007),
    # and the lines as one value for the two-way engine (each with its ERP entry id once known).
    erp_number: Mapped[str | None] = mapped_column(String(64), index=True)
    erp_status: Mapped[str | None] = mapped_column(String(32))
    lines: Mapped[list[Any] | None] = mapped_column(JSON)
    # Shop orders (migration 0011): the buyer (a contact's source id), the channel and the shop.
    contact_ref: Mapped[str | None] = mapped_column(String(128), index=True)
    channel: Mapped[str | None] = mapped_column(String(32))
    shop: Mapped[str | None] = mapped_column(String(128))


class SalesOrderLine(HubRecord, Base):
    """销售订单明细: one order line, keyed by its own source id (e.g. Kingdee ``FEntryID``)."""

    __tablename__ = "sales_order_lines"
    order_id: Mapped[int | None] = mapped_column(
        ForeignKey("sales_orders.id", ondelete="CASCADE"), nullable=True, index=True
    )
    order_source_id: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    line_no: Mapped[int | None] = mapped_column(Integer)
    product_code: Mapped[str | None] = mapped_column(String(64))
    product_name: Mapped[str | None] = mapped_column(String(255))
    qty: Mapped[Decimal | None] = mapped_column(Numeric(18, 4))
    unit_price: Mapped[Decimal | None] = mapped_column(Numeric(18, 4))
    amount: Mapped[Decimal | None] = mapped_column(Money)
    tax_rate: Mapped[Decimal | None] = mapped_column(Numeric(6, 4))
    # The product's source id (migration 0011), beside its code: a shop SKU may be blank or reused.
    product_ref: Mapped[str | None] = mapped_column(String(128), index=True)


class Receivable(HubRecord, Base):
    """应收单: an amount a customer owes."""

    __tablename__ = "receivables"
    bill_no: Mapped[str | None] = mapped_column(String(64), index=True)
    account_ref: Mapped[str | None] = mapped_column(String(128), index=True)
    order_ref: Mapped[str | None] = mapped_column(String(128))
    bill_date: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    due_date: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    currency: Mapped[str | None] = mapped_column(String(8))
    amount: Mapped[Decimal | None] = mapped_column(Money)
    received_amount: Mapped[Decimal | None] = mapped_column(Money)
    status: Mapped[str | None] = mapped_column(String(32))


class Payment(HubRecord, Base):
    """回款: money received against receivables."""

    __tablename__ = "payments"
    bill_no: Mapped[str | None] = mapped_column(String(64), index=True)
    account_ref: Mapped[str | None] = mapped_column(String(128), index=True)
    receivable_ref: Mapped[str | None] = mapped_column(String(128))
    pay_date: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    amount: Mapped[Decimal | None] = mapped_column(Money)
    method: Mapped[str | None] = mapped_column(String(32))
    currency: Mapped[str | None] = mapped_column(String(8))


class Product(HubRecord, Base):
    """产品: a sellable item."""

    __tablename__ = "products"
    code: Mapped[str | None] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    spec: Mapped[str | None] = mapped_column(String(255))
    unit: Mapped[str | None] = mapped_column(String(16))
    price: Mapped[Decimal | None] = mapped_column(Numeric(18, 4))
    category: Mapped[str | None] = mapped_column(String(64))


class Activity(HubRecord, Base):
    """跟进记录: communication history (call, email, SMS, WeCom chat, visit)."""

    __tablename__ = "activities"
    kind: Mapped[str | None] = mapped_column(String(32))
    subject: Mapped[str | None] = mapped_column(String(255))
    content: Mapped[str | None] = mapped_column(Text)
    direction: Mapped[str | None] = mapped_column(String(16))
    occurred_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    account_ref: Mapped[str | None] = mapped_column(String(128), index=True)
    contact_ref: Mapped[str | None] = mapped_column(String(128), index=True)
    owner: Mapped[str | None] = mapped_column(String(64))


class Device(HubRecord, Base):
    """装机设备: an installed device at a customer (the installed base IoT feeds report on)."""

    __tablename__ = "devices"
    serial_no: Mapped[str | None] = mapped_column(String(64), index=True)
    model: Mapped[str | None] = mapped_column(String(64))
    product_code: Mapped[str | None] = mapped_column(String(64))
    account_ref: Mapped[str | None] = mapped_column(String(128), index=True)
    installed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str | None] = mapped_column(String(32))
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    telemetry: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class RecordLink(Base):
    """The id of a hub record in one external system, with the last snapshot synced with it.

    The bi-directional engine compares the hub row and the external row against this snapshot to
    tell who changed what since the last sync (three-way merge) and to recognise its own echoes.
    """

    __tablename__ = "record_links"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT, nullable=False)
    object: Mapped[str] = mapped_column(String(32), nullable=False)
    hub_id: Mapped[int] = mapped_column(Integer, nullable=False)
    system: Mapped[str] = mapped_column(String(32), nullable=False)
    external_id: Mapped[str] = mapped_column(String(128), nullable=False)
    snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    snapshot_hash: Mapped[str | None] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    synced_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # linked | creating (a create was sent and its answer not yet stored: look it up before retrying)
    # | deleted (the delete or void was applied there).
    state: Mapped[str] = mapped_column(String(16), default="linked", server_default="linked", nullable=False)
    #: The idempotency key of a create in flight (also sent to the system where it can carry one).
    intent_key: Mapped[str | None] = mapped_column(String(64))
    #: The system's own modification time of the record as last read: an older read is stale.
    source_modified_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: An update decided but not yet known to be applied there (migration 0007): a crash between the
    #: decision and the write, or a lost answer, is finished by reading the record back.
    pending: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))

    __table_args__ = (
        UniqueConstraint("tenant_id", "object", "system", "external_id"),
        # One link per entity and system: two concurrent creates cannot both link.
        UniqueConstraint("tenant_id", "object", "system", "hub_id"),
        Index("ix_record_links_hub", "tenant_id", "object", "hub_id"),
    )


class HubChange(Base):
    """The CRM's own history: every edit made through its API, with the author and the origin.

    The two-way engine reads it to know who changed a field and when; an edit made directly in the
    database by another application leaves no entry and is still found (its row hash moves) and
    attributed to "direct database edit".
    """

    __tablename__ = "hub_changes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT, nullable=False)
    object: Mapped[str] = mapped_column(String(32), nullable=False)
    hub_id: Mapped[int] = mapped_column(Integer, nullable=False)
    op: Mapped[str] = mapped_column(String(8), nullable=False)  # create | update | delete
    values: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    author: Mapped[str] = mapped_column(String(128), nullable=False)
    origin: Mapped[str] = mapped_column(String(32), nullable=False)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    __table_args__ = (Index("ix_hub_changes_entity", "tenant_id", "object", "hub_id", "id"),)


class BuyerLink(Base):
    """Which CRM person a shop buyer is (migration 0011), decided by :mod:`connectors.kit.identity`.

    One row per buyer (a contact of a shop, ``source_system`` + ``source_id``): ``contact_id`` is the hub
    contact it was matched to (the buyer's own row when it is a new person), ``rule`` the evidence
    (``phone``, ``email``, ``name_address``, ``new``) and ``score`` its strength. A buyer the matcher
    could not decide has no link but an open :class:`IdentityReview`.
    """

    __tablename__ = "buyer_links"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT, nullable=False)
    source_system: Mapped[str] = mapped_column(String(32), nullable=False)
    source_id: Mapped[str] = mapped_column(String(128), nullable=False)
    contact_id: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    #: the hub account of the buyer's company, when one was given and found or created
    account_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rule: Mapped[str] = mapped_column(String(32), nullable=False)
    score: Mapped[float] = mapped_column(Numeric(5, 3), nullable=False)
    decided_by: Mapped[str] = mapped_column(String(64), nullable=False)  # matcher | reviewer name
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    __table_args__ = (
        UniqueConstraint("tenant_id", "source_system", "source_id", name="uq_buyer_links_buyer"),
    )


class IdentityReview(Base):
    """A buyer the matcher could not place alone (migration 0011): the candidates and why.

    ``candidates`` is a list of ``{contact_id, score, reasons}``; ``status`` is ``open`` until a person
    decides (``matched`` with ``decided_contact_id``, or ``new``).
    """

    __tablename__ = "identity_reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT, nullable=False)
    source_system: Mapped[str] = mapped_column(String(32), nullable=False)
    source_id: Mapped[str] = mapped_column(String(128), nullable=False)
    reason: Mapped[str] = mapped_column(String(255), nullable=False)
    candidates: Mapped[list[Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="open")
    decided_contact_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    __table_args__ = (
        UniqueConstraint("tenant_id", "source_system", "source_id", name="uq_identity_reviews_buyer"),
        Index("ix_identity_reviews_status", "tenant_id", "status"),
    )


#: Hub object name -> model class. Mapping files target these names.
HUB_OBJECTS: dict[str, type[HubRecord]] = {
    cls.__tablename__: cls  # type: ignore[attr-defined]
    for cls in (
        Account,
        Contact,
        Lead,
        Opportunity,
        SalesOrder,
        SalesOrderLine,
        Receivable,
        Payment,
        Product,
        Activity,
        Device,
    )
}

#: Columns the framework fills; mappings may not target them (except ``source_id``/``source_modified_at``).
SYSTEM_COLUMNS = frozenset({"id", "tenant_id", "row_hash", "created_at", "updated_at", "deleted_at"})

#: Objects whose records carry nested child rows, and the child object / parent key.
CHILD_OBJECTS: dict[str, tuple[str, str]] = {"sales_orders": ("sales_order_lines", "order_source_id")}
