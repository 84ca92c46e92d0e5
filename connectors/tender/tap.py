"""``tap-tender``: Tender feeds (标讯) customers, contacts and orders (with lines)."""

from __future__ import annotations

from functools import cached_property

from singer_sdk import Stream, Tap
from singer_sdk import typing as th

from connectors.tender.client import TenderClient
from connectors.tender.streams import ContactsStream, CustomersStream, OrdersStream
from connectors.kit.settings import HttpSettings, http_properties


class TapTender(Tap):
    """Singer tap for Tender feeds (标讯)."""

    name = "tap-tender"
    package_name = "tongbu"
    config_jsonschema = th.PropertiesList(
        th.Property("base_url", th.StringType, required=True, description="API root (or the simulator URL)"),
        th.Property("client_id", th.StringType, required=True),
        th.Property("client_secret", th.StringType, required=True, secret=True),
        th.Property("page_size", th.IntegerType, default=500, description="Records per API call (max 1000)"),
        th.Property(
            "lookback_seconds",
            th.NumberType,
            default=0,
            description="Re-read this many seconds before the bookmark to catch late commits",
        ),
        th.Property("start_date", th.DateTimeType, description="Ignore records changed before this time"),
        *http_properties(request_timeout=30),
    ).to_dict()

    def discover_streams(self) -> list[Stream]:
        """The streams (no network access needed)."""
        return [CustomersStream(self), ContactsStream(self), OrdersStream(self)]

    @cached_property
    def client(self) -> TenderClient:
        """The shared client, created on first use."""
        cfg = self.config
        return TenderClient(
            cfg["base_url"],
            client_id=cfg["client_id"],
            client_secret=cfg["client_secret"],
            settings=HttpSettings.from_config(cfg, connector=self.name, request_timeout=30),
        )


if __name__ == "__main__":
    TapTender.cli()
