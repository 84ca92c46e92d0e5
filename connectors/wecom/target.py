"""``target-wecom``: write-back to WeCom — corp tags (企业标签) on external contacts, idempotently.

The CRM owns some facts a sales rep should see in WeCom, the customer grade first of all. Each
``contact_tags`` record states the *desired* tags of one contact within one tag group::

    {"external_userid": "wm…", "tag_group": "客户等级", "tags": ["A类客户"]}      # or "tag": "A类客户"

For every follow user's relation with that contact (or only ``userid`` when given), the target reads
the current tags (``externalcontact/get``), and calls ``mark_tag`` only for the difference: tags of
the group that are missing are added, other tags of the same group are removed, tags of other groups
are never touched. Re-sending the same record makes no API write at all.

Loops: WeCom sends no callback for changes made through the API, so a tag written here never comes
back as an event; the next rescan reads it, the hub's tags then match, and the CRM→WeCom comparison
finds nothing to do.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.sinks import RecordSink
from sqlalchemy import Engine, select

from connectors.kit.settings import http_properties
from connectors.kit.singer_input import BadMessage, SingerInputReader, attach
from connectors.wecom.client import WeComClient, WeComError, WeComNoRelation, client_from_config
from connectors.wecom.records import tag_rows

log = logging.getLogger("tongbu.wecom.target")


class TagWriteError(ValueError):
    """A record asks for something that cannot be written (unknown tag, bad record)."""


@dataclass
class TagWriteStats:
    """What the write-back did."""

    records: int = 0
    relations_checked: int = 0
    mark_tag_calls: int = 0
    unchanged: int = 0
    tags_created: int = 0
    contacts_gone: int = 0
    failed: int = 0


class ContactTagWriter:
    """Brings contacts' tags within a group to a desired set with the fewest ``mark_tag`` calls."""

    def __init__(self, client: WeComClient, *, create_missing_tags: bool = False) -> None:
        self.client = client
        self.create_missing_tags = create_missing_tags
        self.stats = TagWriteStats()
        self._tags: dict[tuple[str, str], str] = {}
        self._groups: dict[str, str] = {}
        self._group_of: dict[str, str] = {}
        self._load_tags()

    def _load_tags(self) -> None:
        rows = tag_rows(self.client.get_corp_tag_list())
        self._tags = {(r["group_name"], r["tag_name"]): r["tag_id"] for r in rows}
        self._groups = {r["group_name"]: r["group_id"] for r in rows}
        self._group_of = {r["tag_id"]: r["group_name"] for r in rows}

    def tag_id(self, group: str, name: str) -> str:
        """The id of tag ``group/name``; created when allowed, else :class:`TagWriteError`."""
        found = self._tags.get((group, name))
        if found is None:
            self._load_tags()  # created in the admin console since we last looked
            found = self._tags.get((group, name))
        if found is None:
            if not self.create_missing_tags:
                raise TagWriteError(
                    f"corp tag {group}/{name} does not exist (create it in WeCom, or set create_missing_tags)"
                )
            created = self.client.add_corp_tag(group, [name], group_id=self._groups.get(group))
            self.stats.tags_created += 1
            self._load_tags()
            found = self._tags.get((group, name)) or next(
                (t["id"] for t in created.get("tag") or [] if t.get("name") == name), None
            )
            if found is None:
                raise TagWriteError(f"corp tag {group}/{name} could not be created")
        return found

    def apply(self, record: dict[str, Any]) -> int:
        """Make one contact's tags in ``tag_group`` equal the record's; returns mark_tag calls made."""
        self.stats.records += 1
        ext = record.get("external_userid")
        group = record.get("tag_group")
        if not ext or not group:
            raise TagWriteError("a contact_tags record needs external_userid and tag_group")
        names = record.get("tags")
        if names is None:
            names = [record["tag"]] if record.get("tag") else []
        desired = {self.tag_id(group, n) for n in names}
        try:
            detail = self.client.get_external_contact(ext)
        except WeComNoRelation:
            self.stats.contacts_gone += 1
            log.info("contact %s no longer exists in WeCom; nothing to tag", ext)
            return 0
        calls = 0
        for follow in detail.get("follow_user") or []:
            userid = follow.get("userid")
            if record.get("userid") and userid != record["userid"]:
                continue
            self.stats.relations_checked += 1
            current = {
                t["tag_id"]
                for t in follow.get("tags") or []
                if t.get("type", 1) == 1 and t.get("tag_id") and self._in_group(t, group)
            }
            add, remove = sorted(desired - current), sorted(current - desired)
            if not add and not remove:
                self.stats.unchanged += 1
                continue
            self.client.mark_tag(userid, ext, add=add, remove=remove)
            calls += 1
        self.stats.mark_tag_calls += calls
        return calls

    def _in_group(self, tag: dict[str, Any], group: str) -> bool:
        name = tag.get("group_name")
        return (name or self._group_of.get(tag["tag_id"])) == group

    def apply_all(self, records: Iterable[dict[str, Any]]) -> TagWriteStats:
        """Apply many records; one failing record is logged and counted, the rest go on."""
        for rec in records:
            try:
                self.apply(rec)
            except (TagWriteError, WeComError) as exc:
                self.stats.failed += 1
                log.warning("contact_tags %s: %s", rec.get("external_userid"), exc)
        return self.stats


