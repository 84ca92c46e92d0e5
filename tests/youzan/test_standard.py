"""tap-youzan on the standard connector suite (tests/helpers/connector_suite.py)."""

from __future__ import annotations

from typing import Any, ClassVar

from tests.helpers.connector_suite import ConnectorSuite, SuiteStream


class TestYouzan(ConnectorSuite):
    connector = "youzan"
    streams: ClassVar[dict[str, SuiteStream]] = {
        "users": SuiteStream(key="yz_open_id", object="contacts"),
        "items": SuiteStream(key="item_id", object="products"),
        "trades": SuiteStream(key="tid", object="sales_orders"),
    }
    # Small pages, so paging inside a window is exercised.
    config: ClassVar[dict[str, Any]] = {"page_size": 7}
    fault_values: ClassVar[dict[str, str]] = {"session_expiry": "session_expiry=5"}
    skip_faults: ClassVar[dict[str, str]] = {
        "push_duplicate": "push delivery: tests/youzan/test_events.py",
        "push_fail": "push delivery: tests/youzan/test_events.py",
    }
