"""Core-table handles of the vault's ORM models.

The vault works with explicit Core statements, not the ORM session: locking order and one-statement
snapshots matter here. Every vault module (and tests that inspect the raw rows) uses these handles.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table

from tongbu.vault.models import (
    VaultAuditEvent,
    VaultDataKey,
    VaultMasterKey,
    VaultRotation,
    VaultSecret,
    VaultState,
    VaultToken,
)

FORMAT_VERSION = 1
# The single row of ``vault_state``.
STATE_ID = 1

state_t = cast(Table, VaultState.__table__)
master_t = cast(Table, VaultMasterKey.__table__)
datakey_t = cast(Table, VaultDataKey.__table__)
secret_t = cast(Table, VaultSecret.__table__)
token_t = cast(Table, VaultToken.__table__)
audit_t = cast(Table, VaultAuditEvent.__table__)
rotation_t = cast(Table, VaultRotation.__table__)

__all__ = [
    "FORMAT_VERSION",
    "STATE_ID",
    "audit_t",
    "datakey_t",
    "master_t",
    "rotation_t",
    "secret_t",
    "state_t",
    "token_t",
]
