"""The :class:`Vault`: encrypted secrets in the hub database (SQLite or PostgreSQL).

Key hierarchy (envelope encryption)::

    master key (env var | 0600 key file | Argon2id(passphrase))   -- never in the database
      └─ HKDF → wrapping key ── wraps → data key v (one random 256-bit key per key version)
                                          ├─ HKDF(tenant) → per-tenant secret key → AES-GCM(secret)
                                          ├─ HKDF(tenant) → per-tenant token key  → AES-GCM(token)
                                          └─ HKDF → manifest MAC key

Each secret's associated data binds vault id, tenant, connection, field, the secret's write version
and the key version, so a ciphertext is valid in exactly one place. Writes are serialised by bumping
``vault_state.generation`` first (SQLite's write lock / PostgreSQL's row lock) and rewrite the manifest
in the same transaction; reads load the row and the manifest in one statement (one snapshot) and
check one against the other. Every read, write, delete, verification and rotation step appends an
audit row naming the actor and the secret, never the value; if that row cannot be written, the
operation fails (fail closed).
"""

from __future__ import annotations

import builtins
import getpass
import hashlib
import logging
import os
import re
import socket
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from pydantic import SecretStr
from sqlalchemy import Connection, Engine, Table, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from tongbu.config import DEFAULT_TENANT, database_url
from tongbu.db import get_engine
from tongbu.vault import crypto
from tongbu.vault import manifest as mf
from tongbu.vault.errors import (
    AuditError,
    ConcurrentUpdateError,
    InvalidSecretNameError,
    KeyVersionUnavailableError,
    ManifestError,
    MasterKeyError,
    MasterKeyRetiredError,
    SecretNotFoundError,
    SecretTamperedError,
    VaultAlreadyInitializedError,
    VaultError,
    VaultNotInitializedError,
    WrongMasterKeyError,
)
from tongbu.vault.keys import (
    KEY_ENV,
    KEY_FILE_ENV,
    PASSPHRASE_ENV,
    KdfParams,
    MasterKeySource,
    default_key_source,
)
from tongbu.vault.models import (
    VaultAuditEvent,
    VaultDataKey,
    VaultMasterKey,
    VaultRotation,
    VaultSecret,
    VaultState,
    VaultToken,
)
from tongbu.vault.redact import register_secret
from tongbu.vault.refs import Secret

log = logging.getLogger("tongbu.vault")

FORMAT_VERSION = 1
MAX_SECRET_BYTES = 64 * 1024
STATE_ID = 1

# Core tables: the vault works with explicit statements (locking order and snapshots matter here).
state_t = cast(Table, VaultState.__table__)
master_t = cast(Table, VaultMasterKey.__table__)
datakey_t = cast(Table, VaultDataKey.__table__)
secret_t = cast(Table, VaultSecret.__table__)
token_t = cast(Table, VaultToken.__table__)
audit_t = cast(Table, VaultAuditEvent.__table__)
rotation_t = cast(Table, VaultRotation.__table__)

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


@dataclass(frozen=True)
class Problem:
    """One finding of :meth:`Vault.verify`, naming the secret it concerns."""

    kind: str
    secret: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.secret}: {self.message}" if self.secret else self.message


@dataclass
class VerifyReport:
    """Result of :meth:`Vault.verify`: every problem found plus what was checked."""

    problems: list[Problem] = field(default_factory=list)
    secrets_checked: int = 0
    tokens_checked: int = 0
    generation: int = 0
    manifest_digest: str = ""
    key_version: int = 0
    rotation: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _StateRow:
    vault_id: str
    current_key_version: int
    generation: int
    manifest_key_version: int
    manifest_body: str
    manifest_mac: bytes
    written_generation: int = -1
    written_manifest: Any = None

    @classmethod
    def of(cls, row: Any) -> _StateRow:
        return cls(
            vault_id=row.vault_id,
            current_key_version=row.current_key_version,
            generation=row.generation,
            manifest_key_version=row.manifest_key_version,
            manifest_body=row.manifest_body,
            manifest_mac=bytes(row.manifest_mac),
        )


