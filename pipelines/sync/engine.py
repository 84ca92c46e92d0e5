"""The two-way engine: one cycle of a hub-and-spoke sync of one object.

A cycle, under the pair's lock:

1. finish creates left in flight by a crash (look the record up by its intent key or number before
   creating again: no duplicate after a lost response);
2. read what changed in every linked system since its cursor (or everything, to reconcile drift);
3. give every record an entity: its link, else an exact identity match (credit code, number) with a
   hub record not yet linked to that system, else a new hub record; two or more matches go to review;
4. find hub records edited since the last cycle (through the CRM API, or directly in the database);
5. merge each entity field by field (``merge.py``), and commit the hub, the bases, stamps, conflicts
   and audit entries in one transaction;
6. send each system only the fields that differ from its base, moving the base after each write;
7. move every system's cursor, only now that everything it covered is applied.

A crash anywhere repeats at most the unfinished part: the next cycle reads the same records again
and the merge finds them equal to their bases.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Date, DateTime, Engine, Integer, Numeric, and_, insert, select, update

from connectors.kit.spoke import Spoke, SpokeError, SpokeRecord
from pipelines.sync.identity import NORMALISED_KEYS
from pipelines.sync.merge import (
    Conflict,
    EntityView,
    FieldStamp,
    MergeEvent,
    MergeOutcome,
    SpokeView,
    apply_write,
    merge,
    same,
)
from pipelines.sync.models import SyncAudit, SyncConflict, SyncEntity
from pipelines.sync.policy import HUB_ORIGIN, ObjectPolicy
from tongbu.canon import canon, canon_record, canonical_hash, canonical_hasher
from tongbu.config import DEFAULT_TENANT
from tongbu.hub.api import CRM_ORIGIN, CrmApi, DuplicateRecordError, StaleRecordError
from tongbu.hub.models import RecordLink
from tongbu.hub.store import hub_table
from tongbu.state.store import PipelineLock, StateStore

log = logging.getLogger(__name__)

_LINKS = RecordLink.__table__
_ENTITIES = SyncEntity.__table__
_CONFLICTS = SyncConflict.__table__
_AUDIT = SyncAudit.__table__
_DIRECT_EDIT = "direct database edit"
#: merges of one entity per cycle when the CRM keeps editing it between our read and our write
_STALE_RETRIES = 3
assert HUB_ORIGIN == CRM_ORIGIN  # one label for the embedded CRM in the merge and in its history


@dataclass(frozen=True)
class SyncPair:
    """One object kept in sync between the hub and some systems."""

    name: str
    object: str
    fields: tuple[str, ...]
    policy: ObjectPolicy
    #: Identity keys (hub fields) that link an unlinked record to an existing entity, strongest first.
    match_on: tuple[str, ...] = ()
    #: Systems in which an entity missing there is created.
    create_in: frozenset[str] = frozenset()


@dataclass
class DirectionCounts:
    """What one cycle did towards one system (or the hub)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    conflicted: int = 0
    deleted: int = 0
    failed: int = 0
    calls: int = 0
    #: write calls sent (creates, updates, deletes/voids; not reads or look-ups)
    writes: int = 0
    #: writes whose every field came from this same system: an echo (ping-pong); 0 by construction
    echoes: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain dict (run metadata, CLI tables); ``writes``/``echoes`` are apart
        (:meth:`write_counts`) so this stays what it was for callers that compare it."""
        return {k: v for k, v in self.__dict__.items() if k not in ("writes", "echoes")}

    def write_counts(self) -> dict[str, int]:
        """Write calls sent and echoes among them."""
        return {"writes": self.writes, "echoes": self.echoes}


@dataclass
class PlannedWrite:
    """A write a dry run would have made."""

    system: str
    op: str  # create | update | delete | void
    hub_id: int | None
    external_id: str | None
    values: dict[str, Any]


@dataclass
class SyncReport:
    """The outcome of one cycle, per direction."""

    pair: str
    run_id: str
    directions: dict[str, DirectionCounts] = field(default_factory=dict)
    read: dict[str, int] = field(default_factory=dict)
    conflicts_opened: int = 0
    reverted: int = 0
    identity_reviews: int = 0
    stale_skipped: int = 0
    drift: int = 0
    errors: list[str] = field(default_factory=list)
    planned: list[PlannedWrite] = field(default_factory=list)
    duration_s: float = 0.0

    def direction(self, system: str) -> DirectionCounts:
        """The counts towards ``system`` (created on first use)."""
        return self.directions.setdefault(system, DirectionCounts())

    @property
    def write_amplification(self) -> float:
        """Write calls sent to the systems per record that needed one: 1.0 when nothing was sent
        twice or back to where the change came from (echoes count against it); 1.0 with no writes."""
        writes = sum(c.writes for s, c in self.directions.items() if s != HUB_ORIGIN)
        echoes = sum(c.echoes for s, c in self.directions.items() if s != HUB_ORIGIN)
        needed = writes - echoes
        return 1.0 if writes == 0 else (float("inf") if needed <= 0 else writes / needed)


class SyncEngine:
    """Runs cycles of one sync pair against its spokes."""

    def __init__(
        self,
        engine: Engine,
        pair: SyncPair,
        spokes: Sequence[Spoke],
        *,
        tenant: str = DEFAULT_TENANT,
    ) -> None:
        names = [s.system for s in spokes]
        if len(set(names)) != len(names) or HUB_ORIGIN in names:
            raise ValueError(f"sync pair {pair.name!r}: spoke names must be unique and not {HUB_ORIGIN!r}")
        self.engine = engine
        self.pair = pair
        self.spokes = {s.system: s for s in spokes}
        self.tenant = tenant
        self.api = CrmApi(engine, tenant)
        self.state = StateStore(engine, tenant)
        self.table = hub_table(pair.object)
        self._types = {c: self.table.c[c].type for c in pair.fields}
        self._name_index: dict[str, dict[str, list[int]]] = {}

    # -- the cycle ------------------------------------------------------------------------------------
    def run(self, *, dry_run: bool = False, reconcile: bool = False) -> SyncReport:
        """One cycle; ``reconcile`` compares every record of every system instead of its changes."""
        started = dt.datetime.now(dt.UTC)
        report = SyncReport(self.pair.name, uuid.uuid4().hex[:12])
        self._name_index = {}  # normalised identity keys, rebuilt every cycle
        for system in (HUB_ORIGIN, *self.spokes):
            report.direction(system)
        lock = PipelineLock(self.engine, f"sync:{self.pair.name}", tenant=self.tenant)
        lock.acquire()
        try:
            if not dry_run:
                self._finish_intents(report)
            reads, cursors = self._read(report, reconcile)
            entities = self._assign(reads, report, dry_run)
            self._add_pending(entities, reads, report)
            entities.update({hub_id: {} for hub_id in self._hub_edited(entities)})
            for hub_id in sorted(entities):
                self._cycle_entity(hub_id, entities[hub_id], report, dry_run)
            if not dry_run:
                with self.engine.begin() as conn:
                    for system, cursor in cursors.items():
                        self.state.put(conn, f"sync:{self.pair.name}", system, cursor)
                    lock.renew(conn)
        finally:
            lock.release()
        report.duration_s = (dt.datetime.now(dt.UTC) - started).total_seconds()
        return report

    # -- step 1: creates in flight ----------------------------------------------------------------------
    def _finish_intents(self, report: SyncReport) -> None:
        with self.engine.connect() as conn:
            pending = (
                conn.execute(
                    select(_LINKS).where(
                        _LINKS.c.tenant_id == self.tenant,
                        _LINKS.c.object == self.pair.object,
                        _LINKS.c.state == "creating",
                        _LINKS.c.system.in_(list(self.spokes)),
                    )
                )
                .mappings()
                .all()
            )
        for link in pending:
            spoke = self.spokes[link["system"]]
            values = dict(link["snapshot"] or {})
            try:
                found = spoke.find(self.pair.object, {**self._keys(values), "intent_key": link["intent_key"]})
                report.direction(spoke.system).calls += 1
            except SpokeError as exc:
                report.errors.append(f"{spoke.system}: could not look up a create in flight: {exc}")
                continue
            with self.engine.begin() as conn:
                if found is None:
                    # The create never reached the system: forget the intent; this cycle creates again.
                    conn.execute(_LINKS.delete().where(_LINKS.c.id == link["id"]))
                else:
                    conn.execute(
                        update(_LINKS)
                        .where(_LINKS.c.id == link["id"])
                        .values(external_id=found, state="linked", synced_at=dt.datetime.now(dt.UTC))
                    )

    def _add_pending(
        self,
        entities: dict[int, dict[str, SpokeRecord]],
        reads: Mapping[str, list[SpokeRecord]],
        report: SyncReport,
    ) -> None:
        """Entities with an update decided but not known to be applied (a crash, a lost answer):
        merged again with the record as the system holds it now, read back if this cycle did not."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(_LINKS.c.system, _LINKS.c.hub_id, _LINKS.c.external_id).where(
                    _LINKS.c.tenant_id == self.tenant,
                    _LINKS.c.object == self.pair.object,
                    _LINKS.c.system.in_(list(self.spokes)),
                    _LINKS.c.pending.is_not(None),
                )
            ).all()
        by_system: dict[str, dict[str, int]] = {}
        for system, hub_id, ext in rows:
            by_system.setdefault(system, {})[ext] = hub_id
        for system, wanted in by_system.items():
            seen = {r.external_id: r for r in reads.get(system, [])}
            missing = [e for e in wanted if e not in seen]
            if missing:
                try:
                    fetched = self.spokes[system].fetch(self.pair.object, missing)
                    report.direction(system).calls += 1
                except SpokeError as exc:
                    report.errors.append(f"{system}: could not read back writes in flight: {exc}")
                    fetched = {}
                for ext, r in fetched.items():
                    seen[ext] = SpokeRecord(
                        r.external_id,
                        {k: canon(v) for k, v in r.values.items() if k in self._types},
                        r.modified_at,
                        r.author,
                        r.deleted,
                    )
            for ext, hub_id in wanted.items():
                if ext in seen:
                    entities.setdefault(hub_id, {})[system] = seen[ext]

    # -- step 2: reads -----------------------------------------------------------------------------------
    def _read(
        self, report: SyncReport, reconcile: bool
    ) -> tuple[dict[str, list[SpokeRecord]], dict[str, Any]]:
        reads: dict[str, list[SpokeRecord]] = {}
        cursors: dict[str, Any] = {}
        for system, spoke in self.spokes.items():
            with self.engine.connect() as conn:
                cursor = self.state.get(conn, f"sync:{self.pair.name}", system)
            if reconcile:
                records = list(spoke.scan(self.pair.object))
                new_cursor = cursor
            else:
                records, new_cursor = spoke.changes(self.pair.object, cursor)
            report.direction(system).calls += 1
            canonical = [
                SpokeRecord(
                    r.external_id,
                    {k: canon(v) for k, v in r.values.items() if k in self._types},
                    r.modified_at,
                    r.author,
                    r.deleted,
                )
                for r in records
            ]
            reads[system] = canonical
            report.read[system] = len(canonical)
            if new_cursor is not None:
                cursors[system] = new_cursor
        return reads, cursors

    # -- step 3: identity ----------------------------------------------------------------------------------
    def _assign(
        self, reads: Mapping[str, list[SpokeRecord]], report: SyncReport, dry_run: bool
    ) -> dict[int, dict[str, SpokeRecord]]:
        entities: dict[int, dict[str, SpokeRecord]] = {}
        for system, records in reads.items():
            latest: dict[str, SpokeRecord] = {}
            for record in records:  # a feed may repeat a record: the last read is the newest
                latest[record.external_id] = record
            linked = self._links_by_external(system, list(latest))
            for ext, record in latest.items():
                link = linked.get(ext)
                if link is None:
                    hub_id = self._identify(system, record, report, dry_run)
                    if hub_id is not None:
                        entities.setdefault(hub_id, {})[system] = record
                    continue
                hub_id, snapshot, state, seen_at = link
                if state == "linked" and not record.deleted and _agrees(record.values, snapshot):
                    # Our own write coming back, or a record touched without a change: nothing to
                    # merge. Checked here in bulk so a reconciliation of unchanged records stays cheap.
                    report.direction(system).unchanged += 1
                    continue
                if state == "linked" and not record.deleted and _not_newer(record.modified_at, seen_at):
                    # Changed, but its modification time did not move past what we last read: an
                    # out-of-band edit no change feed shows (found by a reconciliation pass).
                    report.drift += 1
                entities.setdefault(hub_id, {})[system] = record
        return entities

    def _links_by_external(
        self, system: str, external_ids: list[str]
    ) -> dict[str, tuple[int, dict[str, Any], str, dt.datetime | None]]:
        found: dict[str, tuple[int, dict[str, Any], str, dt.datetime | None]] = {}
        t = _LINKS
        cols = (t.c.external_id, t.c.hub_id, t.c.snapshot, t.c.state, t.c.source_modified_at)
        base = select(*cols).where(
            t.c.tenant_id == self.tenant, t.c.object == self.pair.object, t.c.system == system
        )
        with self.engine.connect() as conn:
            if len(external_ids) > 5000:  # a reconciliation: one pass over the system's links
                wanted = set(external_ids)
                rows: Iterable[Any] = (r for r in conn.execute(base) if r.external_id in wanted)
                for row in rows:
                    found[row.external_id] = (
                        row.hub_id,
                        row.snapshot or {},
                        row.state,
                        row.source_modified_at,
                    )
                return found
            for chunk in _chunks(external_ids, 500):
                for row in conn.execute(base.where(t.c.external_id.in_(chunk))):
                    found[row.external_id] = (
                        row.hub_id,
                        row.snapshot or {},
                        row.state,
                        row.source_modified_at,
                    )
        return found

    def _identify(self, system: str, record: SpokeRecord, report: SyncReport, dry_run: bool) -> int | None:
        """An entity for a record that has no link yet; None when it must wait (review, deleted)."""
        if record.deleted:
            return None  # deleted before we ever saw it: nothing to sync
        t = self.table
        with self.engine.connect() as conn:
            for key in self.pair.match_on:
                value = record.values.get(key)
                if value in (None, ""):
                    continue
                already = select(_LINKS.c.hub_id).where(
                    _LINKS.c.tenant_id == self.tenant,
                    _LINKS.c.object == self.pair.object,
                    _LINKS.c.system == system,
                )
                if key in NORMALISED_KEYS:
                    candidates = self._normalised_candidates(conn, key, value, record, already)
                else:
                    candidates = [
                        r.id
                        for r in conn.execute(
                            select(t.c.id).where(
                                t.c.tenant_id == self.tenant,
                                t.c[key] == self._decode(key, value),
                                t.c.deleted_at.is_(None),
                                t.c.id.not_in(already),
                            )
                        )
                    ]
                if len(candidates) == 1:
                    return int(candidates[0])
                if len(candidates) > 1:
                    report.identity_reviews += 1
                    if not dry_run:
                        self._open_identity_review(system, record, key, candidates)
                    return None
        if dry_run:
            report.planned.append(
                PlannedWrite(HUB_ORIGIN, "create", None, record.external_id, dict(record.values))
            )
            report.direction(HUB_ORIGIN).created += 1
            return None
        values = {k: self._decode(k, v) for k, v in record.values.items()}
        with self.engine.begin() as conn:
            try:
                hub_id = self.api.create(
                    self.pair.object,
                    values,
                    author=record.author or system,
                    origin=system,
                    source_id=record.external_id,
                    conn=conn,
                )
            except DuplicateRecordError as exc:  # created in the CRM meanwhile: link to that one
                return exc.existing_id
            # Linked with the values it came with: the system's base is what it holds.
            self._put_link(conn, hub_id, system, record.external_id, dict(record.values), record.modified_at)
            self._put_entity(
                conn,
                hub_id,
                dict(record.values),
                dict.fromkeys(record.values, [system, _iso(record.modified_at), record.author]),
                None,
            )
        report.direction(HUB_ORIGIN).created += 1
        self._audit_one(
            hub_id, system, "created", None, None, dict(record.values), f"new record from {system}"
        )
        return hub_id

    def _normalised_candidates(
        self, conn: Connection, key: str, value: Any, record: SpokeRecord, already: Any
    ) -> list[int]:
        """Unlinked hub records whose ``key`` matches in normal form and whose stronger keys do not
        contradict the record's. The normal forms of the object are computed once per cycle."""
        index = self._name_index.get(key)
        if index is None:
            t = self.table
            index = {}
            for row in conn.execute(
                select(t.c.id, t.c[key]).where(
                    t.c.tenant_id == self.tenant, t.c.deleted_at.is_(None), t.c[key].is_not(None)
                )
            ):
                index.setdefault(NORMALISED_KEYS[key](str(row[1])), []).append(row[0])
            self._name_index[key] = index
        found = index.get(NORMALISED_KEYS[key](str(value)), [])
        if not found:
            return []
        t = self.table
        stronger = [
            k for k in self.pair.match_on[: self.pair.match_on.index(key)] if k not in NORMALISED_KEYS
        ]
        rows = conn.execute(
            select(t.c.id, *(t.c[k] for k in stronger)).where(
                t.c.id.in_(found), t.c.deleted_at.is_(None), t.c.id.not_in(already)
            )
        ).all()
        out = []
        for row in rows:
            theirs = dict(zip(stronger, row[1:], strict=True))
            if any(
                record.values.get(k) not in (None, "")
                and theirs[k] not in (None, "")
                and not same(canon(theirs[k]), record.values.get(k))
                for k in stronger
            ):
                continue  # another credit code or number: another company of the same name
            out.append(row[0])
        return sorted(out)

    def _open_identity_review(
        self, system: str, record: SpokeRecord, key: str, candidates: list[int]
    ) -> None:
        with self.engine.begin() as conn:
            open_key = f"identity:{system}:{record.external_id}"
            exists = conn.execute(
                select(_CONFLICTS.c.id).where(
                    _CONFLICTS.c.tenant_id == self.tenant,
                    _CONFLICTS.c.pair == self.pair.name,
                    _CONFLICTS.c.open_key == open_key,
                )
            ).first()
            if exists is None:
                conn.execute(
                    insert(_CONFLICTS).values(
                        tenant_id=self.tenant,
                        pair=self.pair.name,
                        object=self.pair.object,
                        hub_id=None,
                        kind="identity",
                        field=key,
                        hub_value=candidates,
                        system=system,
                        external_id=record.external_id,
                        system_value=dict(record.values),
                        status="open",
                        open_key=open_key,
                    )
                )

    # -- step 4: hub edits ----------------------------------------------------------------------------------
    def _hub_edited(self, already: Mapping[int, Any]) -> list[int]:
        """Hub records whose synced fields changed since the engine last saw them, or never synced."""
        t = self.table
        cols = [t.c.id, *(t.c[f] for f in self.pair.fields)]
        edited: list[int] = []
        with self.engine.connect() as conn:
            known = {
                r.hub_id: r.hub_hash
                for r in conn.execute(
                    select(_ENTITIES.c.hub_id, _ENTITIES.c.hub_hash).where(
                        _ENTITIES.c.tenant_id == self.tenant,
                        _ENTITIES.c.pair == self.pair.name,
                        _ENTITIES.c.deleted_at.is_(None),
                    )
                )
            }
            deleted_known = {
                r.hub_id
                for r in conn.execute(
                    select(_ENTITIES.c.hub_id).where(
                        _ENTITIES.c.tenant_id == self.tenant,
                        _ENTITIES.c.pair == self.pair.name,
                        _ENTITIES.c.deleted_at.is_not(None),
                    )
                )
            }
            # Every row is hashed (that is what finds edits made directly in the database, which
            # move neither row_hash nor updated_at): the hasher keeps that cheap.
            digest = canonical_hasher(self.pair.fields)
            n = len(self.pair.fields)
            rows = conn.execute(select(t.c.deleted_at, t.c.id, *cols[1:]).where(t.c.tenant_id == self.tenant))
            for row in rows:
                hub_id = row[1]
                if hub_id in already or hub_id in deleted_known:
                    continue
                if row[0] is not None:
                    if hub_id in known:
                        edited.append(hub_id)  # deleted in the CRM: the delete policy applies
                    continue
                if known.get(hub_id) != digest(row[2 : 2 + n]):
                    edited.append(hub_id)
        return edited

    # -- step 5 and 6: merge, persist, write out --------------------------------------------------------------
    def _cycle_entity(
        self, hub_id: int, reads: Mapping[str, SpokeRecord], report: SyncReport, dry_run: bool
    ) -> None:
        for attempt in range(_STALE_RETRIES):
            view, links, entity_row, version = self._load(hub_id, reads, report)
            if view is None:
                return
            outcome = merge(self.pair.policy, view)
            # Creates only where the pair says so; other unlinked systems just do not carry the entity.
            for system in list(outcome.creates):
                if system not in self.pair.create_in:
                    outcome.creates.discard(system)
                    outcome.writes.pop(system, None)
            if dry_run:
                self._plan(hub_id, outcome, links, report)
                return
            try:
                self._persist(hub_id, view, outcome, links, entity_row, reads, report, version)
            except StaleRecordError:
                # Edited in the CRM (its API, or directly) between our read and our write: merge again
                # with that edit rather than overwrite it. Past the last attempt the cycle fails and
                # its cursors stay where they were, so nothing it read is lost.
                if attempt == _STALE_RETRIES - 1:
                    raise
                continue
            if any(s not in links and s not in outcome.creates for s in (*outcome.writes, *outcome.deletes)):
                # Linked in this cycle by an identity key (its link row was just written): the write
                # of what the hub holds and the system lacks goes through that new link.
                links = self._links_of(hub_id)
            self._write_out(hub_id, outcome, links, report)
            return

    def _links_of(self, hub_id: int) -> dict[str, Mapping[str, Any]]:
        with self.engine.connect() as conn:
            return {
                str(r["system"]): dict(r)
                for r in conn.execute(
                    select(_LINKS).where(
                        _LINKS.c.tenant_id == self.tenant,
                        _LINKS.c.object == self.pair.object,
                        _LINKS.c.hub_id == hub_id,
                    )
                ).mappings()
            }

    def _load(
        self, hub_id: int, reads: Mapping[str, SpokeRecord], report: SyncReport
    ) -> tuple[EntityView | None, dict[str, Mapping[str, Any]], Mapping[str, Any] | None, str | None]:
        t = self.table
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(t).where(t.c.id == hub_id, t.c.tenant_id == self.tenant))
                .mappings()
                .first()
            )
            if row is None:
                return None, {}, None, None
            version = self.api.etag(self.pair.object, dict(row))
            # plain dicts keyed by column name (a RowMapping also accepts Column keys, so it is not a
            # Mapping[str, Any] to the type checker)
            links: dict[str, Mapping[str, Any]] = {
                str(r["system"]): dict(r)
                for r in conn.execute(
                    select(_LINKS).where(
                        _LINKS.c.tenant_id == self.tenant,
                        _LINKS.c.object == self.pair.object,
                        _LINKS.c.hub_id == hub_id,
                    )
                ).mappings()
            }
            entity = (
                conn.execute(
                    select(_ENTITIES).where(
                        _ENTITIES.c.tenant_id == self.tenant,
                        _ENTITIES.c.pair == self.pair.name,
                        _ENTITIES.c.hub_id == hub_id,
                    )
                )
                .mappings()
                .first()
            )
            entity_row: dict[str, Any] | None = dict(entity) if entity is not None else None
            open_fields = {
                r.field
                for r in conn.execute(
                    select(_CONFLICTS.c.field).where(
                        _CONFLICTS.c.tenant_id == self.tenant,
                        _CONFLICTS.c.pair == self.pair.name,
                        _CONFLICTS.c.hub_id == hub_id,
                        _CONFLICTS.c.status == "open",
                    )
                )
            }
        hub = canon_record({f: row[f] for f in self.pair.fields})
        stamps = _stamps_from_json((entity_row or {}).get("stamps"))
        snapshot = (entity_row or {}).get("hub_snapshot") or {}
        edited = [f for f in self.pair.fields if entity_row is not None and hub.get(f) != snapshot.get(f)]
        if edited:
            self._stamp_hub_edits(hub_id, edited, stamps, (entity_row or {}).get("updated_at"))
        spokes = []
        for system in self.spokes:
            link = links.get(system)
            record = reads.get(system)
            if record is not None and link is not None and _is_stale(record, link):
                report.stale_skipped += 1
                record = None
            base = None
            if link is not None and link["state"] != "creating":
                base = dict(link["snapshot"] or {})
                pending = link.get("pending")
                if (
                    pending
                    and record is not None
                    and all(same(record.values.get(k), v) for k, v in pending.items())
                ):
                    base = apply_write(base, pending)  # our write was applied: its base moves
            if link is not None and link["state"] == "creating":
                continue  # a create in flight: finished at the start of the next cycle
            spokes.append(
                SpokeView(
                    system,
                    base,
                    None if record is None or record.deleted else dict(record.values),
                    record.modified_at if record else None,
                    record.author if record else None,
                    deleted=bool(record and record.deleted),
                    delete_applied=bool(link is not None and link["state"] == "deleted"),
                )
            )
        entity_deleted = bool(entity_row and entity_row.get("deleted_at"))
        if row["deleted_at"] is not None and not entity_deleted:
            spokes.append(SpokeView(HUB_ORIGIN, {}, deleted=True))  # deleted in the CRM
        view = EntityView(hub, spokes, stamps, frozenset(open_fields), deleted=entity_deleted)
        return view, links, entity_row, version

    def _stamp_hub_edits(
        self, hub_id: int, edited: list[str], stamps: dict[str, FieldStamp], since: dt.datetime | None
    ) -> None:
        """Attribute hub-side edits: the CRM's history names the author; anything else was a direct edit."""
        history = self.api.changes(self.pair.object, [hub_id])
        by_field: dict[str, FieldStamp] = {}
        for change in history:
            if change.origin != CRM_ORIGIN:
                continue
            for name in change.values:
                by_field[name] = FieldStamp(CRM_ORIGIN, change.at, change.author)
        for name in edited:
            stamps[name] = by_field.get(name) or FieldStamp(CRM_ORIGIN, None, _DIRECT_EDIT)

    def _persist(
        self,
        hub_id: int,
        view: EntityView,
        outcome: MergeOutcome,
        links: Mapping[str, Mapping[str, Any]],
        entity_row: Mapping[str, Any] | None,
        reads: Mapping[str, SpokeRecord],
        report: SyncReport,
        version: str | None = None,
    ) -> None:
        t = self.table
        now = dt.datetime.now(dt.UTC)
        with self.engine.begin() as conn:
            hub_changes = {k: c.new for k, c in outcome.changed.items()}
            if hub_changes and not outcome.hub_deleted:
                by_origin: dict[tuple[str, str | None], dict[str, Any]] = {}
                for name, change in outcome.changed.items():
                    by_origin.setdefault((change.stamp.origin, change.stamp.author), {})[name] = change.new
                expected = version  # the first update checks the version we merged (and locks the row)
                for (origin, author), values in by_origin.items():
                    self.api.update(
                        self.pair.object,
                        hub_id,
                        {k: self._decode(k, v) for k, v in values.items()},
                        author=author or origin,
                        origin=origin,
                        conn=conn,
                        if_match=expected,
                    )
                    expected = None
                report.direction(HUB_ORIGIN).updated += 1
            if outcome.hub_deleted and not view.deleted:
                conn.execute(
                    update(t)
                    .where(t.c.id == hub_id, t.c.deleted_at.is_(None))
                    .values(deleted_at=now, updated_at=now)
                )
                if any(s.deleted for s in view.spokes):
                    report.direction(HUB_ORIGIN).deleted += 1
            # Bases of systems read in this cycle (their inbound side), and first links.
            for spoke in view.spokes:
                record = reads.get(spoke.system)
                link = links.get(spoke.system)
                if record is None or spoke.current is None:
                    continue
                base = outcome.bases[spoke.system]
                if link is None:
                    self._put_link(conn, hub_id, spoke.system, record.external_id, base, record.modified_at)
                else:
                    conn.execute(
                        update(_LINKS)
                        .where(_LINKS.c.id == link["id"])
                        .values(
                            snapshot=base,
                            snapshot_hash=canonical_hash(base),
                            source_modified_at=record.modified_at or link["source_modified_at"],
                            version=link["version"] + 1,
                            synced_at=now,
                            pending=None,  # read back: the base above already holds what applied
                        )
                    )
            # The writes about to be sent, recorded with the decision: a crash before or after the
            # system applies one is finished next cycle by reading the record back (_add_pending).
            for system, values in outcome.writes.items():
                link = links.get(system)
                if system in outcome.creates or link is None:
                    continue
                conn.execute(update(_LINKS).where(_LINKS.c.id == link["id"]).values(pending=dict(values)))
            for conflict in outcome.conflicts:
                self._insert_conflict(conn, hub_id, conflict, reads)
                report.conflicts_opened += 1
                report.direction(conflict.system).conflicted += 1
            for event in outcome.events:
                if event.kind == "reverted":
                    report.reverted += 1
                self._audit(conn, hub_id, event)
            for name, change in outcome.changed.items():
                self._audit(
                    conn,
                    hub_id,
                    MergeEvent(
                        "applied",
                        name,
                        change.stamp.origin,
                        f"by {change.stamp.author or '-'}",
                        change.old,
                        change.new,
                    ),
                )
            self._put_entity(
                conn,
                hub_id,
                outcome.hub,
                {k: [s.origin, _iso(s.at), s.author] for k, s in outcome.stamps.items()},
                now if outcome.hub_deleted else None,
            )
        for spoke in view.spokes:
            if spoke.current is not None and spoke.system not in outcome.writes:
                report.direction(spoke.system).unchanged += 1

    def _write_out(
        self, hub_id: int, outcome: MergeOutcome, links: Mapping[str, Mapping[str, Any]], report: SyncReport
    ) -> None:
        for system, action in outcome.deletes.items():
            link = links[system]
            try:
                report.direction(system).writes += 1
                self.spokes[system].delete(self.pair.object, link["external_id"], action)
            except SpokeError as exc:
                report.direction(system).failed += 1
                report.errors.append(f"{system} {link['external_id']}: {action} failed: {exc}")
                self._retry_next_cycle(hub_id)
                continue
            finally:
                report.direction(system).calls += 1
            with self.engine.begin() as conn:
                conn.execute(update(_LINKS).where(_LINKS.c.id == link["id"]).values(state="deleted"))
                self._audit(conn, hub_id, MergeEvent(action, None, system, f"{action} applied in {system}"))
            report.direction(system).deleted += 1
        for system, values in outcome.writes.items():
            spoke = self.spokes[system]
            counts = report.direction(system)
            if system in outcome.creates:
                self._create_in(spoke, hub_id, values, counts, report)
                continue
            link = links[system]
            counts.writes += 1
            if values and all(
                (stamp := outcome.stamps.get(k)) is not None and stamp.origin == system for k in values
            ):
                counts.echoes += 1  # never expected: the merge sends only what differs from the base
                log.warning("sync %s: echo write to %s for hub record %s", self.pair.name, system, hub_id)
            try:
                counts.calls += 1
                spoke.update(self.pair.object, link["external_id"], values)
            except SpokeError as exc:
                counts.failed += 1
                report.errors.append(f"{system} {link['external_id']}: update failed: {exc}")
                if not exc.transient:  # refused: nothing was applied (a lost answer keeps it pending)
                    with self.engine.begin() as conn:
                        conn.execute(update(_LINKS).where(_LINKS.c.id == link["id"]).values(pending=None))
                self._retry_next_cycle(hub_id)
                continue
            with self.engine.begin() as conn:
                current = conn.execute(
                    select(_LINKS.c.snapshot).where(_LINKS.c.id == link["id"])
                ).scalar_one()
                base = apply_write(current or {}, values)
                conn.execute(
                    update(_LINKS)
                    .where(_LINKS.c.id == link["id"])
                    .values(
                        snapshot=base,
                        snapshot_hash=canonical_hash(base),
                        synced_at=dt.datetime.now(dt.UTC),
                        pending=None,
                    )
                )
                self._audit(
                    conn,
                    hub_id,
                    MergeEvent("written", None, system, json.dumps(sorted(values)), None, values),
                )
            counts.updated += 1

    def _forget_hub_hash(self, conn: Connection, hub_id: int) -> None:
        """Make the next cycle merge this entity again, as if its hub record had been edited."""
        conn.execute(
            update(_ENTITIES)
            .where(
                _ENTITIES.c.tenant_id == self.tenant,
                _ENTITIES.c.pair == self.pair.name,
                _ENTITIES.c.hub_id == hub_id,
            )
            .values(hub_hash=None)
        )

    def _retry_next_cycle(self, hub_id: int) -> None:
        """A write that failed leaves its base where it was; forgetting the hub hash makes the next
        cycle merge the entity again and send the difference, instead of waiting for another edit."""
        with self.engine.begin() as conn:
            self._forget_hub_hash(conn, hub_id)

    def _create_in(
        self, spoke: Spoke, hub_id: int, values: dict[str, Any], counts: DirectionCounts, report: SyncReport
    ) -> None:
        intent = hashlib.blake2b(
            f"{self.tenant}|{self.pair.object}|{hub_id}|{spoke.system}".encode(), digest_size=12
        ).hexdigest()
        # The intent is recorded before the call: a crash after the system applied the create but
        # before its id is stored is finished by looking the record up, never by creating it again.
        with self.engine.begin() as conn:
            try:
                conn.execute(
                    insert(_LINKS).values(
                        tenant_id=self.tenant,
                        object=self.pair.object,
                        hub_id=hub_id,
                        system=spoke.system,
                        external_id=f"pending:{intent}",
                        snapshot=values,
                        snapshot_hash=canonical_hash(values),
                        version=1,
                        state="creating",
                        intent_key=intent,
                    )
                )
            except Exception:  # noqa: BLE001 - the unique (entity, system) link exists: someone linked it
                return
        try:
            counts.calls += 1
            external_id = spoke.find(self.pair.object, {**self._keys(values), "intent_key": intent})
            if external_id is None:
                counts.calls += 1
                counts.writes += 1
                external_id = spoke.create(self.pair.object, values, intent)
                counts.created += 1
            else:
                counts.unchanged += 1
        except SpokeError as exc:
            counts.failed += 1
            report.errors.append(f"{spoke.system}: create of hub record {hub_id} failed: {exc}")
            if exc.transient:
                # The outcome is unknown (the answer may be lost after the system applied it): keep
                # the intent; the next cycle looks the record up before creating again.
                return
            with self.engine.begin() as conn:
                conn.execute(
                    _LINKS.delete().where(
                        _LINKS.c.tenant_id == self.tenant,
                        _LINKS.c.object == self.pair.object,
                        _LINKS.c.intent_key == intent,
                        _LINKS.c.state == "creating",
                    )
                )
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(_LINKS)
                .where(
                    _LINKS.c.tenant_id == self.tenant,
                    _LINKS.c.intent_key == intent,
                    _LINKS.c.object == self.pair.object,
                )
                .values(external_id=external_id, state="linked", synced_at=dt.datetime.now(dt.UTC))
            )
            self._audit(
                conn,
                hub_id,
                MergeEvent("created", None, spoke.system, f"created as {external_id}", None, values),
            )

    def _plan(
        self, hub_id: int, outcome: MergeOutcome, links: Mapping[str, Mapping[str, Any]], report: SyncReport
    ) -> None:
        if outcome.changed:
            report.planned.append(
                PlannedWrite(
                    HUB_ORIGIN, "update", hub_id, None, {k: c.new for k, c in outcome.changed.items()}
                )
            )
            report.direction(HUB_ORIGIN).updated += 1
        for system, values in outcome.writes.items():
            op = "create" if system in outcome.creates else "update"
            ext = None if op == "create" else links[system]["external_id"]
            report.planned.append(PlannedWrite(system, op, hub_id, ext, dict(values)))
            counts = report.direction(system)
            if op == "create":
                counts.created += 1
            else:
                counts.updated += 1
        for system, action in outcome.deletes.items():
            report.planned.append(PlannedWrite(system, action, hub_id, links[system]["external_id"], {}))
            report.direction(system).deleted += 1
        for conflict in outcome.conflicts:
            report.conflicts_opened += 1
            report.direction(conflict.system).conflicted += 1

    # -- the review queue -----------------------------------------------------------------------------------
    def conflicts(self, status: str = "open") -> list[dict[str, Any]]:
        """Conflicts of this pair (``open``, ``resolved`` or ``all``), oldest first."""
        q = select(_CONFLICTS).where(
            _CONFLICTS.c.tenant_id == self.tenant, _CONFLICTS.c.pair == self.pair.name
        )
        if status != "all":
            q = q.where(_CONFLICTS.c.status == status)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q.order_by(_CONFLICTS.c.id)).mappings()]

    def resolve(self, conflict_id: int, choice: str, *, by: str, value: Any = None) -> Any:
        """Decide a field conflict: keep the ``hub``'s value, take the ``system``'s, or set ``value``.

        The hub takes the decision (recorded in the CRM's history and the audit log); the conflicting
        system's base becomes the value it holds, so the next cycle writes only where the decision
        differs from what a system has. Returns the decided value.
        """
        if choice not in ("hub", "system", "value"):
            raise ValueError(f"choice must be 'hub', 'system' or 'value', not {choice!r}")
        with self.engine.begin() as conn:
            row = (
                conn.execute(
                    select(_CONFLICTS).where(
                        _CONFLICTS.c.id == conflict_id,
                        _CONFLICTS.c.tenant_id == self.tenant,
                        _CONFLICTS.c.pair == self.pair.name,
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                raise LookupError(f"no conflict {conflict_id} in sync pair {self.pair.name!r}")
            if row["status"] != "open":
                raise ValueError(f"conflict {conflict_id} was already resolved by {row['resolved_by']}")
            if row["kind"] != "field":
                raise ValueError(
                    f"conflict {conflict_id} is an identity review: link or create the record instead"
                )
            name = row["field"]
            decided = {"hub": row["hub_value"], "system": row["system_value"], "value": canon(value)}[choice]
            hub_id = row["hub_id"]
            self.api.update(
                self.pair.object,
                hub_id,
                {name: self._decode(name, decided)},
                author=by,
                origin=CRM_ORIGIN,
                conn=conn,
            )
            link_q = select(_LINKS).where(
                _LINKS.c.tenant_id == self.tenant,
                _LINKS.c.object == self.pair.object,
                _LINKS.c.hub_id == hub_id,
                _LINKS.c.system == row["system"],
            )
            link = conn.execute(link_q).mappings().first()
            if link is not None:
                base = {**(link["snapshot"] or {}), name: row["system_value"]}
                conn.execute(
                    update(_LINKS)
                    .where(_LINKS.c.id == link["id"])
                    .values(snapshot=base, snapshot_hash=canonical_hash(base))
                )
            # The entity must be merged again next cycle even when the hub keeps its value (no hub
            # edit to notice): the losing system still holds the other value and must receive it.
            self._forget_hub_hash(conn, hub_id)
            conn.execute(
                update(_CONFLICTS)
                .where(_CONFLICTS.c.id == conflict_id)
                .values(
                    status="resolved",
                    open_key=None,
                    resolution={"choice": choice, "value": decided},
                    resolved_by=by,
                    resolved_at=dt.datetime.now(dt.UTC),
                )
            )
            self._audit(
                conn,
                hub_id,
                MergeEvent(
                    "conflict_resolved",
                    name,
                    CRM_ORIGIN,
                    f"{choice} chosen by {by}",
                    row["hub_value"],
                    decided,
                ),
            )
        return decided

    # -- storage helpers -------------------------------------------------------------------------------------
    def _put_link(
        self,
        conn: Connection,
        hub_id: int,
        system: str,
        external_id: str,
        base: Mapping[str, Any],
        modified_at: dt.datetime | None,
    ) -> None:
        conn.execute(
            insert(_LINKS).values(
                tenant_id=self.tenant,
                object=self.pair.object,
                hub_id=hub_id,
                system=system,
                external_id=external_id,
                snapshot=dict(base),
                snapshot_hash=canonical_hash(base),
                version=1,
                synced_at=dt.datetime.now(dt.UTC),
                state="linked",
                source_modified_at=modified_at,
            )
        )

    def _put_entity(
        self,
        conn: Connection,
        hub_id: int,
        hub: Mapping[str, Any],
        stamps: Mapping[str, Any],
        deleted_at: dt.datetime | None,
    ) -> None:
        snapshot = {f: hub.get(f) for f in self.pair.fields}
        values = {
            "stamps": dict(stamps),
            "hub_snapshot": snapshot,
            "hub_hash": canonical_hash({f: self._decode(f, v) for f, v in snapshot.items()}),
            "updated_at": dt.datetime.now(dt.UTC),
        }
        if deleted_at is not None:
            values["deleted_at"] = deleted_at
        key = and_(
            _ENTITIES.c.tenant_id == self.tenant,
            _ENTITIES.c.pair == self.pair.name,
            _ENTITIES.c.hub_id == hub_id,
        )
        if conn.execute(update(_ENTITIES).where(key).values(**values)).rowcount == 0:
            conn.execute(
                insert(_ENTITIES).values(
                    tenant_id=self.tenant,
                    pair=self.pair.name,
                    object=self.pair.object,
                    hub_id=hub_id,
                    **values,
                )
            )

    def _insert_conflict(
        self, conn: Connection, hub_id: int, conflict: Conflict, reads: Mapping[str, SpokeRecord]
    ) -> None:
        record = reads.get(conflict.system)
        conn.execute(
            insert(_CONFLICTS).values(
                tenant_id=self.tenant,
                pair=self.pair.name,
                object=self.pair.object,
                hub_id=hub_id,
                kind="field",
                field=conflict.field,
                base=conflict.base,
                hub_value=conflict.hub_value,
                hub_origin=conflict.hub_origin,
                hub_author=conflict.hub_author,
                hub_at=conflict.hub_at,
                system=conflict.system,
                external_id=record.external_id if record else None,
                system_value=conflict.system_value,
                system_author=conflict.system_author,
                system_at=conflict.system_at,
                status="open",
                open_key=f"{hub_id}:{conflict.field}",
            )
        )

    def _audit(self, conn: Connection, hub_id: int | None, event: MergeEvent) -> None:
        prev = conn.execute(
            select(_AUDIT.c.hash)
            .where(_AUDIT.c.tenant_id == self.tenant, _AUDIT.c.pair == self.pair.name)
            .order_by(_AUDIT.c.id.desc())
            .limit(1)
        ).scalar_one_or_none() or ("0" * 64)
        at = dt.datetime.now(dt.UTC)
        body = {
            "at": at.isoformat(),
            "object": self.pair.object,
            "hub_id": hub_id,
            "system": event.system,
            "kind": event.kind,
            "field": event.field,
            "old": canon(event.old),
            "new": canon(event.new),
            "detail": event.detail,
        }
        digest = hashlib.sha256(
            (prev + json.dumps(body, sort_keys=True, ensure_ascii=False)).encode()
        ).hexdigest()
        conn.execute(
            insert(_AUDIT).values(
                tenant_id=self.tenant,
                pair=self.pair.name,
                at=at,
                object=self.pair.object,
                hub_id=hub_id,
                system=event.system,
                kind=event.kind,
                field=event.field,
                old=body["old"],
                new=body["new"],
                detail=event.detail,
                prev_hash=prev,
                hash=digest,
            )
        )

    def _audit_one(
        self, hub_id: int, system: str, kind: str, name: str | None, old: Any, new: Any, detail: str
    ) -> None:
        with self.engine.begin() as conn:
            self._audit(conn, hub_id, MergeEvent(kind, name, system, detail, old, new))

    def _keys(self, values: Mapping[str, Any]) -> dict[str, Any]:
        # Exact keys only: a system is never asked to find a record by a name (two companies may
        # share one; name matches are the engine's, against the hub, with review when ambiguous).
        return {
            k: values[k]
            for k in self.pair.match_on
            if k not in NORMALISED_KEYS and values.get(k) not in (None, "")
        }

    def _decode(self, name: str, value: Any) -> Any:
        """A canonical value back in the hub column's Python type."""
        if value is None:
            return None
        kind = self._types.get(name)
        if isinstance(kind, Numeric) and not isinstance(kind, Integer):
            return Decimal(str(value))
        if isinstance(kind, Integer):
            return int(Decimal(str(value)))
        if isinstance(kind, DateTime) and isinstance(value, str):
            return dt.datetime.fromisoformat(value.removesuffix("Z")).replace(tzinfo=dt.UTC)
        if isinstance(kind, Date) and isinstance(value, str):
            return dt.date.fromisoformat(value)
        return value


def verify_audit(engine: Engine, pair: str, tenant: str = DEFAULT_TENANT) -> int | None:
    """Check the audit chain of a pair; returns the id of the first altered row, or None if intact."""
    prev = "0" * 64
    with engine.connect() as conn:
        for row in conn.execute(
            select(_AUDIT).where(_AUDIT.c.tenant_id == tenant, _AUDIT.c.pair == pair).order_by(_AUDIT.c.id)
        ).mappings():
            at = row["at"] if row["at"].tzinfo else row["at"].replace(tzinfo=dt.UTC)
            body = {
                "at": at.isoformat(),
                "object": row["object"],
                "hub_id": row["hub_id"],
                "system": row["system"],
                "kind": row["kind"],
                "field": row["field"],
                "old": row["old"],
                "new": row["new"],
                "detail": row["detail"],
            }
            digest = hashlib.sha256(
                (prev + json.dumps(body, sort_keys=True, ensure_ascii=False)).encode()
            ).hexdigest()
            if row["prev_hash"] != prev or row["hash"] != digest:
                return int(row["id"])
            prev = row["hash"]
    return None


def _agrees(values: Mapping[str, Any], snapshot: Mapping[str, Any]) -> bool:
    """True when every value read equals the base (a value the base lacks counts as a change)."""
    try:
        # Both sides are canonical (text, None, bool): plain equality is the merge's equality.
        return values.items() <= snapshot.items()
    except TypeError:  # an unhashable value (a list of lines): compare one by one
        return all(k in snapshot and same(v, snapshot[k]) for k, v in values.items())


def _not_newer(modified: dt.datetime | None, seen: dt.datetime | None) -> bool:
    """True when a record's modification time is known and not after the one last read."""
    if modified is None or seen is None:
        return False
    if seen.tzinfo is None:
        seen = seen.replace(tzinfo=dt.UTC)
    return (modified if modified.tzinfo else modified.replace(tzinfo=dt.UTC)) <= seen


def _is_stale(record: SpokeRecord, link: Mapping[str, Any]) -> bool:
    seen = link.get("source_modified_at")
    if record.modified_at is None or seen is None:
        return False
    if seen.tzinfo is None:
        seen = seen.replace(tzinfo=dt.UTC)
    mod = record.modified_at if record.modified_at.tzinfo else record.modified_at.replace(tzinfo=dt.UTC)
    return bool(mod < seen)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _stamps_from_json(raw: Mapping[str, Any] | None) -> dict[str, FieldStamp]:
    stamps: dict[str, FieldStamp] = {}
    for name, (origin, at, author) in (raw or {}).items():
        stamps[name] = FieldStamp(origin, dt.datetime.fromisoformat(at) if at else None, author)
    return stamps


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
