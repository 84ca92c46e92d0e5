"""``tap-tender``: public procurement notices (标讯) from a procurement site's HTML or a vendor's JSON feed."""

from __future__ import annotations

from singer_sdk import typing as th

from connectors.kit.settings import HttpSettings, http_properties
from connectors.kit.tap import ClientTap, read_properties
from connectors.tender.client import TenderClient
from connectors.tender.streams import SEARCH_KEYS, NoticesStream


class TapTender(ClientTap[TenderClient]):
    """Singer tap for procurement notices: one ``notices`` stream, two sources."""

    name = "tap-tender"
    stream_types = (NoticesStream,)
    config_jsonschema = th.PropertiesList(
        th.Property("base_url", th.StringType, required=True, description="Site root (or the simulator URL)"),
        th.Property(
            "source",
            th.StringType,
            default="html",
            allowed_values=["html", "vendor"],
            description="html: the site's search and detail pages; vendor: a bought JSON feed",
        ),
        th.Property(
            "api_key", th.StringType, secret=True, description="The vendor feed's key (source: vendor)"
        ),
        th.Property(
            "search",
            th.ObjectType(*(th.Property(k, th.StringType) for k in SEARCH_KEYS), additional_properties=False),
            description="Search parameters to pin (kw, bidType, pinMu, zoneId, …); default: every notice",
        ),
        *read_properties(
            page_size=50,
            page_size_description="Notices per batch (detail pages read)",
            lookback_seconds=3600,
            lookback_description="Overlap: re-read this many seconds before the bookmark (late-indexed notices)",
            start_date="Ignore notices published before this time",
        ),
        th.Property(
            "antibot_backoff",
            th.NumberType,
            default=60,
            description="Seconds to wait when the site serves its anti-bot page",
        ),
        th.Property(
            "request_interval",
            th.NumberType,
            default=1.0,
            description="At least this many seconds between requests (the sites count requests a minute)",
        ),
        *http_properties(request_timeout=30),
    ).to_dict()

    def make_client(self) -> TenderClient:
        """A client for the configured source."""
        cfg = self.config
        if cfg.get("source") == "vendor" and not cfg.get("api_key"):
            raise ValueError("tap-tender: source 'vendor' needs api_key")
        return TenderClient(
            cfg["base_url"],
            api_key=cfg.get("api_key"),
            antibot_backoff=float(cfg.get("antibot_backoff", 60)),
            request_interval=float(cfg.get("request_interval", 1.0)),
            settings=HttpSettings.from_config(cfg, connector=self.name, request_timeout=30),
        )


if __name__ == "__main__":
    TapTender.cli()
