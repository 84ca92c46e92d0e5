"""tap-fxiaoke on the standard connector suite (tests/helpers/connector_suite.py)."""

from __future__ import annotations

from tests.helpers.connector_suite import ConnectorSuite, SuiteStream

_SMALL = {"contacts": 0, "leads": 0, "opportunities": 0, "orders": 0, "payments": 0}


class TestFxiaoke(ConnectorSuite):
    connector = "fxiaoke"
    streams = {
        "accounts": SuiteStream(key="_id", object="accounts", truth="AccountObj"),
        "contacts": SuiteStream(key="_id", object="contacts", truth="ContactObj"),
        "opportunities": SuiteStream(key="_id", object="opportunities", truth="NewOpportunityObj"),
        "payments": SuiteStream(key="_id", object="payments", truth="PaymentObj"),
    }
    # small pages so paging is exercised; the documented limits scaled so a test never waits 20 s
    config = {"page_size": 7, "objects": ["accounts", "contacts", "opportunities", "payments"]}
    kill_simulator_options = _SMALL
    skip_faults = {
        "daily_quota": "a spent quota cannot be retried away: tests/fxiaoke/test_client.py checks the run stops with the reason and resumes exactly",
        "quota_not_purchased": "likewise (30003): tests/fxiaoke/test_client.py",
    }
