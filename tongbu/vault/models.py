"""The vault's tables, on the shared :class:`tongbu.db.Base`.

Nothing in these tables is a secret in clear: values and tokens are AES-GCM ciphertexts, data keys are
wrapped by the master key, and everything else (names, versions, timestamps, key check values, KDF
salts, the manifest) is metadata that is safe to read but authenticated where tampering would matter.
The Alembic migration ``0002_vault`` creates exactly these definitions.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tongbu.db import Base

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias); PostgreSQL gets a BIGINT.
AuditId = BigInteger().with_variant(Integer(), "sqlite")


class VaultState(Base):
    """One row per database: the vault's identity, current key version and the manifest.

    ``generation`` increases on every write; bumping it is also how writers serialise (the UPDATE
    takes SQLite's write lock or PostgreSQL's row lock before anything is read). ``manifest_body`` lists
    every secret's name, version, key version and ciphertext digest; ``manifest_mac`` is an HMAC over it
    with a key derived from the vault key of ``manifest_key_version``.
    """

    __tablename__ = "vault_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    vault_id: Mapped[str] = mapped_column(String(32), nullable=False)
    format_version: Mapped[int] = mapped_column(Integer, nullable=False)
    current_key_version: Mapped[int] = mapped_column(Integer, nullable=False)
    generation: Mapped[int] = mapped_column(BigInteger, nullable=False)
    manifest_key_version: Mapped[int] = mapped_column(Integer, nullable=False)
    manifest_body: Mapped[str] = mapped_column(Text, nullable=False)
    manifest_mac: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class VaultMasterKey(Base):
    """Each master key the vault has known: how to recognise it, never the key itself.

    ``check_value`` is an HMAC of a fixed label under a key derived from the master key: it lets us
    say "wrong master key" (or "retired by rotation") instead of a bare decryption failure.
    ``kdf_params`` holds the Argon2id salt and costs for passphrase keys.
    """

    __tablename__ = "vault_master_keys"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    check_value: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    kdf_params: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class VaultDataKey(Base):
    """A data key (one per key version) wrapped by one master key.

    During a rotation each of the two data keys is wrapped by both master keys, so processes holding
    either key keep working; finishing the rotation deletes every wrapping by the old master key.
    """

    __tablename__ = "vault_data_keys"

    key_version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    wrapped_by: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class VaultSecret(Base):
    """One secret value: ``(tenant, connection, field)`` → AES-GCM ciphertext.

    ``version`` counts writes of this secret and is bound into the associated data (with the tenant,
    connection, field and key version), so a ciphertext is only valid in exactly this place.
    """

    __tablename__ = "vault_secrets"
    __table_args__ = (
        UniqueConstraint("tenant", "connection", "field"),
        Index("ix_vault_secrets_key_version", "key_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(100), nullable=False)
    connection: Mapped[str] = mapped_column(String(100), nullable=False)
    field: Mapped[str] = mapped_column(String(200), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    key_version: Mapped[int] = mapped_column(Integer, nullable=False)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_by: Mapped[str] = mapped_column(String(200), nullable=False)


class VaultToken(Base):
    """A cached short-lived token (access token, session), encrypted, with expiry and refresh lease.

    ``lease_owner``/``lease_until`` implement single-flight refresh across processes by
    compare-and-set; ``refresh_in_flight`` records which refresh-token version a refresh call is
    using, so a worker that finds it set after the lease expired knows that call died mid-flight.
    """

    __tablename__ = "vault_tokens"
    __table_args__ = (UniqueConstraint("tenant", "connection", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(100), nullable=False)
    connection: Mapped[str] = mapped_column(String(100), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    token_version: Mapped[int] = mapped_column(Integer, nullable=False)
    key_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    issued_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    refresh_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    refresh_in_flight: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class VaultAuditEvent(Base):
    """Who did what to which secret, when, and how it ended — never the value."""

    __tablename__ = "vault_audit"
    __table_args__ = (
        Index("ix_vault_audit_at", "at"),
        Index("ix_vault_audit_secret", "tenant", "connection", "field"),
    )

    id: Mapped[int] = mapped_column(AuditId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    action: Mapped[str] = mapped_column(String(40), nullable=False)
    tenant: Mapped[str | None] = mapped_column(String(100), nullable=True)
    connection: Mapped[str | None] = mapped_column(String(100), nullable=True)
    field: Mapped[str | None] = mapped_column(String(200), nullable=True)
    key_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    outcome: Mapped[str] = mapped_column(String(60), nullable=False)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class VaultRotation(Base):
    """Progress of a master-key rotation, so a killed rotation resumes where it stopped."""

    __tablename__ = "vault_rotations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    from_version: Mapped[int] = mapped_column(Integer, nullable=False)
    to_version: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    total: Mapped[int] = mapped_column(Integer, nullable=False)
    done: Mapped[int] = mapped_column(Integer, nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
