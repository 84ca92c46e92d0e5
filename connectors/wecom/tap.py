"""``tap-wecom``: WeCom (企业微信) external contacts, corp tags and customer group chats as Singer streams.

WeCom has no "modified since" filter, so every stream is a full scan (``FULL_TABLE``). Incremental
sync is the job of the callback path (``tongbu serve``); a periodic rescan through this tap repairs
whatever callbacks missed, and the hub's content hash makes unchanged contacts cost nothing to write.

Run it as a plain Singer program::

    tap-wecom --config wecom.json                  # or: python -m connectors.wecom.tap --config ...

with ``{"corp_id": "...", "corp_secret": "...", "base_url": "http://127.0.0.1:PORT"}`` (``base_url``
defaults to ``https://qyapi.weixin.qq.com``; use the 客户联系 secret, the only one allowed to read
external contacts).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from singer_sdk import Stream, Tap
from singer_sdk import typing as th

from connectors.kit.settings import http_properties
from connectors.wecom.client import WeComClient, client_from_config
from connectors.wecom.scan import ScanReport, scan_corp_tags, scan_external_contacts, scan_group_chats

_TAG = th.ObjectType(
    th.Property("tag_id", th.StringType),
    th.Property("tag_name", th.StringType),
    th.Property("group_name", th.StringType),
)
_FOLLOW_USER = th.ObjectType(
    th.Property("userid", th.StringType, description="员工 userid"),
    th.Property("remark", th.StringType, description="员工对客户的备注"),
    th.Property("description", th.StringType, description="描述"),
    th.Property("createtime", th.IntegerType, description="添加时间 (epoch seconds)"),
    th.Property("tags", th.ArrayType(_TAG), description="企业标签"),
    th.Property("remark_corp_name", th.StringType),
    th.Property("remark_mobiles", th.ArrayType(th.StringType)),
    th.Property("add_way", th.IntegerType),
    th.Property("state", th.StringType),
    th.Property("oper_userid", th.StringType),
)


class _WeComStream(Stream):
    """Base: a full-table stream reading through the tap's shared :class:`WeComClient`."""

    #: Set once a scan finished reading every page (see :class:`connectors.wecom.scan.ScanReport`).
    scan_report: ScanReport | None = None

    @property
    def client(self) -> WeComClient:
        return self._tap.client  # type: ignore[attr-defined]


class ExternalContactsStream(_WeComStream):
    """``external_contacts``: 外部联系人, one record per contact with every follow user (跟进人)."""

    name = "external_contacts"
    primary_keys = ("external_userid",)
    replication_key = None
    schema = th.PropertiesList(
        th.Property("external_userid", th.StringType, required=True),
        th.Property("name", th.StringType),
        th.Property("type", th.IntegerType, description="1 微信用户, 2 企业微信用户"),
        th.Property("gender", th.IntegerType, description="0 未知, 1 男, 2 女"),
        th.Property("avatar", th.StringType),
        th.Property("unionid", th.StringType),
        th.Property("position", th.StringType),
        th.Property("corp_name", th.StringType),
        th.Property("corp_full_name", th.StringType),
        th.Property("external_profile", th.ObjectType(additional_properties=True)),
        th.Property("follow_user", th.ArrayType(_FOLLOW_USER)),
        th.Property("owner_userid", th.StringType, description="follow user who added the contact first"),
        th.Property("follow_userids", th.ArrayType(th.StringType)),
        th.Property("remark", th.StringType, description="the owner's remark"),
        th.Property("description", th.StringType, description="the owner's description"),
        th.Property("first_added_at", th.IntegerType),
        th.Property("tag_names", th.ArrayType(th.StringType)),
        th.Property("tag_ids", th.ArrayType(th.StringType)),
        th.Property("remark_mobiles", th.ArrayType(th.StringType)),
        th.Property("mobile", th.StringType),
        th.Property("remark_corp_name", th.StringType),
        th.Property("company_name", th.StringType),
    ).to_dict()

    def get_records(self, context: dict | None) -> Iterable[dict[str, Any]]:
        """Scan every follow user's relations (``batch/get_by_user``) and emit each contact once."""
        report = ScanReport(self.name)
        self.scan_report = report
        yield from scan_external_contacts(
            self.client,
            report,
            batch_limit=int(self.config.get("batch_limit", 100)),
            follow_users=self.config.get("follow_users") or None,
        )


