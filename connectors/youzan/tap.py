"""``tap-youzan``: a Youzan (有赞) shop's trades with their lines, buyers and items."""

from __future__ import annotations

from functools import cached_property

from singer_sdk import Stream, Tap
from singer_sdk import typing as th

from connectors.kit.settings import http_properties
from connectors.youzan.client import YouzanClient, client_from_config
from connectors.youzan.streams import ItemsStream, TradesStream, UsersStream


class TapYouzan(Tap):
    """Singer tap for the Youzan Cloud open API (self-use app)."""

    name = "tap-youzan"
    package_name = "tongbu"
    config_jsonschema = th.PropertiesList(
        th.Property(
            "base_url",
            th.StringType,
            default="https://open.youzanyun.com",
            description="API root (or the simulator URL)",
        ),
        th.Property("client_id", th.StringType, required=True),
        th.Property("client_secret", th.StringType, required=True, secret=True),
        th.Property("grant_id", th.StringType, required=True, description="The shop's kdt_id (授权店铺 id)"),
        th.Property(
            "page_size", th.IntegerType, default=100, description="Records per API call (max 100; items 300)"
        ),
        th.Property(
            "window_days",
            th.NumberType,
            description="Largest change-time window per read (default: split on demand)",
        ),
        th.Property(
            "lookback_seconds",
            th.NumberType,
            default=0,
            description="Re-read this many seconds before the bookmark to catch late commits",
        ),
        th.Property("start_date", th.DateTimeType, description="Ignore records changed before this time"),
        th.Property(
            "clock_skew_seconds",
            th.IntegerType,
            default=0,
            description="Read this far past our clock (a shop clock ahead of ours)",
        ),
        *http_properties(request_timeout=30),
    ).to_dict()

    def discover_streams(self) -> list[Stream]:
        """The streams (no network access needed)."""
        return [TradesStream(self), UsersStream(self), ItemsStream(self)]

    @cached_property
    def client(self) -> YouzanClient:
        """The shared client, created on first use."""
        return client_from_config(self.config, connector=self.name)

    @property
    def shop(self) -> str:
        """The shop's id, recorded on each trade as its channel."""
        return str(self.config["grant_id"])


if __name__ == "__main__":
    TapYouzan.cli()
