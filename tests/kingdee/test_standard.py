"""tap-kingdee on the standard connector suite (tests/helpers/connector_suite.py)."""

from __future__ import annotations

from tests.helpers.connector_suite import ConnectorSuite, SuiteStream


class TestKingdee(ConnectorSuite):
    connector = "kingdee"
    streams = {
        "customers": SuiteStream(key="FCUSTID", truth="BD_Customer", object="accounts"),
        "sales_orders": SuiteStream(key="FID", truth="SAL_SaleOrder", object="sales_orders"),
        "receivables": SuiteStream(key="FID", truth="AR_receivable", object="receivables"),
    }
    config = {"page_size": 9, "lookback_seconds": 0}
    # sessions dropped after 0.01 s idle would be every call; 0.2 s still drops some between pages
    fault_values = {"session_idle": "session_idle=0.2,slow=0.05"}
    kill_records = 30_000
    kill_simulator_options = {"orders": 0, "receivables": 0}
    kill_batch_size = 1000
