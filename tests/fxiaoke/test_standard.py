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
    # Small pages so paging is exercised. The rate window (100 calls per 20 s per endpoint) is scaled
    # to 0.5 s on both sides: with pages of 7 the SIGKILL test's 20,000 accounts are 2,858 calls, ten
    # minutes at the real pace. Pacing itself is tested at its documented shape in test_client.py.
    config = {
        "page_size": 7,
        "objects": ["accounts", "contacts", "opportunities", "payments"],
        "rate_window": 0.5,
    }
    simulator_options = {"rate_window": 0.5}
    kill_simulator_options = _SMALL
    skip_faults = {
        "daily_quota": "a spent quota cannot be retried away: tests/fxiaoke/test_client.py checks the run stops with the reason and resumes exactly",
        "quota_not_purchased": "likewise (30003): tests/fxiaoke/test_client.py",
    }
