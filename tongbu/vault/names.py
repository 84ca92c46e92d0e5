"""Secret names and metadata: ``tenant`` / ``connection`` . ``field``, validated once, shown safely."""

from __future__ import annotations

import getpass
import os
import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tongbu.config import DEFAULT_TENANT
from tongbu.vault.errors import InvalidSecretNameError, SecretTamperedError

_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_CONNECTION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
_FIELD_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")


def utcnow() -> datetime:
    """Timezone-aware now (UTC)."""
    return datetime.now(UTC)


def default_actor() -> str:
    """Who is acting: ``$TONGBU_ACTOR`` (e.g. a Dagster run id) or ``user@host``."""
    explicit = os.environ.get("TONGBU_ACTOR")
    if explicit:
        return explicit[:200]
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - containers without a passwd entry
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"[:200]


@dataclass(frozen=True, order=True)
class SecretName:
    """Where a secret lives: ``tenant`` / ``connection`` . ``field`` (e.g. ``default/kingdee.app_secret``)."""

    tenant: str
    connection: str
    field: str

    @classmethod
    def parse(cls, name: str, tenant: str = DEFAULT_TENANT) -> SecretName:
        """Parse ``"<connection>.<field>"`` (the field may itself contain dots)."""
        if not isinstance(name, str) or "." not in name:
            raise InvalidSecretNameError(
                "secret names are <connection>.<field>",
                hint="for example `tongbu vault set kingdee.app_secret`",
            )
        connection, fld = name.split(".", 1)
        return cls.of(tenant, connection, fld)

    @classmethod
    def of(cls, tenant: str, connection: str, fld: str) -> SecretName:
        """Validate each part (letters, digits, ``_``, ``-``; dots in tenant and field)."""
        if not _TENANT_RE.fullmatch(tenant or ""):
            raise InvalidSecretNameError(
                f"invalid tenant name {tenant[:40]!r}", hint="use letters, digits, _ . -"
            )
        if not _CONNECTION_RE.fullmatch(connection or ""):
            raise InvalidSecretNameError(
                f"invalid connection name {connection[:40]!r}", hint="use letters, digits, _ and -"
            )
        if not _FIELD_RE.fullmatch(fld or ""):
            raise InvalidSecretNameError(
                f"invalid field name {fld[:40]!r}", hint="use letters, digits, _ . -"
            )
        return cls(tenant, connection, fld)

    @property
    def short(self) -> str:
        """``connection.field`` — the form used in ``vault:`` references and CLI arguments."""
        return f"{self.connection}.{self.field}"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.tenant, self.connection, self.field)

    def cli_hint(self) -> str:
        """The command that re-enters this secret."""
        tenant = "" if self.tenant == DEFAULT_TENANT else f" --tenant {self.tenant}"
        return f"tongbu vault set {self.short}{tenant}"

    def __str__(self) -> str:
        return f"{self.tenant}/{self.short}"


@dataclass(frozen=True)
class SecretInfo:
    """Metadata of one secret (what ``tongbu vault list`` shows) — never the value."""

    name: SecretName
    version: int
    key_version: int
    created_at: datetime
    updated_at: datetime
    updated_by: str


def secret_info(row: Any) -> SecretInfo:
    """The :class:`SecretInfo` of one ``vault_secrets`` row."""
    return SecretInfo(
        name=SecretName(row.tenant, row.connection, row.field),
        version=row.version,
        key_version=row.key_version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def tampered(name: SecretName, why: str) -> SecretTamperedError:
    """The error for a secret whose row or ciphertext cannot be trusted, with the way to repair it."""
    return SecretTamperedError(
        f"secret {name} cannot be trusted: {why}",
        hint=f"re-enter it with `{name.cli_hint()}` (or restore it from a backup), then run `tongbu vault verify`",
        secret=str(name),
    )


__all__ = ["SecretInfo", "SecretName", "default_actor", "secret_info", "tampered", "utcnow"]
