"""Shopify webhooks as a ``tongbu serve`` event source.

Shopify POSTs the whole record as JSON with ``X-Shopify-Topic`` (``orders/updated``…),
``X-Shopify-Shop-Domain``, ``X-Shopify-Webhook-Id`` and ``X-Shopify-Hmac-Sha256``: base64 of the
HMAC-SHA256 of the **raw body** with the app's secret. Checks, cheapest first, before the body is
parsed: the headers' shapes, the shop domain (when configured), then the HMAC (constant-time compare);
anything wrong is a 401 and nothing is stored. Delivery is at least once: the webhook id is the dedup
key, so a retried or replayed delivery is acknowledged without effect. Deliveries are not ordered;
:class:`connectors.kit.record_events.RecordEventWriter` keeps the newest version of each record.

Topics: ``orders/create|updated|paid|cancelled|fulfilled|partially_fulfilled`` (the order, status from
``financial_status``), ``customers/create|update|enable|disable``, ``products/create|update``, and the
``*/delete`` topics (soft delete). ``refunds/create`` is observed only: Shopify follows it with an
``orders/updated`` carrying the new ``financial_status``.

Connection config (``tongbu.yaml``)::

    shop:
      connector: shopify
      config:
        shop_url: https://acme.myshopify.com
        webhook_secret: vault:shop.webhook_secret    # the app's client secret
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from starlette.responses import PlainTextResponse, Response

from connectors.kit.events import EventRejected, InboundEvent, PreparedChange
from connectors.kit.logs import remember_secret
from connectors.kit.record_events import RecordEventSource, json_object

MAPPING_FILE = Path(__file__).resolve().parents[2] / "mappings" / "library" / "shopify_to_crm.yaml"
MAPPINGS = {
    "orders": "shopify_orders_to_sales_orders",
    "customers": "shopify_customers_to_contacts",
    "products": "shopify_products_to_products",
}
_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz_/")
_ID_CHARS = frozenset("0123456789abcdefABCDEF-")


def verify_hmac(secret: str, body: bytes, header: str) -> bool:
    """Whether ``header`` is base64(HMAC-SHA256(secret, body)), compared in constant time."""
    try:
        given = base64.b64decode(header, validate=True)
    except (binascii.Error, ValueError):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return hmac.compare_digest(given, expected)


class ShopifyEventSource(RecordEventSource):
    """Verifies Shopify webhooks and applies the records they carry to the hub."""

    connector = "shopify"
    tap_class = "connectors.shopify.tap:TapShopify"
    label = "Shopify"
    mapping_file = MAPPING_FILE
    mappings = MAPPINGS

    def configure(self, config: Mapping[str, Any]) -> None:
        """The webhook secret and the shop (a ValueError says which setting is missing)."""
        name = self.name
        secret = config.get("webhook_secret") or config.get("client_secret")
        if not secret:
            raise ValueError(
                f"connection {name!r}: Shopify webhooks need webhook_secret (the app's client secret; "
                f"store it with `tongbu vault set {name}.webhook_secret`)"
            )
        self.secret = str(secret)
        remember_secret(self.secret)
        domain = config.get("shop_domain") or urlparse(str(config.get("shop_url") or "")).hostname or ""
        # Only a real shop domain is checked; a loopback simulator URL names no shop.
        self.shop_domain = domain if domain.endswith(".myshopify.com") else ""

    def ack(self) -> Response:
        """Shopify only needs a 2xx within five seconds."""
        return PlainTextResponse("ok")

    def parse(
        self, query: Mapping[str, str], headers: Mapping[str, str], body: bytes, received_at: float
    ) -> list[InboundEvent]:
        """Verify one delivery (headers, shop, HMAC — before JSON is parsed) into one event."""
        topic = headers.get("x-shopify-topic") or ""
        signature = headers.get("x-shopify-hmac-sha256") or ""
        webhook_id = headers.get("x-shopify-webhook-id") or ""
        if not signature:
            raise EventRejected(401, "X-Shopify-Hmac-Sha256 is missing")
        if len(signature) > 64:
            raise EventRejected(401, "signature check failed")
        if not topic or len(topic) > 64 or not _TOPIC_CHARS.issuperset(topic) or "/" not in topic:
            raise EventRejected(400, "X-Shopify-Topic is missing or malformed")
        if not webhook_id or len(webhook_id) > 64 or not _ID_CHARS.issuperset(webhook_id):
            raise EventRejected(400, "X-Shopify-Webhook-Id is missing or malformed")
        shop = headers.get("x-shopify-shop-domain") or ""
        if self.shop_domain and shop != self.shop_domain:
            raise EventRejected(401, "webhook is from another shop")
        if not verify_hmac(self.secret, body, signature):
            raise EventRejected(401, "signature check failed")
        payload = json_object(body)
        resource, _, action = topic.partition("/")
        record_id = payload.get("order_id") if resource == "refunds" else payload.get("id")
        if not isinstance(record_id, int | str) or not str(record_id).isdigit():
            raise EventRejected(400, f"{topic} without a numeric id")
        stream = "orders" if resource == "refunds" else resource
        return [
            InboundEvent(
                source=self.name,
                dedup_key=webhook_id,
                record_key=f"{stream}:{record_id}",
                kind=topic,
                payload={**payload, "shop": payload.get("shop") or shop or None},
                received_at=received_at,
            )
        ]

    def prepare(self, record_key: str, events: list[InboundEvent]) -> PreparedChange:
        """The newest version of the record among ``events`` (deletions win), mapped for the hub."""
        stream, _, source_id = record_key.partition(":")
        if stream not in MAPPINGS:
            return PreparedChange(write=None, status="ignored", summary={"ignored": [e.kind for e in events]})
        if any(e.kind.endswith("/delete") for e in events):
            return self.writer.delete(stream, source_id)
        records = [e for e in events if not e.kind.startswith("refunds/")]
        if not records:
            return PreparedChange(
                write=None, observed=(f"{self.name}/orders",), summary={"refund": source_id}
            )
        # Deliveries may arrive out of order: the newest updated_at wins (ISO with offset: compare as UTC).
        newest = max(records, key=lambda e: (_stamp(e.payload.get("updated_at")), e.id or 0))
        return self.writer.upsert(stream, newest.payload, source_id=source_id)


def _stamp(value: Any) -> float:
    if not isinstance(value, str):
        return 0.0
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
