"""The vault's audit trail: one row per read, write, delete, verification and rotation step.

Rows name the actor and the secret, never the value. Writes that belong to a vault transaction go
through :meth:`AuditLog.record` on that transaction's connection (so they commit or roll back with
it); reads audit afterwards with :meth:`AuditLog.record_many`, which fails closed: if the row cannot be
written, the read fails.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from tongbu.config import DEFAULT_TENANT
from tongbu.vault.errors import AuditError
from tongbu.vault.names import SecretName, utcnow
from tongbu.vault.tables import audit_t

log = logging.getLogger("tongbu.vault")


class AuditLog:
    """Appends audit rows for one vault (``actor`` is who acts: a user, a Dagster run, a worker)."""

    def __init__(self, engine: Engine, actor: str) -> None:
        self.engine = engine
        self.actor = actor

    def row(
        self,
        action: str,
        name: SecretName | None = None,
        outcome: str = "ok",
        key_version: int | None = None,
        detail: str | None = None,
    ) -> dict[str, Any]:
        """The values of one audit row (for :meth:`record_many`)."""
        return {
            "at": utcnow(),
            "actor": self.actor,
            "action": action,
            "tenant": name.tenant if name else None,
            "connection": name.connection if name else None,
            "field": name.field if name else None,
            "key_version": key_version,
            "outcome": outcome[:60],
            "detail": f"pid={os.getpid()}" + (f" {detail}" if detail else ""),
        }

    def record(
        self,
        conn: Connection,
        action: str,
        *,
        name: SecretName | None = None,
        outcome: str = "ok",
        key_version: int | None = None,
        detail: str | None = None,
    ) -> None:
        """Append one row inside the caller's transaction (it commits with the change it describes)."""
        conn.execute(insert(audit_t).values(**self.row(action, name, outcome, key_version, detail)))

    def record_many(self, rows: list[dict[str, Any]], *, fail_closed: bool = True) -> None:
        """Append rows in their own transaction; raise :class:`AuditError` on failure if ``fail_closed``."""
        if not rows:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(audit_t), rows)
        except Exception as exc:  # noqa: BLE001 - any storage failure means "not audited"
            if fail_closed:
                raise AuditError(
                    f"could not record the audit event for {rows[0]['action']} ({type(exc).__name__})",
                    hint="check the hub database is writable; the vault refuses unaudited access",
                ) from None
            log.warning("vault audit write failed (%s)", type(exc).__name__)

    def recent(
        self, *, limit: int = 100, name: str | None = None, tenant: str = DEFAULT_TENANT
    ) -> list[dict[str, Any]]:
        """The most recent events (newest first), optionally for one secret."""
        query = select(audit_t).order_by(audit_t.c.id.desc()).limit(limit)
        if name:
            sn = SecretName.parse(name, tenant)
            query = query.where(
                audit_t.c.tenant == sn.tenant,
                audit_t.c.connection == sn.connection,
                audit_t.c.field == sn.field,
            )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]


__all__ = ["AuditLog"]
