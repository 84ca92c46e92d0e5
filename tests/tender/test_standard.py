"""tap-tender on the standard connector suite (tests/helpers/connector_suite.py).

The ``notices`` stream lands in the hub as activities (``mappings/library/tender_to_crm.yaml``); the
simulator's ``modify`` publishes new notices (a procurement site never edits one in place: it
publishes a correction), so the incremental test reads exactly those.
"""

from __future__ import annotations

from tests.helpers.connector_suite import ConnectorSuite, SuiteStream


class TestTender(ConnectorSuite):
    connector = "tender"
    streams = {"notices": SuiteStream(key="id", object="activities")}
    records = 60  # three search pages
    # no politeness pause and short anti-bot backoffs against the local simulator; no overlap, so
    # counts are exact
    config = {"page_size": 7, "request_interval": 0, "antibot_backoff": 0.05, "lookback_seconds": 0}
    fault_values = {
        "antibot_per_min": "antibot_per_min=30,antibot_window=0.5",
        "antibot_window": "antibot_per_min=30,antibot_window=0.5",
    }
    kill_records = 3000
