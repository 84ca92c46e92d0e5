"""The Shopify streams: orders (with line items), customers and products, incremental on ``updated_at``.

Each stream is read with ``order=updated_at asc`` from ``updated_at_min`` (the bookmark, rendered in the
shop's UTC offset, whole seconds), then page by page through the ``Link`` header's ``page_info`` — the
only way the REST API pages. The bookmark is the kit's compound ``(updated_at, id)`` cursor
(:class:`connectors.kit.streams.KeysetStream`); because ``updated_at_min`` is inclusive and has
whole-second precision, a resumed read skips the records at or before the cursor itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from singer_sdk import typing as th

from connectors.kit.streams import KeysetStream
from connectors.shopify.client import ShopifyClient

MAX_PAGE = 250
_TIME = th.DateTimeType
_STR = th.StringType
_INT = th.IntegerType
#: prices are strings on the wire ("199.00"); the mapping turns them into decimals
_MONEY = th.StringType

_ADDRESS = th.ObjectType(
    *(
        th.Property(name, _STR)
        for name in (
            "first_name",
            "last_name",
            "name",
            "company",
            "address1",
            "address2",
            "city",
            "province",
            "province_code",
            "country",
            "country_code",
            "zip",
            "phone",
        )
    )
)


def shop_offset_iso(utc_text: str, offset_min: int) -> str:
    """A fixed-width UTC time as Shopify's filters take it: whole seconds (floored) in the shop's offset."""
    parsed = dt.datetime.fromisoformat(utc_text.replace("Z", "+00:00")).replace(microsecond=0)
    return parsed.astimezone(dt.timezone(dt.timedelta(minutes=offset_min))).isoformat(timespec="seconds")


class ShopifyStream(KeysetStream):
    """A REST list endpoint read in ``(updated_at, id)`` order through ``page_info`` cursors."""

    path: ClassVar[str]
    #: the body key of the list (``orders``)
    records_key: ClassVar[str]
    #: extra filters of the first request (orders: ``status=any``, or only open ones are listed)
    filters: ClassVar[Mapping[str, str]] = {}
    default_page_size = max_page_size = MAX_PAGE
    _tap: Any

    @property
    def client(self) -> ShopifyClient:
        """The tap's shared client."""
        return self._tap.client  # type: ignore[no-any-return]

    def get_records(self, context: Mapping[str, Any] | None) -> Iterator[dict[str, Any]]:
        """Every record after the starting cursor (minus the lookback, never before ``start_date``)."""
        after, since = self.read_start(context)
        params: dict[str, Any] = {**self.filters, "order": "updated_at asc", "limit": self.page_size}
        if since is not None:
            params["updated_at_min"] = shop_offset_iso(since, self._tap.shop_offset_minutes)
        for page in self.client.pages(self.path, params, self.records_key):
            for record in page:
                if not self.is_past(after, str(record["updated_at"]), int(record["id"])):
                    continue  # at or before the bookmark: the inclusive, whole-second filter re-sent it
                yield self.shape(record)

    def shape(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record as emitted (the channel's shop is added by the tap)."""
        record["shop"] = self._tap.shop_domain
        return record


class OrdersStream(ShopifyStream):
    """``orders``: every status (``status=any``), with ``line_items``, the buyer and the addresses."""

    name = "orders"
    path = "/orders.json"
    records_key = "orders"
    filters: ClassVar[Mapping[str, str]] = {"status": "any"}
    primary_keys = ("id",)
    schema = th.PropertiesList(
        th.Property("id", _INT, required=True),
        th.Property("name", _STR, description='the order name shown to the buyer, e.g. "#1001"'),
        th.Property("order_number", _INT),
        th.Property("email", _STR),
        th.Property("phone", _STR),
        th.Property("created_at", _TIME),
        th.Property("updated_at", _TIME, required=True),
        th.Property("processed_at", _TIME),
        th.Property("cancelled_at", _TIME),
        th.Property("cancel_reason", _STR),
        th.Property("closed_at", _TIME),
        th.Property("currency", _STR),
        th.Property("financial_status", _STR),
        th.Property("fulfillment_status", _STR),
        th.Property("subtotal_price", _MONEY),
        th.Property("total_price", _MONEY),
        th.Property("total_tax", _MONEY),
        th.Property("total_discounts", _MONEY),
        th.Property("tags", _STR),
        th.Property("note", _STR),
        th.Property("source_name", _STR),
        th.Property(
            "customer",
            th.ObjectType(
                th.Property("id", _INT),
                th.Property("email", _STR),
                th.Property("first_name", _STR),
                th.Property("last_name", _STR),
                th.Property("phone", _STR),
            ),
        ),
        th.Property("billing_address", _ADDRESS),
        th.Property("shipping_address", _ADDRESS),
        th.Property(
            "line_items",
            th.ArrayType(
                th.ObjectType(
                    th.Property("id", _INT, required=True),
                    th.Property("product_id", _INT),
                    th.Property("variant_id", _INT),
                    th.Property("sku", _STR),
                    th.Property("title", _STR),
                    th.Property("variant_title", _STR),
                    th.Property("quantity", th.CustomType({"type": ["integer", "string", "null"]})),
                    th.Property("price", _MONEY),
                )
            ),
        ),
        th.Property("shop", _STR, description="the shop's myshopify domain (the order's channel)"),
    ).to_dict()


class CustomersStream(ShopifyStream):
    """``customers``: buyers, with their default address."""

    name = "customers"
    path = "/customers.json"
    records_key = "customers"
    primary_keys = ("id",)
    schema = th.PropertiesList(
        th.Property("id", _INT, required=True),
        th.Property("email", _STR),
        th.Property("first_name", _STR),
        th.Property("last_name", _STR),
        th.Property("phone", _STR),
        th.Property("state", _STR),
        th.Property("orders_count", _INT),
        th.Property("total_spent", _MONEY),
        th.Property("tags", _STR),
        th.Property("note", _STR),
        th.Property("verified_email", th.BooleanType),
        th.Property("tax_exempt", th.BooleanType),
        th.Property("currency", _STR),
        th.Property("created_at", _TIME),
        th.Property("updated_at", _TIME, required=True),
        th.Property("default_address", _ADDRESS),
        th.Property("addresses", th.ArrayType(_ADDRESS)),
        th.Property("shop", _STR),
    ).to_dict()


class ProductsStream(ShopifyStream):
    """``products``: with their ``variants`` (SKU and price per variant)."""

    name = "products"
    path = "/products.json"
    records_key = "products"
    primary_keys = ("id",)
    schema = th.PropertiesList(
        th.Property("id", _INT, required=True),
        th.Property("title", _STR),
        th.Property("body_html", _STR),
        th.Property("vendor", _STR),
        th.Property("product_type", _STR),
        th.Property("handle", _STR),
        th.Property("status", _STR),
        th.Property("tags", _STR),
        th.Property("created_at", _TIME),
        th.Property("updated_at", _TIME, required=True),
        th.Property("published_at", _TIME),
        th.Property(
            "variants",
            th.ArrayType(
                th.ObjectType(
                    th.Property("id", _INT),
                    th.Property("product_id", _INT),
                    th.Property("title", _STR),
                    th.Property("price", _MONEY),
                    th.Property("sku", _STR),
                    th.Property("inventory_quantity", _INT),
                )
            ),
        ),
        th.Property("shop", _STR),
    ).to_dict()
