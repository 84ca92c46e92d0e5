"""Writing WeCom external contacts into the CRM hub — shared by the rescan and the real-time path.

Both paths hand normalised ``external_contacts`` records (:mod:`connectors.wecom.records`) to
:class:`WeComHubWriter`, which maps them with the shipped mapping file (contacts, and accounts for
contacts that show a verified company), quarantines records the mapping rejects, and upserts through
:class:`tongbu.hub.store.HubStore` — so a contact written by a callback and re-read by the next
rescan hashes the same and costs nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, exists, inspect, literal

from mappings.engine import CompiledMapping, MappingError, compile_mapping
from mappings.spec import load_mapping
from tongbu.config import DEFAULT_TENANT
from tongbu.hub.store import HubStore, UpsertResult
from tongbu.inbox import applied_since, event_inbox
from tongbu.state.store import Quarantine

MAPPING_FILE = Path(__file__).resolve().parents[2] / "mappings" / "library" / "wecom_to_crm.yaml"
CONTACTS_MAPPING = "wecom_external_contacts_to_contacts"
ACCOUNTS_MAPPING = "wecom_contact_companies_to_accounts"
ACTIVITIES_MAPPING = "wecom_follow_relations_to_activities"
STREAM = "external_contacts"
# The quarantine stream of a contact's follow relations (each one an activity).
RELATIONS_STREAM = "follow_relations"
CONTACT_PREFIX = "contact:"


# The event path's inbox: core (tongbu.inbox), written by `tongbu serve`, read by the rescan's deletion.
_EVENT_INBOX = event_inbox


def contact_key(external_userid: str) -> str:
    """The event-path record key of a contact (events of one contact are ordered and coalesced by it)."""
    return CONTACT_PREFIX + external_userid


@dataclass
class MappedContacts:
    """Records mapped for the hub: contact rows, account rows and what the mapping rejected."""

    contacts: list[dict[str, Any]] = field(default_factory=list)
    accounts: list[dict[str, Any]] = field(default_factory=list)
    activities: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    #: external_userids of every record mapped or quarantined: what the source holds
    seen: list[str] = field(default_factory=list)


@dataclass
class WriteResult:
    """What one write did in the hub."""

    contacts: UpsertResult = field(default_factory=UpsertResult)
    accounts: UpsertResult = field(default_factory=UpsertResult)
    activities: UpsertResult = field(default_factory=UpsertResult)
    quarantined: int = 0
    deleted: int = 0

    def add(self, other: WriteResult) -> None:
        """Accumulate another result."""
        self.contacts.add(other.contacts)
        self.accounts.add(other.accounts)
        self.activities.add(other.activities)
        self.quarantined += other.quarantined
        self.deleted += other.deleted


class WeComHubWriter:
    """Maps WeCom contact records and writes them (and deletions) to the hub for one tenant.

    ``source_system`` is the connection name (``wecom`` by default), the same value the batch runner
    stores, so rows from the runner, the rescan and the event path are one and the same.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        tenant: str = DEFAULT_TENANT,
        source_system: str = "wecom",
        pipeline: str = "wecom_contacts",
        mapping_file: str | Path = MAPPING_FILE,
    ) -> None:
        self.engine = engine
        self.tenant = tenant
        self.source_system = source_system
        self.pipeline = pipeline
        self.hub = HubStore(engine, tenant)
        self.quarantine = Quarantine(engine, tenant)
        self.contacts_mapping: CompiledMapping = compile_mapping(load_mapping(mapping_file, CONTACTS_MAPPING))
        self.accounts_mapping: CompiledMapping = compile_mapping(load_mapping(mapping_file, ACCOUNTS_MAPPING))
        self.activities_mapping: CompiledMapping = compile_mapping(
            load_mapping(mapping_file, ACTIVITIES_MAPPING)
        )

    def map(self, records: Iterable[dict[str, Any]], *, run_id: int | None = None) -> MappedContacts:
        """Map records; a record the contacts mapping rejects is quarantined with the reason."""
        out = MappedContacts()
        accounts: dict[str, dict[str, Any]] = {}
        for rec in records:
            ext = str(rec.get("external_userid"))
            out.seen.append(ext)
            try:
                out.contacts.append(self.contacts_mapping.apply(rec))
            except MappingError as exc:
                out.quarantined.append(self._quarantined(STREAM, ext, exc, rec, run_id))
                continue
            for follow in rec.get("follow_user") or ():
                # Each relation's start is an activity (who added the customer, when, how). The contact
                # lands even if a relation does not map; the relation is quarantined with the reason.
                relation = {**follow, "external_userid": rec.get("external_userid")}
                try:
                    out.activities.append(self.activities_mapping.apply(relation))
                except MappingError as exc:
                    relation_id = f"{ext}:{follow.get('userid') if isinstance(follow, dict) else ''}"
                    out.quarantined.append(
                        self._quarantined(RELATIONS_STREAM, relation_id, exc, relation, run_id)
                    )
            if rec.get("corp_full_name"):
                try:
                    row = self.accounts_mapping.apply(rec)
                except MappingError:
                    # Only a blank (whitespace) company name fails this mapping: that is "no company",
                    # not a bad record, so the contact simply lands unlinked.
                    continue
                accounts.setdefault(row["source_id"], row)  # several contacts, one company row
        out.accounts = list(accounts.values())
        return out

    def _quarantined(
        self, stream: str, source_id: str, exc: MappingError, payload: Any, run_id: int | None
    ) -> dict[str, Any]:
        """A quarantine entry for a record one of the mappings rejected (``stage`` = mapping)."""
        return {
            "pipeline": self.pipeline,
            "connection": self.source_system,
            "stream": stream,
            "source_id": source_id,
            "stage": "mapping",
            "reason": str(exc),
            "payload": payload,
            "run_id": run_id,
        }

    def write(self, conn: Connection, mapped: MappedContacts) -> WriteResult:
        """Upsert mapped rows and store quarantined ones, in the caller's transaction."""
        res = WriteResult()
        if mapped.accounts:
            res.accounts = self.hub.upsert(
                conn, "accounts", mapped.accounts, source_system=self.source_system
            )
        if mapped.contacts:
            res.contacts = self.hub.upsert(
                conn, "contacts", mapped.contacts, source_system=self.source_system
            )
        if mapped.activities:
            res.activities = self.hub.upsert(
                conn, "activities", mapped.activities, source_system=self.source_system
            )
        if mapped.quarantined:
            self.quarantine.add_many(conn, mapped.quarantined)
            res.quarantined = len(mapped.quarantined)
        return res

    def delete(
        self,
        conn: Connection,
        external_userids: Sequence[str],
        *,
        unchanged_since: dt.datetime | None = None,
        no_events_since: float | None = None,
    ) -> WriteResult:
        """Soft-delete contacts that no longer exist in WeCom (no follow user left).

        The rescan chooses its candidates on one connection and deletes them later; whatever the event
        path (``tongbu serve``) does in between must win. So the checks are part of the UPDATE itself,
        evaluated row by row under the row lock: ``unchanged_since`` (hub clock) keeps rows written at
        or after it, ``no_events_since`` (epoch seconds) keeps contacts the event path applied at or
        after it, even when that callback changed nothing in the row.
        """
        res = WriteResult()

        def only_if(hub: Table) -> list[Any]:
            conditions: list[Any] = []
            if unchanged_since is not None:
                conditions.append(hub.c.updated_at < unchanged_since)
            if no_events_since is not None and inspect(conn).has_table("event_inbox"):
                conditions.append(
                    ~exists().where(
                        _EVENT_INBOX.c.tenant_id == self.tenant,
                        _EVENT_INBOX.c.source == self.source_system,
                        _EVENT_INBOX.c.record_key == literal(CONTACT_PREFIX) + hub.c.source_id,
                        _EVENT_INBOX.c.applied_at >= no_events_since,
                    )
                )
            return conditions

        res.deleted = self.hub.mark_deleted(
            conn, "contacts", list(external_userids), source_system=self.source_system, only_if=only_if
        )
        return res

    def touched_by_events(self, conn: Connection, external_userids: Sequence[str], since: float) -> set[str]:
        """Which contacts the real-time path applied at or after ``since`` (epoch seconds)."""

        keys = [contact_key(e) for e in external_userids]
        found = applied_since(
            conn, tenant=self.tenant, source=self.source_system, record_keys=keys, since=since
        )
        return {k[len(CONTACT_PREFIX) :] for k in found}
