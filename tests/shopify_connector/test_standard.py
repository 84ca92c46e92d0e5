"""tap-shopify on the standard connector suite (tests/helpers/connector_suite.py)."""

from __future__ import annotations

from typing import Any, ClassVar

from tests.helpers.connector_suite import ConnectorSuite, SuiteStream


class TestShopify(ConnectorSuite):
    connector = "shopify"
    streams: ClassVar[dict[str, SuiteStream]] = {
        "customers": SuiteStream(key="id", object="contacts"),
        "products": SuiteStream(key="id", object="products"),
        "orders": SuiteStream(key="id", object="sales_orders"),
    }
    # Small pages, so page_info paging is exercised; a fast bucket, so the suite does not crawl.
    config: ClassVar[dict[str, Any]] = {"page_size": 7, "calls_per_second": 200}
    simulator_options: ClassVar[dict[str, Any]] = {"bucket": 40, "leak_rate": 200.0}
    kill_simulator_options: ClassVar[dict[str, Any]] = {"bucket": 40, "leak_rate": 1000.0}
    fault_values: ClassVar[dict[str, str]] = {"session_expiry": "session_expiry=5"}
    skip_faults: ClassVar[dict[str, str]] = {
        "webhook_duplicate": "webhook delivery: tests/shopify_connector/test_events.py",
        "webhook_fail": "webhook delivery: tests/shopify_connector/test_events.py",
    }
