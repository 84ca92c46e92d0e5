"""The Tender feeds (标讯) streams: one small class per endpoint (paging and cursors are the kit's)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from singer_sdk import typing as th

from connectors.tender.client import TenderClient
from connectors.kit.streams import KeysetStream, OpaqueCursorStream

_TIME = th.DateTimeType
_MONEY = th.CustomType({"type": ["number", "string", "null"]})  # the source may send junk: map decides


class _TenderStream:
    """What every Tender feeds (标讯) stream shares: the tap's client and the endpoint path."""

    path: ClassVar[str]
    _tap: Any

    @property
    def client(self) -> TenderClient:
        """The tap's shared client."""
        return self._tap.client  # type: ignore[no-any-return]


class _ChangedSince(_TenderStream, KeysetStream):
    """An endpoint answering ``?updated_since=&after_id=&limit=`` in ``(updated_at, id)`` order."""

    def fetch_page(self, since: str | None, after_id: int | None, limit: int) -> Sequence[dict[str, Any]]:
        """One page after ``(since, after_id)``."""
        body = self.client.get(self.path, updated_since=since, after_id=after_id, limit=limit)
        return list(body["data"])


class CustomersStream(_ChangedSince):
    """``customers``: companies, incremental on ``(updated_at, id)``."""

    name = "customers"
    path = "/api/v1/customers"
    primary_keys = ("id",)
    schema = th.PropertiesList(
        th.Property("id", th.IntegerType, required=True),
        th.Property("name", th.StringType),
        th.Property("credit_code", th.StringType, description="统一社会信用代码"),
        th.Property("industry", th.StringType),
        th.Property("phone", th.StringType),
        th.Property("address", th.StringType),
        th.Property("owner", th.StringType),
        th.Property("updated_at", _TIME, required=True),
    ).to_dict()


class ContactsStream(_TenderStream, OpaqueCursorStream):
    """``contacts``: people at customers, read in full, paged by an opaque ``next_cursor``."""

    name = "contacts"
    path = "/api/v1/contacts"
    primary_keys = ("id",)
    schema = th.PropertiesList(
        th.Property("id", th.IntegerType, required=True),
        th.Property("customer_id", th.IntegerType),
        th.Property("name", th.StringType),
        th.Property("mobile", th.StringType),
        th.Property("email", th.StringType),
    ).to_dict()

    def fetch_page(self, cursor: str | None, limit: int) -> Mapping[str, Any]:
        """One page after ``cursor``."""
        return dict(self.client.get(self.path, cursor=cursor, limit=limit))


class OrdersStream(_ChangedSince):
    """``orders``: sales orders with their ``lines``, incremental on ``(updated_at, id)``."""

    name = "orders"
    path = "/api/v1/orders"
    primary_keys = ("id",)
    schema = th.PropertiesList(
        th.Property("id", th.IntegerType, required=True),
        th.Property("order_no", th.StringType),
        th.Property("customer_id", th.IntegerType),
        th.Property("amount", _MONEY),
        th.Property(
            "lines",
            th.ArrayType(
                th.ObjectType(
                    th.Property("line_id", th.IntegerType, required=True),
                    th.Property("line_no", th.IntegerType),
                    th.Property("sku", th.StringType),
                    th.Property("qty", _MONEY),
                    th.Property("unit_price", _MONEY),
                )
            ),
        ),
        th.Property("updated_at", _TIME, required=True),
    ).to_dict()
