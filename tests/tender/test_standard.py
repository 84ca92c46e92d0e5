"""tap-tender on the standard connector suite (tests/helpers/connector_suite.py)."""

from __future__ import annotations

from tests.helpers.connector_suite import ConnectorSuite, SuiteStream


class TestTender(ConnectorSuite):
    connector = "tender"
    streams = {
        "customers": SuiteStream(key="id", object="accounts"),
        "contacts": SuiteStream(key="id", object="contacts", incremental=False),
        "orders": SuiteStream(key="id", object="sales_orders"),
    }
    config = {"page_size": 7}
