"""The embedded CRM's own API: create, edit and delete hub records with an author and an origin.

Every change goes into ``hub_changes`` (the CRM's history) in the same transaction as the row, so the
two-way engine knows who changed which field and when. Creating an account runs the real-time
duplicate check the requirements ask for (统一社会信用代码, then the ERP number): a second account with
the same credit code is refused with the id of the first, even when two creates race.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, select, text, update

from tongbu.canon import canon_record
from tongbu.config import DEFAULT_TENANT
from tongbu.hub.models import HUB_OBJECTS, SYSTEM_COLUMNS, HubChange
from tongbu.hub.store import HubError, hub_table, row_hash

#: The origin label of edits made through this API (the embedded CRM).
CRM_ORIGIN = "hub"
#: Columns that identify a record for the duplicate check, per object, strongest first.
DUPLICATE_KEYS: dict[str, tuple[str, ...]] = {
    "accounts": ("credit_code", "number"),
    "leads": ("credit_code",),
}
_CHANGES = HubChange.__table__
_READ_ONLY = SYSTEM_COLUMNS | {"source_system", "source_id", "extra"}


class DuplicateRecordError(HubError):
    """A create that would duplicate an existing record (same credit code or number)."""

    def __init__(self, object_name: str, key: str, value: Any, existing_id: int) -> None:
        super().__init__(
            f"{object_name}: a record with {key} {value!r} already exists (id {existing_id}); edit that one instead"
        )
        self.existing_id = existing_id


class StaleRecordError(HubError):
    """An edit made against a version of the record that is no longer current (optimistic concurrency).

    ``current`` is the record's version now (its :meth:`CrmApi.etag`): read the record again, merge,
    and retry with that version.
    """

    def __init__(self, object_name: str, hub_id: int, current: str) -> None:
        super().__init__(
            f"{object_name} {hub_id} was changed since you read it (now version {current}); "
            "read it again and retry"
        )
        self.current = current


@dataclass(frozen=True)
class Change:
    """One recorded edit of a hub record."""

    id: int
    object: str
    hub_id: int
    op: str
    values: dict[str, Any]
    author: str
    origin: str
    at: dt.datetime


def business_columns(object_name: str) -> list[str]:
    """The columns an edit may set (everything but identity and bookkeeping)."""
    return [c.name for c in hub_table(object_name).columns if c.name not in _READ_ONLY]


class CrmApi:
    """Edits of the embedded CRM, each recorded with its author and origin."""

    def __init__(self, engine: Engine, tenant: str = DEFAULT_TENANT) -> None:
        self.engine = engine
        self.tenant = tenant

    # -- writes ---------------------------------------------------------------------------------------
    def create(
        self,
        object_name: str,
        values: Mapping[str, Any],
        *,
        author: str,
        origin: str = CRM_ORIGIN,
        source_id: str | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Create a record; returns its hub id. Refuses a duplicate of an existing one."""
        fields = self._checked(object_name, values)
        if conn is None:
            with self.engine.begin() as own:
                return self.create(
                    object_name, values, author=author, origin=origin, source_id=source_id, conn=own
                )
        table = hub_table(object_name)
        self._lock_keys(conn, object_name, fields)
        now = dt.datetime.now(dt.UTC)
        row = {
            **fields,
            "tenant_id": self.tenant,
            "source_system": origin,
            "source_id": source_id or f"new-{now.timestamp():.6f}-{id(fields):x}",
            "row_hash": self._row_hash(object_name, fields),
            "created_at": now,
            "updated_at": now,
        }
        hub_id = int(conn.execute(insert(table).values(**row).returning(table.c.id)).scalar_one())
        if source_id is None:
            conn.execute(update(table).where(table.c.id == hub_id).values(source_id=str(hub_id)))
        self._check_duplicates(conn, object_name, fields, hub_id)
        self._record(conn, object_name, hub_id, "create", fields, author, origin, now)
        return hub_id

    def update(
        self,
        object_name: str,
        hub_id: int,
        values: Mapping[str, Any],
        *,
        author: str,
        origin: str = CRM_ORIGIN,
        conn: Connection | None = None,
        if_match: str | None = None,
    ) -> dict[str, Any]:
        """Edit fields of a record; returns the fields that really changed (nothing is written otherwise).

        ``if_match``: the record's version (:meth:`etag`) the edit was made against; a record changed
        since (by a sync, another user, or directly in the database) raises
        :class:`StaleRecordError` and nothing is written, so a racing edit is never lost.
        """
        fields = self._checked(object_name, values)
        if conn is None:
            with self.engine.begin() as own:
                return self.update(
                    object_name, hub_id, values, author=author, origin=origin, conn=own, if_match=if_match
                )
        table = hub_table(object_name)
        current = self.get(object_name, hub_id, conn=conn, lock=if_match is not None)
        if current is None or current.get("deleted_at") is not None:
            raise HubError(f"{object_name} {hub_id}: no such record (or it was deleted)")
        if if_match is not None and self.etag(object_name, current) != if_match:
            raise StaleRecordError(object_name, hub_id, self.etag(object_name, current))
        changed = {k: v for k, v in fields.items() if current.get(k) != v}
        if not changed:
            return {}
        now = dt.datetime.now(dt.UTC)
        merged = {**current, **changed}
        conn.execute(
            update(table)
            .where(table.c.id == hub_id, table.c.tenant_id == self.tenant)
            .values(**changed, row_hash=self._row_hash(object_name, merged), updated_at=now)
        )
        self._record(conn, object_name, hub_id, "update", changed, author, origin, now)
        return changed

    def delete(
        self,
        object_name: str,
        hub_id: int,
        *,
        author: str,
        origin: str = CRM_ORIGIN,
        conn: Connection | None = None,
    ) -> bool:
        """Soft-delete a record (the two-way engine applies the object's delete policy to its links)."""
        if conn is None:
            with self.engine.begin() as own:
                return self.delete(object_name, hub_id, author=author, origin=origin, conn=own)
        table = hub_table(object_name)
        now = dt.datetime.now(dt.UTC)
        done = conn.execute(
            update(table)
            .where(table.c.id == hub_id, table.c.tenant_id == self.tenant, table.c.deleted_at.is_(None))
            .values(deleted_at=now, updated_at=now)
        ).rowcount
        if done:
            self._record(conn, object_name, hub_id, "delete", {}, author, origin, now)
        return bool(done)

    # -- reads ----------------------------------------------------------------------------------------
    def get(
        self, object_name: str, hub_id: int, *, conn: Connection | None = None, lock: bool = False
    ) -> dict[str, Any] | None:
        """One record by hub id, as a dict (deleted ones too, with ``deleted_at`` set).

        ``lock`` (inside ``conn``'s transaction): hold the row until it commits (``FOR UPDATE`` on
        PostgreSQL; SQLite serialises writers already).
        """
        table = hub_table(object_name)
        q = select(table).where(table.c.id == hub_id, table.c.tenant_id == self.tenant)
        if lock:
            q = q.with_for_update()
        if conn is None:
            with self.engine.connect() as own:
                row = own.execute(q).mappings().first()
        else:
            row = conn.execute(q).mappings().first()
        return dict(row) if row is not None else None

    def changes(
        self,
        object_name: str,
        hub_ids: Sequence[int] | None = None,
        *,
        after: int = 0,
        conn: Connection | None = None,
    ) -> list[Change]:
        """Recorded changes (oldest first), for some records or all, after change id ``after``."""
        q = select(_CHANGES).where(
            _CHANGES.c.tenant_id == self.tenant, _CHANGES.c.object == object_name, _CHANGES.c.id > after
        )
        if hub_ids is not None:
            q = q.where(_CHANGES.c.hub_id.in_(list(hub_ids)))
        q = q.order_by(_CHANGES.c.id)
        if conn is None:
            with self.engine.connect() as own:
                rows = own.execute(q).mappings().all()
        else:
            rows = conn.execute(q).mappings().all()
        return [
            Change(
                r["id"],
                r["object"],
                r["hub_id"],
                r["op"],
                dict(r["values"] or {}),
                r["author"],
                r["origin"],
                r["at"],
            )
            for r in rows
        ]

    def etag(self, object_name: str, record: Mapping[str, Any]) -> str:
        """The version of a record: a hash of its business fields and its deletion, computed from the
        values (so an edit made directly in the database, which leaves ``row_hash`` alone, changes it too).
        """
        deleted = record.get("deleted_at")
        return self._row_hash(object_name, record) + ("-d" if deleted is not None else "")

    # -- internals ------------------------------------------------------------------------------------
    def _checked(self, object_name: str, values: Mapping[str, Any]) -> dict[str, Any]:
        if object_name not in HUB_OBJECTS:
            raise HubError(
                f"unknown CRM object {object_name!r}; known objects: {', '.join(sorted(HUB_OBJECTS))}"
            )
        allowed = set(business_columns(object_name))
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise HubError(f"{object_name}: no field {unknown[0]!r} (fields: {', '.join(sorted(allowed))})")
        return dict(values)

    def _row_hash(self, object_name: str, row: Mapping[str, Any]) -> str:
        columns = business_columns(object_name)
        return row_hash(dict(row), columns)

    def _lock_keys(self, conn: Connection, object_name: str, fields: Mapping[str, Any]) -> None:
        # Two concurrent creates of one company must not both pass the duplicate check. PostgreSQL:
        # a transaction-scoped advisory lock per key value. SQLite serialises writers already (the
        # insert below takes the write lock before the check reads).
        if conn.dialect.name != "postgresql":
            return
        for key in DUPLICATE_KEYS.get(object_name, ()):
            value = fields.get(key)
            if value not in (None, ""):
                digest = hashlib.blake2b(f"{self.tenant}|{object_name}|{key}|{value}".encode(), digest_size=8)
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:k)"),
                    {"k": int.from_bytes(digest.digest(), "big", signed=True)},
                )

    def _check_duplicates(
        self, conn: Connection, object_name: str, fields: Mapping[str, Any], hub_id: int
    ) -> None:
        table = hub_table(object_name)
        for key in DUPLICATE_KEYS.get(object_name, ()):
            value = fields.get(key)
            if value in (None, ""):
                continue
            first = conn.execute(
                select(func.min(table.c.id)).where(
                    and_(
                        table.c.tenant_id == self.tenant,
                        table.c[key] == value,
                        table.c.deleted_at.is_(None),
                        table.c.id != hub_id,
                    )
                )
            ).scalar_one()
            if first is not None:
                raise DuplicateRecordError(object_name, key, value, int(first))

    def _record(
        self,
        conn: Connection,
        object_name: str,
        hub_id: int,
        op: str,
        values: Mapping[str, Any],
        author: str,
        origin: str,
        at: dt.datetime,
    ) -> None:
        conn.execute(
            insert(_CHANGES).values(
                tenant_id=self.tenant,
                object=object_name,
                hub_id=hub_id,
                op=op,
                values=canon_record(values),
                author=author,
                origin=origin,
                at=at,
            )
        )
