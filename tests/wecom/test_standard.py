"""tap-wecom on the standard connector suite (tests/helpers/connector_suite.py).

WeCom's real-time path (callbacks into ``tongbu serve``, the rescan) has its own tests; this is the
tap: its three list streams read in full every run, against the WeCom simulator.
"""

from __future__ import annotations

import itertools
from typing import Any

from tests.helpers.connector_suite import ConnectorSuite, SuiteStream

CALLBACKS = "callbacks go to `tongbu serve`, never to the tap (tests/test_wecom_events.py covers them)"


class TestWeCom(ConnectorSuite):
    connector = "wecom"
    streams = {
        "external_contacts": SuiteStream(
            key="external_userid",
            truth="contacts",
            truth_key="external_contact.external_userid",
            object="contacts",
            incremental=False,
        ),
        "corp_tags": SuiteStream(key="tag_id", incremental=False),
        "group_chats": SuiteStream(key="chat_id", incremental=False),
    }
    records = 250  # three pages of contacts, so per-call switches have calls to act on
    fault_values = {
        # a token that lives 1 s (WeCom's expires_in is whole seconds) expires every few slow calls
        "token_ttl": "token_ttl=1,slow=0.2",
        "session_expiry": "session_expiry=2",
    }
    skip_faults = {
        "drop_callbacks": CALLBACKS,
        "callback_timeout": CALLBACKS,
        "callback_attempts": CALLBACKS,
        "callback_retry_delay": CALLBACKS,
        "concurrency": "tap-wecom sends one list request at a time, so a limit of N in flight is never hit",
        # a per-minute quota makes the sync wait out the minute; tests/test_wecom_simulator.py covers it
        "freq_per_min": "45009 lasts until the minute is over: a sync under it waits up to 60 s",
    }
    kill_records = 6000

    def truth_rows(self, sim: Any, stream: str) -> list[dict[str, Any]]:
        rows = super().truth_rows(sim, stream)
        if stream == "corp_tags":  # the truth holds tag groups; the stream has one record per tag
            return [{"tag_id": tag["id"]} for group in rows for tag in group["tag"]]
        return rows

    def modify(self, sim: Any, stream: str, count: int) -> None:
        for uid in itertools.islice(sim.external_userids(), count):
            sim.update_profile(uid, position="采购总监")
