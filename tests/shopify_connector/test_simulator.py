"""The Shopify simulator checked with the official ``ShopifyAPI`` client (PyPI), used unchanged.

The client is pointed at the loopback simulator through its own settings (``Session.setup``: protocol,
domain and port); everything else — ``X-Shopify-Access-Token``, the ``Link`` header parser, the
call-limit reader, ``find(from_=…)`` paging — is the library's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

shopify = pytest.importorskip("shopify")
from pyactiveresource.connection import BadRequest, ResourceNotFound, UnauthorizedAccess  # noqa: E402

from connectors.shopify.simulator import ShopifySimulator  # noqa: E402

VERSION = "2024-10"


@pytest.fixture
def shop() -> Iterator[ShopifySimulator]:
    sim = ShopifySimulator(records=120, seed=5, bucket=40, leak_rate=200.0)
    sim.start()
    # ShopifyAPI builds https://{name}.myshopify.com; point it at 127.0.0.1:port over plain HTTP.
    shopify.Session.setup(protocol="http", myshopify_domain="0.0.1", port=sim.port)
    session = shopify.Session("127", VERSION, sim.ADMIN_TOKEN)
    shopify.ShopifyResource.activate_session(session)
    yield sim
    shopify.ShopifyResource.clear_session()
    shopify.Session.setup(protocol="https", myshopify_domain="myshopify.com", port=None)
    sim.close()


def _all(page: Any) -> list[Any]:
    out = list(page)
    while page.has_next_page():
        page = page.next_page()
        out.extend(page)
    return out


def test_orders_page_through_link_headers_with_status_any(shop: ShopifySimulator) -> None:
    everything = _all(shopify.Order.find(status="any", limit=50, order="updated_at asc"))
    truth = shop.truth("orders")
    assert sorted(o.id for o in everything) == sorted(r["id"] for r in truth)
    assert len({o.id for o in everything}) == len(everything), "a record was served twice"
    stamps = [o.updated_at for o in everything]
    assert stamps == sorted(stamps, key=lambda s: s)  # the shop's offset on every time: +08:00
    assert all(s.endswith("+08:00") for s in stamps)
    first = everything[0]
    assert isinstance(first.total_price, str) and "." in first.total_price  # prices are strings
    assert first.line_items and isinstance(first.line_items[0].price, str)
    # status defaults to open: cancelled or closed orders are left out
    order_id = truth[0]["id"]
    shop.change_order(order_id, "cancel")
    open_ids = {o.id for o in _all(shopify.Order.find(limit=250))}
    assert order_id not in open_ids and len(open_ids) == len(truth) - 1
    assert shopify.Order.count(status="any") == len(truth)


def test_previous_page_and_detail_and_update(shop: ShopifySimulator) -> None:
    page1 = shopify.Customer.find(limit=30)
    page2 = page1.next_page()
    assert page2.has_previous_page()
    back = page2.previous_page(no_cache=True)
    assert [c.id for c in back] == [c.id for c in page1]
    one = shopify.Customer.find(page1[0].id)
    assert one.email == page1[0].email
    product = shopify.Product.find(limit=1)[0]
    assert product.variants and isinstance(product.variants[0].price, str)
    order = shopify.Order.find(status="any", limit=1)[0]
    order.note = "call before delivery"
    assert order.save()
    assert shopify.Order.find(order.id).note == "call before delivery"
    with pytest.raises(ResourceNotFound):
        shopify.Order.find(1)


def test_call_limit_header_reaches_the_official_client(shop: ShopifySimulator) -> None:
    shopify.Shop.current()
    # Shopify sends header names in lower case (shopify_python_api#125 reads them so); ShopifyAPI's
    # own Limits helper looks the name up case-sensitively, so read the response it keeps.
    headers = {k.lower(): v for k, v in shopify.Shop.connection.response.headers.items()}
    used, limit = headers["x-shopify-shop-api-call-limit"].split("/")
    assert limit == "40" and 1 <= int(used) <= 40


def test_page_info_refuses_changed_filters_and_forgery(shop: ShopifySimulator) -> None:
    page = shopify.Order.find(status="any", limit=10)
    url = page.next_page_url
    assert "page_info=" in url and "status" not in url  # the cursor carries the filters
    with pytest.raises(BadRequest):
        shopify.Order.find(from_=url + "&status=open")
    with pytest.raises(BadRequest):
        shopify.Order.find(from_=url[:-3] + "AAA")
    with pytest.raises(BadRequest):
        shopify.Order.find(limit=251)


def test_wrong_token_is_refused(shop: ShopifySimulator) -> None:
    shopify.ShopifyResource.activate_session(shopify.Session("127", VERSION, "shpat_wrong"))
    with pytest.raises(UnauthorizedAccess):
        shopify.Order.find(limit=1)


def test_bucket_overflow_is_429_with_retry_after() -> None:
    with ShopifySimulator(records=5, bucket=3, leak_rate=0.5) as sim:
        headers = {"X-Shopify-Access-Token": sim.ADMIN_TOKEN}
        with httpx.Client(base_url=sim.base_url, headers=headers) as http:
            answers = [http.get(f"/admin/api/{VERSION}/shop.json") for _ in range(5)]
        assert [a.status_code for a in answers[:3]] == [200, 200, 200]
        assert answers[0].headers["X-Shopify-Shop-Api-Call-Limit"] == "1/3"
        over = answers[3]
        assert over.status_code == 429 and float(over.headers["Retry-After"]) > 0
        assert "errors" in over.json()
        assert sim.stats()["bucket_full"] >= 1


def test_sixty_day_window_without_read_all_orders() -> None:
    with ShopifySimulator(records=200, read_all_orders=False, leak_rate=200.0) as sim:
        headers = {"X-Shopify-Access-Token": sim.ADMIN_TOKEN}
        with httpx.Client(base_url=sim.base_url, headers=headers) as http:
            count = http.get(f"/admin/api/{VERSION}/orders/count.json", params={"status": "any"}).json()[
                "count"
            ]
            oldest = min(sim.data.tables["orders"], key=lambda r: r["_created"])
            hidden = http.get(f"/admin/api/{VERSION}/orders/{oldest['id']}.json")
        assert 0 < count < 200 and count == len(sim.truth("orders"))
        assert hidden.status_code == 404
