"""``target-kingdee``: CRM accounts and sales orders into Kingdee K/3 Cloud, idempotently.

A plain Singer target (it reads SCHEMA/RECORD/STATE on stdin): streams ``accounts`` and
``sales_orders`` carry hub records (hub field names, as tap-crm emits them), each with its hub
``id``. For every record the target writes through :class:`~connectors.kingdee.spoke.KingdeeSpoke`:

* **a new record**: the intent (its key derived from stream and hub id) is stored *before* the
  write; the record is looked up by that key (``F_TB_ExternalId``) and its identity keys first, then
  created with ``BatchSave`` (one call per batch of new records, submitted and audited in it by
  policy). After a crash or a lost answer the next run finds it instead of creating it again;
* **a known record**: only the fields that differ from what was last written are sent (one Save
  with exactly those ``NeedUpDateFields``); an unchanged record makes no call at all;
* **results, durably**: every record's outcome is a row of ``write_results`` (run, stream, hub id,
  Kingdee id, hash, success, error class and message) in the target's SQLite file
  (``state_db``), beside ``written`` (what Kingdee holds per record: the base of the next diff).
  Failed records are retried on the next run (transient errors) or wait for a corrected record
  (refusals, with Kingdee's ``FieldName: Message``); nothing is lost and the run goes on.
"""

from __future__ import annotations

from typing import Any

from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.sinks import BatchSink

from connectors.kingdee.client import KingdeeClient
from connectors.kingdee.spoke import BINDINGS, KingdeeSpoke, Lifecycle
from connectors.kit.logs import get_logger
from connectors.kit.settings import http_properties
from connectors.kit.singer_input import SingerInputReader
from connectors.kit.spoke_target import SpokeSink
from connectors.kit.spoke_writer import ledger_property, open_spoke_writer, writable_sink

log = get_logger("tongbu.kingdee.target")

#: hub fields target-kingdee writes, per stream (the reverse mapping's sources, and order lines)
WRITABLE = {
    "accounts": (
        "number",
        "name",
        "short_name",
        "credit_code",
        "phone",
        "address",
        "industry",
        "grade",
        "currency",
    ),
    "sales_orders": ("account_ref", "order_date", "currency", "lines"),
}

#: the identity fields a create is looked up by, per stream
IDENTITY = {name: tuple(BINDINGS[name].identity) for name in WRITABLE}


class KingdeeSink(SpokeSink):
    """Writes a stream's records in batches (one BatchSave for the new ones of a batch)."""


class TargetKingdee(Target):
    """Singer target writing CRM accounts and sales orders to Kingdee K/3 Cloud (see the module doc)."""

    name = "target-kingdee"
    default_sink_class = KingdeeSink
    message_reader_class = SingerInputReader  # bad input: one line each, counted, no traceback
    config_jsonschema = th.PropertiesList(
        th.Property(
            "base_url", th.StringType, required=True, description="K/3 Cloud site (or the simulator URL)"
        ),
        th.Property("acct_id", th.StringType, required=True, description="Account (数据中心) id"),
        th.Property("username", th.StringType, required=True),
        th.Property("password", th.StringType, secret=True, description="Password for ValidateUser login"),
        th.Property("app_id", th.StringType, description="App id for LoginByAppSecret"),
        th.Property("app_secret", th.StringType, secret=True, description="App secret for LoginByAppSecret"),
        th.Property("lcid", th.IntegerType, default=2052),
        ledger_property("target-kingdee"),
        th.Property("audit", th.BooleanType, default=True, description="submit and audit what is saved"),
        th.Property(
            "modify_audited",
            th.StringType,
            default="unaudit",
            allowed_values=["unaudit", "refuse"],
            description="a change of an audited document: un-audit it first, or refuse",
        ),
        *http_properties(
            request_timeout=60, retried="MsgCode 13/14, 429; writes are not re-sent after a 5xx"
        ),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = dict(self.config)
        self.client = KingdeeClient.from_config(cfg, connector="target-kingdee")
        policy = Lifecycle(
            audit=bool(cfg.get("audit", True)), modify_audited=cfg.get("modify_audited") or "unaudit"
        )
        self.spoke = KingdeeSpoke(self.client, lifecycle=dict.fromkeys(BINDINGS, policy))
        self.ledger, self.writer = open_spoke_writer(
            self, self.spoke, cfg, writable=WRITABLE, identity=IDENTITY, prefix="tk"
        )

    def get_sink_class(self, stream_name: str) -> type[BatchSink]:
        """``accounts`` and ``sales_orders`` are writable."""
        return writable_sink(self.name, WRITABLE, stream_name, KingdeeSink)


if __name__ == "__main__":
    TargetKingdee.cli()