class Vault:
    """Encrypted secret storage for one hub database.

    ``Vault()`` uses the hub database (``TONGBU_DATABASE_URL`` / ``$TONGBU_HOME/hub.db``) and the master
    key from :func:`~tongbu.vault.keys.default_key_source`; both can be passed explicitly. The master
    key is only loaded when a value is encrypted or decrypted, so ``list`` and ``info`` work without it.
    Instances are thread-safe; share one per process.
    """

    def __init__(
        self,
        engine: Engine | str | None = None,
        *,
        key_source: MasterKeySource | None = None,
        actor: str | None = None,
    ) -> None:
        self.engine: Engine = engine if isinstance(engine, Engine) else get_engine(engine)
        self._key_source = key_source
        self.actor = (actor or default_actor())[:200]
        self._lock = threading.RLock()
        self._vault_id: str | None = None
        self._master_version: int | None = None
        self._wrap_key: bytes | None = None
        self._data_keys: dict[int, bytes] = {}
        self._derived: dict[tuple[int, str], bytes] = {}
        self._manifest_cache: tuple[int, bytes, mf.Manifest] | None = None

    def __repr__(self) -> str:
        return f"<Vault {self.location}>"

    # ----------------------------------------------------------------------------------------------
    # construction helpers

    @classmethod
    def initialize(
        cls,
        engine: Engine | str | None = None,
        *,
        key_source: MasterKeySource | None = None,
        actor: str | None = None,
    ) -> Vault:
        """Create the vault in a database that has none: first master key, first data key, empty manifest."""
        vault = cls(engine, key_source=key_source, actor=actor)
        source = vault.key_source
        source.check_location(vault.data_dirs())
        params = KdfParams.generate() if source.kind == "passphrase" else None
        material = source.material(params)
        vault_id = uuid.uuid4().hex
        data_key = crypto.new_key()
        now = utcnow()
        wrap_key = _wrap_key(material, vault_id)
        manifest = mf.Manifest(vault_id=vault_id, generation=1, key_version=1)
        body = manifest.body()
        mac_key = _manifest_key(data_key, vault_id)
        try:
            with vault.engine.begin() as conn:
                conn.execute(
                    insert(state_t).values(
                        id=STATE_ID,
                        vault_id=vault_id,
                        format_version=FORMAT_VERSION,
                        current_key_version=1,
                        generation=1,
                        manifest_key_version=1,
                        manifest_body=body,
                        manifest_mac=mf.mac(mac_key, body),
                        created_at=now,
                        updated_at=now,
                    )
                )
                conn.execute(
                    insert(master_t).values(
                        version=1,
                        kind=source.kind,
                        check_value=_check_value(material, vault_id),
                        kdf_params=params.to_json() if params else None,
                        status="active",
                        created_at=now,
                        created_by=vault.actor,
                    )
                )
                conn.execute(
                    insert(datakey_t).values(
                        key_version=1,
                        wrapped_by=1,
                        wrapped_key=_wrap(wrap_key, data_key, vault_id, key_version=1, wrapped_by=1),
                        created_at=now,
                    )
                )
                vault._audit(
                    conn, "init", outcome="ok", key_version=1, detail=f"master key from {source.description}"
                )
        except SAIntegrityError:
            raise VaultAlreadyInitializedError(
                f"{vault.location} already has a vault",
                hint="use it (`tongbu vault list`), or point TONGBU_DATABASE_URL at another database",
            ) from None
        with vault._lock:
            vault._vault_id, vault._master_version, vault._wrap_key = vault_id, 1, wrap_key
            vault._data_keys[1] = data_key
        log.info("vault initialised in %s (master key from %s)", vault.location, source.description)
        return vault

    @property
    def key_source(self) -> MasterKeySource:
        """The master key source (resolved from the environment on first use)."""
        if self._key_source is None:
            self._key_source = default_key_source()
        return self._key_source

    @property
    def location(self) -> str:
        """The database URL without any password, for messages."""
        return self.engine.url.render_as_string(hide_password=True)

    def data_dirs(self) -> list[Path]:
        """Folders that hold vault data; key files must live elsewhere."""
        dirs = [Path(os.environ.get("TONGBU_HOME") or Path.cwd() / ".tongbu")]
        if self.engine.url.get_backend_name() == "sqlite" and self.engine.url.database not in (
            None,
            "",
            ":memory:",
        ):
            dirs.append(Path(str(self.engine.url.database)).resolve().parent)
        return dirs

    def is_initialized(self) -> bool:
        """True when this database holds a vault."""
        with self.engine.connect() as conn:
            return conn.execute(select(state_t.c.id).where(state_t.c.id == STATE_ID)).first() is not None

    # ----------------------------------------------------------------------------------------------
    # keys

    def unlock(self) -> None:
        """Load and check the master key now (otherwise done on first use)."""
        self._unlock()

    def _unlock(self) -> None:
        with self._lock:
            if self._master_version is not None:
                return
            with self.engine.connect() as conn:
                state = conn.execute(select(state_t).where(state_t.c.id == STATE_ID)).first()
                if state is None:
                    raise VaultNotInitializedError(
                        f"{self.location} has no vault yet", hint="run `tongbu vault init` first"
                    )
                keys = conn.execute(select(master_t).order_by(master_t.c.version.desc())).all()
            source = self.key_source
            source.check_location(self.data_dirs())
            vault_id = state.vault_id
            matched = None
            raw_material: bytes | None = None
            tried_passphrase = 0
            for row in keys:
                if row.kind != source.kind:
                    continue
                if source.kind == "raw":
                    raw_material = raw_material or source.material()
                    material = raw_material
                else:
                    tried_passphrase += 1
                    if tried_passphrase > 3:  # each try costs an Argon2id run; old keys beyond 3 are noise
                        break
                    material = source.material(KdfParams.from_json(row.kdf_params))
                if crypto.constant_time_equal(_check_value(material, vault_id), bytes(row.check_value)):
                    matched = (row, material)
                    break
            if matched is None:
                current = next((r for r in keys if r.status == "active"), None)
                kind_hint = ""
                if current is not None and current.kind != source.kind:
                    kind_hint = (
                        " (this vault's master key is a passphrase; set TONGBU_VAULT_PASSPHRASE)"
                        if current.kind == "passphrase"
                        else " (this vault's master key is a raw key; set TONGBU_MASTER_KEY or a key file)"
                    )
                raise WrongMasterKeyError(
                    f"the master key from {source.description} does not open the vault in {self.location}{kind_hint}",
                    hint="use the key created by `tongbu vault init` or by the last completed `tongbu vault rotate`",
                )
            row, material = matched
            if row.status in ("retired", "aborted"):
                raise _retired(source, row)
            self._vault_id = vault_id
            self._master_version = row.version
            self._wrap_key = _wrap_key(material, vault_id)

    def _data_key(self, key_version: int, *, reload: bool = True) -> bytes:
        with self._lock:
            key = self._data_keys.get(key_version)
            if key is not None:
                return key
            self._unlock()
            assert self._wrap_key is not None and self._vault_id is not None
            with self.engine.connect() as conn:
                row = conn.execute(
                    select(datakey_t.c.wrapped_key).where(
                        datakey_t.c.key_version == key_version, datakey_t.c.wrapped_by == self._master_version
                    )
                ).first()
            if row is None:
                # A process that sat idle through a whole rotation still holds the old master key:
                # say that plainly rather than "data key not available".
                self._raise_if_master_retired()
                raise KeyVersionUnavailableError(
                    f"data key version {key_version} is not available to the master key from "
                    f"{self.key_source.description}",
                    hint="if a rotation finished, use the new master key; otherwise run `tongbu vault verify`",
                )
            try:
                key = crypto.open_sealed(
                    self._wrap_key,
                    bytes(row.wrapped_key),
                    _wrap_aad(self._vault_id, key_version=key_version, wrapped_by=self._master_version or 0),
                )
            except crypto.AuthenticationFailed:
                raise KeyVersionUnavailableError(
                    f"the wrapped data key version {key_version} failed authentication (tampered key table)",
                    hint="restore the vault_data_keys table from a backup, then run `tongbu vault verify`",
                ) from None
            self._data_keys[key_version] = key
            return key

    def _subkey(self, key_version: int, purpose: str) -> bytes:
        cache_key = (key_version, purpose)
        with self._lock:
            key = self._derived.get(cache_key)
            if key is None:
                assert self._vault_id is not None
                key = crypto.derive_key(
                    self._data_key(key_version), f"tongbu-vault/{purpose}/v1", salt=self._vault_id.encode()
                )
                self._derived[cache_key] = key
            return key

    def _secret_key(self, key_version: int, tenant: str) -> bytes:
        return self._subkey(key_version, f"secret/{tenant}")

    def _token_key(self, key_version: int, tenant: str) -> bytes:
        return self._subkey(key_version, f"token/{tenant}")

    def _manifest_key(self, key_version: int) -> bytes:
        return self._subkey(key_version, "manifest")

    def _raise_if_master_retired(self) -> None:
        """Raise :class:`MasterKeyRetiredError` if a rotation retired the master key we unlocked with."""
        with self.engine.connect() as conn:
            row = conn.execute(select(master_t).where(master_t.c.version == self._master_version)).first()
        if row is not None and row.status in ("retired", "aborted"):
            raise _retired(self.key_source, row)

    def _forget_keys(self) -> None:
        """Drop cached key material (after a rotation changed the key table)."""
        with self._lock:
            self._data_keys.clear()
            self._derived.clear()
            self._manifest_cache = None

    # ----------------------------------------------------------------------------------------------
    # sealing

    def _secret_aad(self, name: SecretName, version: int, key_version: int) -> bytes:
        assert self._vault_id is not None
        return crypto.aad(
            "secret",
            vault=self._vault_id,
            tenant=name.tenant,
            connection=name.connection,
            field=name.field,
            version=version,
            key_version=key_version,
        )

    def _seal_secret(self, name: SecretName, value: str, version: int, key_version: int) -> bytes:
        return crypto.seal(
            self._secret_key(key_version, name.tenant),
            value.encode("utf-8"),
            self._secret_aad(name, version, key_version),
            key_version=key_version,
        )

    def _open_secret(self, name: SecretName, ciphertext: bytes, version: int, key_version: int) -> str:
        """Decrypt one secret row; any failure becomes a :class:`SecretTamperedError` naming it."""
        try:
            header = crypto.parse_header(ciphertext)
        except crypto.AuthenticationFailed:
            raise _tampered(name, "its ciphertext is not in the vault format") from None
        if header.key_version != key_version:
            raise _tampered(name, "its key-version column disagrees with the ciphertext header")
        key = self._secret_key(key_version, name.tenant)
        try:
            return crypto.open_sealed(key, ciphertext, self._secret_aad(name, version, key_version)).decode(
                "utf-8"
            )
        except (crypto.AuthenticationFailed, UnicodeDecodeError):
            raise _tampered(
                name, "its ciphertext failed authentication (modified, or moved from another secret)"
            ) from None

    # ----------------------------------------------------------------------------------------------
    # manifest

    def _manifest_for(self, generation: int, mac: bytes) -> mf.Manifest | None:
        """The already-authenticated manifest of this generation, if we hold it."""
        cached = self._manifest_cache
        if cached and cached[0] == generation and cached[1] == mac:
            return cached[2]
        return None

    def _checked_manifest(self, state: _StateRow) -> mf.Manifest:
        """Parse and authenticate the manifest of ``state`` (cached per generation and MAC)."""
        cached = self._manifest_cache
        if cached and cached[0] == state.generation and cached[1] == state.manifest_mac:
            return cached[2]
        mac_key = self._manifest_key(state.manifest_key_version)
        if not mf.verify(mac_key, state.manifest_body, state.manifest_mac):
            raise ManifestError(
                "the vault manifest failed authentication (edited outside tongbu)",
                hint="run `tongbu vault verify` to see which secrets are affected",
            )
        try:
            manifest = mf.Manifest.parse(state.manifest_body)
        except (ValueError, KeyError, TypeError):
            raise ManifestError(
                "the vault manifest is unreadable", hint="run `tongbu vault verify`"
            ) from None
        if manifest.vault_id != state.vault_id or manifest.generation != state.generation:
            raise ManifestError(
                "the vault manifest belongs to another vault or generation (restored from elsewhere)",
                hint="run `tongbu vault verify`",
            )
        self._manifest_cache = (state.generation, state.manifest_mac, manifest)
        return manifest

    def _write_manifest(self, conn: Connection, state: _StateRow, manifest: mf.Manifest) -> None:
        manifest.generation = state.generation
        manifest.key_version = state.current_key_version
        body = manifest.body()
        tag = mf.mac(self._manifest_key(state.current_key_version), body)
        conn.execute(
            update(state_t)
            .where(state_t.c.id == STATE_ID)
            .values(
                manifest_body=body,
                manifest_mac=tag,
                manifest_key_version=state.current_key_version,
                updated_at=utcnow(),
            )
        )
        state.manifest_body, state.manifest_mac = body, tag
        state.manifest_key_version = state.current_key_version
        state.written_generation = state.generation
        state.written_manifest = manifest

    @contextmanager
    def _write_txn(
        self, *, check_manifest: bool = True, secure_delete: bool = False
    ) -> Iterator[tuple[Connection, _StateRow, mf.Manifest]]:
        """A write transaction that holds the vault's write lock and the authenticated manifest.

        Bumping ``generation`` is the first statement, so SQLite takes its write lock (waiting out the
        busy timeout) and PostgreSQL locks the state row before we read anything: writers serialise
        and every manifest update starts from the latest committed one.
        """
        self._unlock()
        with self.engine.begin() as conn:
            if secure_delete and conn.dialect.name == "sqlite":
                # Deleted key wrappings must not linger in free pages where the retired key could
                # still open them; the pragma zeroes freed content (it stays on for this connection).
                conn.exec_driver_sql("PRAGMA secure_delete = ON")
            bumped = conn.execute(
                update(state_t).where(state_t.c.id == STATE_ID).values(generation=state_t.c.generation + 1)
            )
            if bumped.rowcount == 0:
                raise VaultNotInitializedError(
                    f"{self.location} has no vault yet", hint="run `tongbu vault init`"
                )
            state = _StateRow.of(conn.execute(select(state_t).where(state_t.c.id == STATE_ID)).one())
            if check_manifest:
                # Authenticate against the pre-bump generation the manifest was written with.
                previous = _StateRow(**{**state.__dict__, "generation": state.generation - 1})
                manifest = self._checked_manifest(previous)
                manifest = mf.Manifest(
                    manifest.vault_id, manifest.generation, manifest.key_version, dict(manifest.entries)
                )
            else:
                try:
                    manifest = mf.Manifest.parse(state.manifest_body)
                except (ValueError, KeyError, TypeError):
                    manifest = mf.Manifest(state.vault_id, state.generation, state.current_key_version)
            yield conn, state, manifest
            if state.generation != state.written_generation:
                # The bump is committed with this transaction, so the manifest must carry the new
                # generation even when the caller changed nothing (an empty rotation batch).
                self._write_manifest(conn, state, manifest)
        # Committed: the manifest we just signed is the authenticated current one (saves re-parsing).
        self._manifest_cache = (state.generation, state.manifest_mac, state.written_manifest)

    # ----------------------------------------------------------------------------------------------
    # audit

    def _audit(
        self,
        conn: Connection,
        action: str,
        *,
        name: SecretName | None = None,
        outcome: str = "ok",
        key_version: int | None = None,
        detail: str | None = None,
    ) -> None:
        conn.execute(insert(audit_t).values(**self._audit_row(action, name, outcome, key_version, detail)))

    def _audit_row(
        self, action: str, name: SecretName | None, outcome: str, key_version: int | None, detail: str | None
    ) -> dict[str, Any]:
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

    def _audit_many(self, rows: list[dict[str, Any]], *, fail_closed: bool = True) -> None:
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

    def audit_log(
        self, *, limit: int = 100, name: str | None = None, tenant: str = DEFAULT_TENANT
    ) -> list[dict[str, Any]]:
        """The most recent audit events (newest first), optionally for one secret."""
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

    # ----------------------------------------------------------------------------------------------
    # reading

    def get(self, name: str, *, tenant: str = DEFAULT_TENANT) -> Secret:
        """Decrypt one secret (``"<connection>.<field>"``); the value is registered for redaction."""
        return self.get_many([name], tenant=tenant)[name]

    def get_many(
        self, names: Iterable[str], *, tenant: str = DEFAULT_TENANT, action: str = "read"
    ) -> dict[str, Secret]:
        """Decrypt several secrets of one tenant in one snapshot (one audit row each)."""
        wanted = {n: SecretName.parse(n, tenant) for n in names}
        if not wanted:
            return {}
        try:
            values = self._read(list(wanted.values()))
        except VaultError as exc:
            failed = exc.secret
            self._audit_many(
                [
                    self._audit_row(action, sn, type(exc).__name__, None, None)
                    for sn in wanted.values()
                    if failed is None or str(sn) == failed
                ],
                fail_closed=False,
            )
            if isinstance(exc, MasterKeyError) and exc.secret is None and len(wanted) == 1:
                sn = next(iter(wanted.values()))
                raise type(exc)(
                    f"cannot read secret {sn}: {exc.message}", hint=exc.hint, secret=str(sn)
                ) from None
            raise
        self._audit_many([self._audit_row(action, sn, "ok", values[sn][1], None) for sn in wanted.values()])
        out: dict[str, Secret] = {}
        for short, sn in wanted.items():
            value = values[sn][0]
            register_secret(value)
            out[short] = Secret(value, ref=f"vault:{sn.short}")
        return out

    def _read(
        self, names: list[SecretName], *, retried: bool = False, attempt: int = 0
    ) -> dict[SecretName, tuple[str, int]]:
        self._unlock()
        tenants = {n.tenant for n in names}
        connections = {n.connection for n in names}
        query = (
            select(
                state_t.c.vault_id,
                state_t.c.current_key_version,
                state_t.c.generation,
                state_t.c.manifest_key_version,
                state_t.c.manifest_mac,
                secret_t.c.tenant,
                secret_t.c.connection,
                secret_t.c.field,
                secret_t.c.version,
                secret_t.c.key_version,
                secret_t.c.ciphertext,
            )
            .select_from(
                # One statement = one snapshot on SQLite and PostgreSQL alike, so the row and the
                # manifest we check it against were committed together.
                state_t.outerjoin(
                    secret_t, and_(secret_t.c.tenant.in_(tenants), secret_t.c.connection.in_(connections))
                )
            )
            .where(state_t.c.id == STATE_ID)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            raise VaultNotInitializedError(
                f"{self.location} has no vault yet", hint="run `tongbu vault init`"
            )
        first = rows[0]
        by_key = {(r.tenant, r.connection, r.field): r for r in rows if r.tenant is not None}
        try:
            manifest = self._manifest_for(first.generation, bytes(first.manifest_mac))
            if manifest is None:
                # The manifest body is fetched apart from the rows (joining it would copy it into
                # every row). Consistent only if it is the same generation the rows were read at;
                # otherwise a writer committed in between and we read again.
                with self.engine.connect() as conn:
                    state = _StateRow.of(conn.execute(select(state_t).where(state_t.c.id == STATE_ID)).one())
                if (state.generation, state.manifest_mac) != (first.generation, bytes(first.manifest_mac)):
                    if attempt >= 20:
                        raise VaultError(
                            "the vault changed on every attempt to read it",
                            hint="retry when writes calm down",
                        )
                    return self._read(names, retried=retried, attempt=attempt + 1)
                manifest = self._checked_manifest(state)
            out: dict[SecretName, tuple[str, int]] = {}
            for sn in names:
                row = by_key.get(sn.key)
                expected = manifest.entries.get(sn.key)
                if row is None and expected is None:
                    raise SecretNotFoundError(
                        f"secret {sn} does not exist",
                        hint=f"create it with `{sn.cli_hint()}`",
                        secret=str(sn),
                    )
                if row is None:
                    raise _tampered(
                        sn, "it was deleted outside tongbu (it is in the manifest but not in the table)"
                    )
                ciphertext = bytes(row.ciphertext)
                if expected is None:
                    raise _tampered(sn, "it is not in the manifest (inserted or renamed outside tongbu)")
                if row.version < expected.version:
                    raise _tampered(
                        sn,
                        f"it was rolled back to version {row.version} (the manifest expects {expected.version})",
                    )
                if (row.version, row.key_version, crypto.digest(ciphertext)) != (
                    expected.version,
                    expected.key_version,
                    expected.digest,
                ):
                    raise _tampered(sn, "its ciphertext differs from the one recorded in the manifest")
                out[sn] = (self._open_secret(sn, ciphertext, row.version, row.key_version), row.key_version)
            return out
        except KeyVersionUnavailableError:
            if retried:
                raise
            # A rotation may have finished between our read and the key lookup: reload and retry once.
            self._forget_keys()
            return self._read(names, retried=True)

    def info(self, name: str, *, tenant: str = DEFAULT_TENANT) -> SecretInfo:
        """Metadata of one secret without decrypting it (no master key needed)."""
        sn = SecretName.parse(name, tenant)
        with self.engine.connect() as conn:
            row = conn.execute(
                select(secret_t).where(
                    secret_t.c.tenant == sn.tenant,
                    secret_t.c.connection == sn.connection,
                    secret_t.c.field == sn.field,
                )
            ).first()
        if row is None:
            raise SecretNotFoundError(
                f"secret {sn} does not exist", hint=f"create it with `{sn.cli_hint()}`", secret=str(sn)
            )
        return _info(row)

    def exists(self, name: str, *, tenant: str = DEFAULT_TENANT) -> bool:
        """True when the secret has a row (does not decrypt or verify it)."""
        try:
            self.info(name, tenant=tenant)
        except SecretNotFoundError:
            return False
        return True

    def list(self, *, tenant: str | None = DEFAULT_TENANT, connection: str | None = None) -> list[SecretInfo]:
        """Every secret's metadata (``tenant=None`` for all tenants), sorted by name."""
        query = select(secret_t).order_by(secret_t.c.tenant, secret_t.c.connection, secret_t.c.field)
        if tenant is not None:
            query = query.where(secret_t.c.tenant == tenant)
        if connection is not None:
            query = query.where(secret_t.c.connection == connection)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        self._audit_many(
            [self._audit_row("list", None, "ok", None, f"tenant={tenant or '*'} count={len(rows)}")],
            fail_closed=True,
        )
        return [_info(r) for r in rows]

    # ----------------------------------------------------------------------------------------------
    # writing

    def set(
        self,
        name: str,
        value: str | SecretStr,
        *,
        tenant: str = DEFAULT_TENANT,
        expected_version: int | None = None,
    ) -> int:
        """Store (create or replace) one secret; return its new version.

        ``expected_version`` makes it a compare-and-set (0 = must not exist yet); a mismatch raises
        :class:`ConcurrentUpdateError` and changes nothing.
        """
        versions = self.set_many(
            {name: value},
            tenant=tenant,
            expected_versions={name: expected_version} if expected_version is not None else None,
        )
        return versions[name]

    def set_many(
        self,
        values: Mapping[str, str | SecretStr],
        *,
        tenant: str = DEFAULT_TENANT,
        expected_versions: Mapping[str, int] | None = None,
        action: str = "write",
        _conn_hook: Any = None,
    ) -> dict[str, int]:
        """Store several secrets atomically: all are written, or none (one transaction)."""
        prepared: dict[str, tuple[SecretName, str]] = {}
        for short, raw in values.items():
            sn = SecretName.parse(short, tenant)
            text = raw.get_secret_value() if isinstance(raw, SecretStr) else raw
            if not isinstance(text, str) or not text:
                raise VaultError(
                    f"the value for secret {sn} is empty", hint="enter a non-empty value", secret=str(sn)
                )
            if len(text.encode("utf-8")) > MAX_SECRET_BYTES:
                raise VaultError(
                    f"the value for secret {sn} is larger than {MAX_SECRET_BYTES // 1024} KiB",
                    hint="store large material (certificates, key stores) as files and keep their password here",
                    secret=str(sn),
                )
            register_secret(text)  # from now on this process masks it, even if the write fails
            prepared[short] = (sn, text)
        if not prepared:
            return {}
        try:
            out = self._write(prepared, expected_versions or {}, action, _conn_hook)
        except MasterKeyError as exc:
            if exc.secret is None and len(prepared) == 1:
                sn = next(iter(prepared.values()))[0]
                raise type(exc)(
                    f"cannot write secret {sn}: {exc.message}", hint=exc.hint, secret=str(sn)
                ) from None
            raise
        return out

    def _write(
        self,
        prepared: Mapping[str, tuple[SecretName, str]],
        expected_versions: Mapping[str, int],
        action: str,
        conn_hook: Any,
    ) -> dict[str, int]:
        out: dict[str, int] = {}
        with self._write_txn() as (conn, state, manifest):
            kv = state.current_key_version
            now = utcnow()
            for short, (sn, text) in prepared.items():
                row = conn.execute(
                    select(secret_t.c.id, secret_t.c.version).where(
                        secret_t.c.tenant == sn.tenant,
                        secret_t.c.connection == sn.connection,
                        secret_t.c.field == sn.field,
                    )
                ).first()
                current = row.version if row is not None else 0
                if short in expected_versions and expected_versions[short] != current:
                    raise ConcurrentUpdateError(
                        f"secret {sn} is at version {current}, not {expected_versions[short]}",
                        hint="another writer changed it; re-read it and retry",
                        secret=str(sn),
                    )
                # A re-created secret may reuse a version number of a deleted one; replaying the old
                # ciphertext still fails, because the manifest pins each ciphertext's digest.
                previous = manifest.entries.get(sn.key)
                version = max(current, previous.version if previous else 0) + 1
                ciphertext = self._seal_secret(sn, text, version, kv)
                if row is None:
                    conn.execute(
                        insert(secret_t).values(
                            tenant=sn.tenant,
                            connection=sn.connection,
                            field=sn.field,
                            version=version,
                            key_version=kv,
                            ciphertext=ciphertext,
                            created_at=now,
                            updated_at=now,
                            updated_by=self.actor,
                        )
                    )
                else:
                    conn.execute(
                        update(secret_t)
                        .where(secret_t.c.id == row.id)
                        .values(
                            version=version,
                            key_version=kv,
                            ciphertext=ciphertext,
                            updated_at=now,
                            updated_by=self.actor,
                        )
                    )
                manifest.entries[sn.key] = mf.ManifestEntry(version, kv, crypto.digest(ciphertext))
                self._audit(conn, action, name=sn, key_version=kv, detail=f"version={version}")
                out[short] = version
            if conn_hook is not None:
                conn_hook(conn, state)
            self._write_manifest(conn, state, manifest)
        return out

    def delete(self, name: str, *, tenant: str = DEFAULT_TENANT) -> None:
        """Delete a secret (the manifest records the deletion, so it is not flagged as tampering)."""
        sn = SecretName.parse(name, tenant)
        with self._write_txn() as (conn, state, manifest):
            result = conn.execute(
                delete(secret_t).where(
                    secret_t.c.tenant == sn.tenant,
                    secret_t.c.connection == sn.connection,
                    secret_t.c.field == sn.field,
                )
            )
            if result.rowcount == 0 and sn.key not in manifest.entries:
                raise SecretNotFoundError(
                    f"secret {sn} does not exist", hint="nothing to delete", secret=str(sn)
                )
            manifest.entries.pop(sn.key, None)
            self._audit(conn, "delete", name=sn, key_version=state.current_key_version)
            self._write_manifest(conn, state, manifest)

    # ----------------------------------------------------------------------------------------------
    # verification

    def verify(self) -> VerifyReport:
        """Check every secret against the manifest and its own authentication tag.

        Detects deleted rows, inserted/renamed rows, rollbacks, ciphertexts moved between fields,
        connections or tenants, bit flips, a forged manifest and undecryptable key wrappings. Each
        problem names the secret. Nothing is modified.
        """
        self._unlock()
        report = VerifyReport()
        with self.engine.connect() as conn:
            # Read state, secrets and tokens inside one explicit transaction: on PostgreSQL a
            # REPEATABLE READ snapshot is not needed for correctness, only for a tidy report.
            state_row = conn.execute(select(state_t).where(state_t.c.id == STATE_ID)).first()
            if state_row is None:
                raise VaultNotInitializedError(
                    f"{self.location} has no vault yet", hint="run `tongbu vault init`"
                )
            state = _StateRow.of(state_row)
            secrets = conn.execute(select(secret_t).order_by(secret_t.c.id)).all()
            tokens = conn.execute(select(token_t).where(token_t.c.ciphertext.is_not(None))).all()
            rotation = conn.execute(
                select(rotation_t)
                .where(rotation_t.c.status.in_(("running", "aborting")))
                .order_by(rotation_t.c.id.desc())
            ).first()
        report.generation = state.generation
        report.key_version = state.current_key_version
        report.manifest_digest = hashlib.sha256(state.manifest_body.encode()).hexdigest()[:16]
        if rotation is not None:
            report.rotation = f"rotation {rotation.from_version}→{rotation.to_version} {rotation.status} ({rotation.done}/{rotation.total})"
        self._forget_keys()
        manifest: mf.Manifest | None
        try:
            manifest = self._checked_manifest(state)
        except (ManifestError, KeyVersionUnavailableError) as exc:
            report.problems.append(Problem("manifest", None, exc.message))
            manifest = None
        seen: set[tuple[str, str, str]] = set()
        for row in secrets:
            sn = SecretName(row.tenant, row.connection, row.field)
            seen.add(sn.key)
            report.secrets_checked += 1
            ciphertext = bytes(row.ciphertext)
            if manifest is not None:
                expected = manifest.entries.get(sn.key)
                if expected is None:
                    report.problems.append(
                        Problem(
                            "unexpected",
                            str(sn),
                            "not in the manifest: inserted, renamed or moved outside tongbu",
                        )
                    )
                elif row.version < expected.version:
                    report.problems.append(
                        Problem(
                            "rolled_back",
                            str(sn),
                            f"rolled back to version {row.version}; the manifest expects version {expected.version}",
                        )
                    )
                elif row.version > expected.version or row.key_version != expected.key_version:
                    report.problems.append(
                        Problem(
                            "version_mismatch",
                            str(sn),
                            f"version {row.version}/key {row.key_version} does not match the manifest "
                            f"({expected.version}/key {expected.key_version})",
                        )
                    )
                elif crypto.digest(ciphertext) != expected.digest:
                    report.problems.append(
                        Problem(
                            "modified", str(sn), "ciphertext differs from the one recorded in the manifest"
                        )
                    )
            try:
                self._open_secret(sn, ciphertext, row.version, row.key_version)
            except SecretTamperedError as exc:
                report.problems.append(Problem("undecryptable", str(sn), exc.message.split(": ", 1)[-1]))
            except KeyVersionUnavailableError as exc:
                report.problems.append(Problem("key_unavailable", str(sn), exc.message))
        with self.engine.connect() as conn:
            wrappings = conn.execute(
                select(datakey_t).where(datakey_t.c.wrapped_by == self._master_version)
            ).all()
        for wrapping in wrappings:
            try:
                self._data_key(wrapping.key_version)
            except KeyVersionUnavailableError as exc:
                report.problems.append(Problem("key_wrapping", None, exc.message))
        if manifest is not None:
            for key in sorted(set(manifest.entries) - seen):
                report.problems.append(
                    Problem(
                        "missing",
                        str(SecretName(*key)),
                        "deleted outside tongbu: in the manifest but not in the table",
                    )
                )
        for row in tokens:
            report.tokens_checked += 1
            try:
                self._open_token(row)
            except VaultError:
                report.problems.append(
                    Problem(
                        "token_undecryptable",
                        f"{row.tenant}/{row.connection}#{row.name}",
                        "cached token failed authentication (it will be discarded and fetched again)",
                    )
                )
        self._audit_many(
            [
                self._audit_row(
                    "verify",
                    None,
                    "ok" if report.ok else "problems",
                    None,
                    f"problems={len(report.problems)}",
                )
            ]
        )
        return report

    def reseal(self) -> builtins.list[Problem]:
        """Rebuild the manifest from the rows that authenticate; return the rows left out.

        For recovery only, after ``verify`` reported a problem and the operator restored or re-set what
        was wrong: it makes the *current* table contents the trusted state.
        """
        excluded: list[Problem] = []
        with self._write_txn(check_manifest=False) as (conn, state, _old):
            manifest = mf.Manifest(state.vault_id, state.generation, state.current_key_version)
            for row in conn.execute(select(secret_t)).all():
                sn = SecretName(row.tenant, row.connection, row.field)
                try:
                    self._open_secret(sn, bytes(row.ciphertext), row.version, row.key_version)
                except VaultError as exc:
                    excluded.append(Problem("excluded", str(sn), exc.message))
                    continue
                manifest.entries[sn.key] = mf.ManifestEntry(
                    row.version, row.key_version, crypto.digest(bytes(row.ciphertext))
                )
            self._audit(
                conn,
                "reseal",
                outcome="ok",
                detail=f"entries={len(manifest.entries)} excluded={len(excluded)}",
            )
            self._write_manifest(conn, state, manifest)
        self._manifest_cache = None
        return excluded

    # ----------------------------------------------------------------------------------------------
    # tokens (used by tongbu.vault.tokens; kept here because they share the key hierarchy)

    def _token_aad(self, row: Any, key_version: int, token_version: int) -> bytes:
        assert self._vault_id is not None
        return crypto.aad(
            "token",
            vault=self._vault_id,
            tenant=row.tenant,
            connection=row.connection,
            name=row.name,
            version=token_version,
            key_version=key_version,
        )

    def _seal_token(self, row: Any, value: str, key_version: int, token_version: int) -> bytes:
        self._unlock()
        return crypto.seal(
            self._token_key(key_version, row.tenant),
            value.encode("utf-8"),
            self._token_aad(row, key_version, token_version),
            key_version=key_version,
        )

    def _open_token(self, row: Any) -> str:
        self._unlock()
        label = f"{row.tenant}/{row.connection}#{row.name}"
        try:
            header = crypto.parse_header(bytes(row.ciphertext))
            if header.key_version != row.key_version:
                raise crypto.AuthenticationFailed()
            return crypto.open_sealed(
                self._token_key(row.key_version, row.tenant),
                bytes(row.ciphertext),
                self._token_aad(row, row.key_version, row.token_version),
            ).decode("utf-8")
        except (crypto.AuthenticationFailed, UnicodeDecodeError):
            raise SecretTamperedError(
                f"cached token {label} failed authentication", hint="it will be fetched again", secret=label
            ) from None

    def current_key_version(self, conn: Connection) -> int:
        """The key version new ciphertexts use, read inside ``conn``'s transaction.

        On PostgreSQL ``FOR SHARE`` makes a token write wait for a rotation step that is changing it.
        """
        query = select(state_t.c.current_key_version).where(state_t.c.id == STATE_ID)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(read=True)
        value = conn.execute(query).scalar_one_or_none()
        if value is None:
            raise VaultNotInitializedError(
                f"{self.location} has no vault yet", hint="run `tongbu vault init`"
            )
        return int(value)

    # ----------------------------------------------------------------------------------------------
    # process-wide default

    _defaults: dict[str, Vault] = {}
    _defaults_lock = threading.Lock()

    @classmethod
    def default(cls) -> Vault:
        """A shared vault for the current hub database and master-key environment.

        Cached per process (unlocking may run Argon2id); the cache key covers the database URL and a
        hash of the key environment, so changing either gives a fresh instance.
        """
        fingerprint = hashlib.sha256(
            "\0".join(os.environ.get(v, "") for v in (KEY_ENV, KEY_FILE_ENV, PASSPHRASE_ENV)).encode()
        ).hexdigest()
        key = f"{database_url()}|{fingerprint}"
        with cls._defaults_lock:
            vault = cls._defaults.get(key)
            if vault is None:
                vault = cls._defaults[key] = cls()
            return vault

    def secret_count(self) -> int:
        """Number of secret rows (all tenants)."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(secret_t)).scalar_one())


# --------------------------------------------------------------------------------------------------
# key derivation helpers (module level: rotation uses them with a second master key)


def _wrap_key(master: bytes, vault_id: str) -> bytes:
    return crypto.derive_key(master, "tongbu-vault/wrap/v1", salt=vault_id.encode())


def _check_value(master: bytes, vault_id: str) -> bytes:
    check_key = crypto.derive_key(master, "tongbu-vault/check/v1", salt=vault_id.encode())
    return crypto.hmac_digest(check_key, b"tongbu-vault master key check")[:16]


def _manifest_key(data_key: bytes, vault_id: str) -> bytes:
    return crypto.derive_key(data_key, "tongbu-vault/manifest/v1", salt=vault_id.encode())


def _wrap_aad(vault_id: str, *, key_version: int, wrapped_by: int) -> bytes:
    return crypto.aad("data-key", vault=vault_id, key_version=key_version, wrapped_by=wrapped_by)


def _wrap(wrap_key: bytes, data_key: bytes, vault_id: str, *, key_version: int, wrapped_by: int) -> bytes:
    return crypto.seal(
        wrap_key,
        data_key,
        _wrap_aad(vault_id, key_version=key_version, wrapped_by=wrapped_by),
        key_version=wrapped_by,
    )


def _retired(source: MasterKeySource, row: Any) -> MasterKeyRetiredError:
    """The error for a master key that a finished (or aborted) rotation took out of use."""
    return MasterKeyRetiredError(
        f"the master key from {source.description} was "
        + ("retired by a key rotation" if row.status == "retired" else "dropped by an aborted rotation")
        + (f" on {row.retired_at:%Y-%m-%d %H:%M}" if row.retired_at else ""),
        hint="use the new master key given to `tongbu vault rotate`",
    )


def _tampered(name: SecretName, why: str) -> SecretTamperedError:
    return SecretTamperedError(
        f"secret {name} cannot be trusted: {why}",
        hint=f"re-enter it with `{name.cli_hint()}` (or restore it from a backup), then run `tongbu vault verify`",
        secret=str(name),
    )


def _info(row: Any) -> SecretInfo:
    return SecretInfo(
        name=SecretName(row.tenant, row.connection, row.field),
        version=row.version,
        key_version=row.key_version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


__all__ = [
    "Problem",
    "SecretInfo",
    "SecretName",
    "Vault",
    "VerifyReport",
    "default_actor",
]
