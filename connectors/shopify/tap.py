"""``tap-shopify``: a Shopify (or Shopify-compatible) shop's orders with line items, customers and products."""

from __future__ import annotations

from functools import cached_property

from singer_sdk import typing as th

from connectors.kit.settings import http_properties
from connectors.kit.tap import ClientTap, read_properties
from connectors.shopify.client import ShopifyClient, client_from_config
from connectors.shopify.streams import CustomersStream, OrdersStream, ProductsStream


def parse_offset(timezone: str) -> int:
    """Minutes east of UTC from ``shop.json``'s ``timezone`` (``"(GMT+08:00) Asia/Shanghai"``); 0 if none."""
    text = timezone.strip()
    if not text.startswith("(GMT") or len(text) < 11 or text[4] not in "+-":
        return 0
    hours, _, minutes = text[5:10].partition(":")
    if not (hours.isdigit() and minutes.isdigit()):
        return 0
    sign = 1 if text[4] == "+" else -1
    return sign * (int(hours) * 60 + int(minutes))


class TapShopify(ClientTap[ShopifyClient]):
    """Singer tap for the Shopify Admin REST API."""

    name = "tap-shopify"
    stream_types = (OrdersStream, CustomersStream, ProductsStream)
    config_jsonschema = th.PropertiesList(
        th.Property(
            "shop_url",
            th.StringType,
            required=True,
            description="The shop, e.g. https://acme.myshopify.com (or the simulator's URL)",
        ),
        th.Property(
            "api_version", th.StringType, default="2024-10", description="Admin API version, YYYY-MM"
        ),
        th.Property(
            "access_token", th.StringType, secret=True, description="A custom app's admin token (shpat_…)"
        ),
        th.Property(
            "client_id", th.StringType, description="The app's client id (client-credentials tokens)"
        ),
        th.Property("client_secret", th.StringType, secret=True),
        th.Property(
            "calls_per_second",
            th.NumberType,
            default=2.0,
            description="The plan's leak rate: Standard 2, Advanced 4, Plus 20 (the client paces itself to it)",
        ),
        th.Property("bucket_reserve", th.IntegerType, default=2, description="Calls left free in the bucket"),
        *read_properties(page_size=250, page_size_description="Records per API call (max 250)"),
        th.Property(
            "webhook_secret",
            th.StringType,
            secret=True,
            description="tongbu serve: the app's secret that signs webhooks (X-Shopify-Hmac-Sha256); the tap ignores it",
        ),
        th.Property(
            "shop_domain",
            th.StringType,
            description="tongbu serve: accept webhooks only from this *.myshopify.com domain (default: shop_url's)",
        ),
        *http_properties(request_timeout=30),
    ).to_dict()

    def make_client(self) -> ShopifyClient:
        """A client from the config."""
        return client_from_config(self.config, connector=self.name)

    @cached_property
    def _shop(self) -> dict[str, str]:
        shop = self.client.shop()
        return {
            "domain": str(shop.get("myshopify_domain") or shop.get("domain") or ""),
            "tz": str(shop.get("timezone") or ""),
        }

    @property
    def shop_domain(self) -> str:
        """The shop's ``myshopify`` domain (recorded on each order as its channel)."""
        return self._shop["domain"]

    @property
    def shop_offset_minutes(self) -> int:
        """The shop's UTC offset: filters are sent in it, as the shop's admin shows times."""
        return parse_offset(self._shop["tz"])


if __name__ == "__main__":
    TapShopify.cli()
