"""``target-fxiaoke``: CRM accounts, contacts, leads, opportunities, sales orders and payments into
Fxiaoke (纷享销客), idempotently.

A plain Singer target built on :mod:`connectors.kit.spoke_target`: streams carry hub records (hub
field names, as tap-crm emits them, with the hub ``id``), written through
:class:`~connectors.fxiaoke.spoke.FxiaokeSpoke`. So a record's create is looked up before it is sent
(the intent key in ``tongbu_key__c``, then the credit code / ERP number), a known record sends only
the fields that changed since the last write, the owner changes only through ``changeOwner``, and
values go out in Fxiaoke's formats (numbers as strings, ms epochs, option values, employee lists).
The ledger is a SQLite file (``state_db``, default ``$TONGBU_HOME/target-fxiaoke.sqlite``).
"""

from __future__ import annotations

from typing import Any

from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.sinks import BatchSink

from connectors.fxiaoke.client import client_from_config
from connectors.fxiaoke.spoke import BINDINGS, FxiaokeSpoke
from connectors.fxiaoke.tap import fxiaoke_properties
from connectors.kit.settings import http_properties
from connectors.kit.singer_input import SingerInputReader
from connectors.kit.spoke_target import SpokeSink
from connectors.kit.spoke_writer import ledger_property, open_spoke_writer, writable_sink

#: hub fields target-fxiaoke writes, per stream (the spoke's writable fields, lines for orders)
WRITABLE: dict[str, tuple[str, ...]] = {
    name: tuple(f.hub for f in b.fields if not f.read_only) + (("lines",) if b.lines is not None else ())
    for name, b in BINDINGS.items()
}
IDENTITY = {name: tuple(b.identity) for name, b in BINDINGS.items()}


class FxiaokeSink(SpokeSink):
    """Writes a stream's records in batches through the spoke."""


class TargetFxiaoke(Target):
    """Singer target writing CRM records to Fxiaoke (see the module docstring)."""

    name = "target-fxiaoke"
    default_sink_class = FxiaokeSink
    message_reader_class = SingerInputReader  # bad input: one line each, counted, no traceback
    config_jsonschema = th.PropertiesList(
        *fxiaoke_properties(),
        ledger_property("target-fxiaoke"),
        th.Property(
            "trigger_approval",
            th.BooleanType,
            default=False,
            description="start the tenant's approval flows on write (locks the record until approved)",
        ),
        th.Property(
            "trigger_workflow",
            th.BooleanType,
            default=True,
            description="run the tenant's work flows on write",
        ),
        *http_properties(
            request_timeout=30,
            retried="throttling (10009), token expiry (20016); writes are not re-sent after a 5xx",
        ),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = dict(self.config)
        self.client = client_from_config(cfg)
        self.spoke = FxiaokeSpoke(
            self.client,
            trigger_approval=bool(cfg.get("trigger_approval", False)),
            trigger_workflow=bool(cfg.get("trigger_workflow", True)),
        )
        self.ledger, self.writer = open_spoke_writer(
            self, self.spoke, cfg, writable=WRITABLE, identity=IDENTITY, prefix="tf"
        )

    def get_sink_class(self, stream_name: str) -> type[BatchSink]:
        """The hub objects the spoke binds are writable."""
        return writable_sink(self.name, WRITABLE, stream_name, FxiaokeSink)


if __name__ == "__main__":
    TargetFxiaoke.cli()