def crm_contact_grades(
    engine: Engine, *, tenant: str = "default", source_system: str = "wecom"
) -> Iterator[dict[str, Any]]:
    """Hub WeCom contacts with the grade of their company (the ``crm/contact_grades`` write-back source).

    The company is matched by name (``contacts.account_ref`` is the contact's corp_full_name) against
    accounts from any system that carry a grade, e.g. the ERP's customer master.
    """
    from tongbu.hub.store import hub_table

    contacts, accounts = hub_table("contacts"), hub_table("accounts")
    graded = (
        select(accounts.c.name, accounts.c.grade)
        .where(accounts.c.tenant_id == tenant, accounts.c.grade.is_not(None), accounts.c.deleted_at.is_(None))
        .order_by(accounts.c.updated_at)
    )
    with engine.connect() as conn:
        grade_of = {name: grade for name, grade in conn.execute(graded)}
        rows = conn.execute(
            select(contacts.c.source_id, contacts.c.wecom_external_userid, contacts.c.account_ref).where(
                contacts.c.tenant_id == tenant,
                contacts.c.source_system == source_system,
                contacts.c.deleted_at.is_(None),
                contacts.c.account_ref.is_not(None),
            )
        )
        for source_id, ext, account in rows:
            grade = grade_of.get(account)
            if grade is not None:
                yield {
                    "contact_id": source_id,
                    "wecom_external_userid": ext or source_id,
                    "account_name": account,
                    "grade": grade,
                }


def write_back_grades(
    engine: Engine,
    client: WeComClient,
    *,
    tenant: str = "default",
    source_system: str = "wecom",
    mapping_file: str | None = None,
    create_missing_tags: bool = False,
) -> TagWriteStats:
    """CRM grade → WeCom 客户等级 tag for every graded WeCom contact (in process, no Singer pipe)."""
    from pathlib import Path

    from mappings.engine import MappingError, compile_mapping
    from mappings.spec import load_mapping

    path = (
        Path(mapping_file)
        if mapping_file
        else (Path(__file__).resolve().parents[2] / "mappings" / "library" / "crm_to_wecom_tags.yaml")
    )
    mapping = compile_mapping(load_mapping(path))
    writer = ContactTagWriter(client, create_missing_tags=create_missing_tags)

    def records() -> Iterator[dict[str, Any]]:
        for row in crm_contact_grades(engine, tenant=tenant, source_system=source_system):
            try:
                yield mapping.apply(row)
            except MappingError as exc:
                writer.stats.failed += 1
                log.warning("grade of %s does not map: %s", row.get("contact_id"), exc)

    return writer.apply_all(records())


class ContactTagsSink(RecordSink):
    """Applies each ``contact_tags`` record through :class:`ContactTagWriter`."""

    def __init__(self, target: Target, *args: Any, **kwargs: Any) -> None:
        self.writer: ContactTagWriter = target.writer  # type: ignore[attr-defined]  # shared by all sinks
        super().__init__(target, *args, **kwargs)

    def process_record(self, record: dict, context: dict) -> None:
        """Write one record's tag difference (errors are logged and counted, unless fail_on_error)."""
        writer = self.writer
        try:
            writer.apply(record)
        except (TagWriteError, WeComError) as exc:
            writer.stats.failed += 1
            if self.config.get("fail_on_error"):
                raise
            self.logger.warning("contact_tags %s: %s", record.get("external_userid"), exc)


class TargetWeCom(Target):
    """Singer target writing corp tags on WeCom external contacts (stream ``contact_tags``)."""

    name = "target-wecom"
    default_sink_class = ContactTagsSink
    message_reader_class = SingerInputReader  # bad input: one line each, counted, no traceback
    config_jsonschema = th.PropertiesList(
        th.Property("corp_id", th.StringType, required=True, description="企业ID (CorpID)"),
        th.Property(
            "corp_secret",
            th.StringType,
            required=True,
            secret=True,
            description="客户联系 Secret (the only one allowed to edit corp tags)",
        ),
        th.Property("base_url", th.StringType, default="https://qyapi.weixin.qq.com"),
        th.Property(
            "create_missing_tags",
            th.BooleanType,
            default=False,
            description="create a corp tag that does not exist yet (add_corp_tag)",
        ),
        th.Property(
            "fail_on_error",
            th.BooleanType,
            default=False,
            description="stop at the first record that cannot be written",
        ),
        *http_properties(request_timeout=15, retried="45009/45033/-1, 429, 5xx and timeouts"),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client = client_from_config(dict(self.config))
        self.writer = ContactTagWriter(
            self.client, create_missing_tags=bool(self.config.get("create_missing_tags"))
        )
        attach(self, self._bad_input)

    def _bad_input(self, bad: BadMessage) -> None:
        # Reported on stderr by the reader; a record that could not be read counts as failed. The
        # source is the hub, so the next write-back run sends it again once it is fixed.
        if bad.kind != "STATE":
            self.writer.stats.failed += 1

    def get_sink_class(self, stream_name: str) -> type[RecordSink]:
        """Only ``contact_tags`` is writable."""
        if stream_name != "contact_tags":
            raise ValueError(f"target-wecom writes the stream 'contact_tags', not {stream_name!r}")
        return ContactTagsSink


if __name__ == "__main__":
    TargetWeCom.cli()
