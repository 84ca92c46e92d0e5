"""``tap-youzan``: a Youzan (有赞) shop's trades with their lines, buyers and items."""

from __future__ import annotations

from singer_sdk import typing as th

from connectors.kit.settings import http_properties
from connectors.kit.tap import ClientTap, read_properties
from connectors.youzan.client import YouzanClient, client_from_config
from connectors.youzan.streams import ItemsStream, TradesStream, UsersStream


class TapYouzan(ClientTap[YouzanClient]):
    """Singer tap for the Youzan Cloud open API (self-use app)."""

    name = "tap-youzan"
    stream_types = (TradesStream, UsersStream, ItemsStream)
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
        *read_properties(page_size=100, page_size_description="Records per API call (max 100; items 300)"),
        th.Property(
            "window_days",
            th.NumberType,
            description="Largest change-time window per read (default: split on demand)",
        ),
        th.Property(
            "clock_skew_seconds",
            th.IntegerType,
            default=0,
            description="Read this far past our clock (a shop clock ahead of ours)",
        ),
        *http_properties(request_timeout=30),
    ).to_dict()

    def make_client(self) -> YouzanClient:
        """A client from the config."""
        return client_from_config(self.config, connector=self.name)

    @property
    def shop(self) -> str:
        """The shop's id, recorded on each trade as its channel."""
        return str(self.config["grant_id"])


if __name__ == "__main__":
    TapYouzan.cli()