class CorpTagsStream(_WeComStream):
    """``corp_tags``: 企业客户标签, one record per tag with its group."""

    name = "corp_tags"
    primary_keys = ("tag_id",)
    replication_key = None
    schema = th.PropertiesList(
        th.Property("tag_id", th.StringType, required=True),
        th.Property("tag_name", th.StringType),
        th.Property("order", th.IntegerType),
        th.Property("create_time", th.IntegerType),
        th.Property("deleted", th.BooleanType),
        th.Property("group_id", th.StringType),
        th.Property("group_name", th.StringType),
        th.Property("group_order", th.IntegerType),
        th.Property("group_create_time", th.IntegerType),
    ).to_dict()

    def get_records(self, context: dict | None) -> Iterable[dict[str, Any]]:
        """All corp tags (``get_corp_tag_list``)."""
        report = ScanReport(self.name)
        self.scan_report = report
        yield from scan_corp_tags(self.client, report)


class GroupChatsStream(_WeComStream):
    """``group_chats``: 客户群 with members (``groupchat/list`` + ``groupchat/get``)."""

    name = "group_chats"
    primary_keys = ("chat_id",)
    replication_key = None
    schema = th.PropertiesList(
        th.Property("chat_id", th.StringType, required=True),
        th.Property("name", th.StringType),
        th.Property("owner", th.StringType),
        th.Property("create_time", th.IntegerType),
        th.Property("notice", th.StringType),
        th.Property("status", th.IntegerType),
        th.Property("member_count", th.IntegerType),
        th.Property("external_member_count", th.IntegerType),
        th.Property(
            "member_list",
            th.ArrayType(
                th.ObjectType(
                    th.Property("userid", th.StringType),
                    th.Property("type", th.IntegerType, description="1 企业成员, 2 外部联系人"),
                    th.Property("join_time", th.IntegerType),
                    th.Property("join_scene", th.IntegerType),
                    th.Property("invitor", th.StringType),
                    th.Property("group_nickname", th.StringType),
                    th.Property("name", th.StringType),
                )
            ),
        ),
        th.Property("admin_list", th.ArrayType(th.StringType)),
    ).to_dict()

    def get_records(self, context: dict | None) -> Iterable[dict[str, Any]]:
        """All customer group chats with their members."""
        report = ScanReport(self.name)
        self.scan_report = report
        yield from scan_group_chats(self.client, report, workers=int(self.config.get("max_concurrency", 4)))


class TapWeCom(Tap):
    """Singer tap for WeCom 客户联系 (external contacts, corp tags, customer group chats)."""

    name = "tap-wecom"
    config_jsonschema = th.PropertiesList(
        th.Property("corp_id", th.StringType, required=True, description="企业ID (CorpID)"),
        th.Property(
            "corp_secret",
            th.StringType,
            required=True,
            secret=True,
            description="客户联系 Secret (keep it in the vault: vault:wecom.corp_secret)",
        ),
        th.Property(
            "base_url",
            th.StringType,
            default="https://qyapi.weixin.qq.com",
            description="API host; point it at a simulator for tests",
        ),
        th.Property(
            "batch_limit", th.IntegerType, default=100, description="batch/get_by_user page size (1..100)"
        ),
        th.Property("max_concurrency", th.IntegerType, default=4, description="requests in flight at most"),
        *http_properties(request_timeout=15, retried="45009/45033/-1, 429, 5xx and timeouts"),
        th.Property(
            "follow_users",
            th.ArrayType(th.StringType),
            description="only these employees (default: every follow user)",
        ),
        # Used by `tongbu serve` and the Dagster rescan; accepted here so one connection config serves all.
        th.Property(
            "callback_token",
            th.StringType,
            secret=True,
            description="回调 Token (vault:wecom.callback_token)",
        ),
        th.Property(
            "encoding_aes_key",
            th.StringType,
            secret=True,
            description="回调 EncodingAESKey (vault:wecom.encoding_aes_key)",
        ),
        th.Property("timestamp_window_s", th.NumberType, description="callback replay window (default 300)"),
        th.Property(
            "rescan_schedule", th.StringType, description="cron of the full rescan (default every 6 h)"
        ),
        th.Property(
            "token_cache",
            th.StringType,
            allowed_values=["memory", "vault"],
            description="vault: share the access_token with tongbu serve and other runs",
        ),
    ).to_dict()

    _client: WeComClient | None = None

    @property
    def client(self) -> WeComClient:
        """One client per tap run (its token cache is shared by all streams)."""
        if self._client is None:
            self._client = client_from_config(dict(self.config))
        return self._client

    def discover_streams(self) -> list[Stream]:
        """The three WeCom streams."""
        return [ExternalContactsStream(self), CorpTagsStream(self), GroupChatsStream(self)]


if __name__ == "__main__":
    TapWeCom.cli()
