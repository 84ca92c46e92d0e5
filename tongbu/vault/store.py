"""The :class:`Vault`: encrypted secrets in the hub database (SQLite or PostgreSQL) — reading and writing.

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

The parts live in their own modules: :mod:`~tongbu.vault.keyring` (master, wrapping and data keys),
:mod:`~tongbu.vault.sealing` (ciphertexts), :mod:`~tongbu.vault.ledger` (state row, manifest, write
transaction), :mod:`~tongbu.vault.audit` (audit rows), :mod:`~tongbu.vault.verify` (verify, reseal).
This module composes them and holds create / read / update / delete.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Connection, Engine, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from tongbu.config import DEFAULT_TENANT, database_url
from tongbu.db import get_engine
from tongbu.vault import crypto
from tongbu.vault import manifest as mf
from tongbu.vault import verify as verification
from tongbu.vault.audit import AuditLog
from tongbu.vault.errors import (
    ConcurrentUpdateError,
    KeyVersionUnavailableError,
    MasterKeyError,
    SecretNotFoundError,
    VaultAlreadyInitializedError,
    VaultError,
    VaultNotInitializedError,
)
from tongbu.vault.keyring import Keyring, check_value, manifest_key_for, wrap, wrap_key_for
from tongbu.vault.keys import (
    KEY_ENV,
    KEY_FILE_ENV,
    PASSPHRASE_ENV,
    KdfParams,
    MasterKeySource,
    default_key_source,
)
from tongbu.vault.ledger import Ledger, StateRow
from tongbu.vault.names import SecretInfo, SecretName, default_actor, secret_info, tampered, utcnow
from tongbu.vault.redact import register_secret
from tongbu.vault.refs import VAULT_PREFIX, Secret
from tongbu.vault.sealing import Sealer
from tongbu.vault.tables import FORMAT_VERSION as FORMAT_VERSION
from tongbu.vault.tables import STATE_ID, datakey_t, master_t, secret_t, state_t
from tongbu.vault.verify import Problem, VerifyReport

log = logging.getLogger("tongbu.vault")

MAX_SECRET_BYTES = 64 * 1024


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
        self._actor = (actor or default_actor())[:200]
        self.keyring = Keyring(
            self.engine, source=lambda: self.key_source, data_dirs=self.data_dirs, location=self.location
        )
        self.sealer = Sealer(self.keyring)
        self.ledger = Ledger(self.engine, self.keyring, location=self.location)
        self.audit = AuditLog(self.engine, self._actor)

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
        wrap_key = wrap_key_for(material, vault_id)
        manifest = mf.Manifest(vault_id=vault_id, generation=1, key_version=1)
        body = manifest.body()
        mac_key = manifest_key_for(data_key, vault_id)
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
                        check_value=check_value(material, vault_id),
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
                        wrapped_key=wrap(wrap_key, data_key, vault_id, key_version=1, wrapped_by=1),
                        created_at=now,
                    )
                )
                vault.audit.record(
                    conn, "init", outcome="ok", key_version=1, detail=f"master key from {source.description}"
                )
        except SAIntegrityError:
            raise VaultAlreadyInitializedError(
                f"{vault.location} already has a vault",
                hint="use it (`tongbu vault list`), or point TONGBU_DATABASE_URL at another database",
            ) from None
        vault.keyring.adopt(vault_id, 1, wrap_key, {1: data_key})
        log.info("vault initialised in %s (master key from %s)", vault.location, source.description)
        return vault

    @property
    def key_source(self) -> MasterKeySource:
        """The master key source (resolved from the environment on first use)."""
        if self._key_source is None:
            self._key_source = default_key_source()
        return self._key_source

    @key_source.setter
    def key_source(self, source: MasterKeySource) -> None:
        """Use ``source`` (e.g. a terminal prompt) instead of the environment; before the first unlock."""
        self._key_source = source

    @property
    def actor(self) -> str:
        """Who this vault acts as in audit rows (a user, a Dagster run id, a worker)."""
        return self._actor

    @actor.setter
    def actor(self, actor: str) -> None:
        self._actor = actor[:200]
        self.audit.actor = self._actor

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

    # ----------------------------------------------------------------------------------------------
    # keys and transactions (the public surface rotation and the token cache build on)

    def unlock(self) -> None:
        """Load and check the master key now (otherwise done on first use)."""
        self.keyring.unlock()

    def forget_keys(self) -> None:
        """Drop cached key material and the cached manifest (after a rotation changed the key table)."""
        self.keyring.forget()
        self.ledger.invalidate()

    def write_txn(
        self, *, check_manifest: bool = True, secure_delete: bool = False
    ) -> AbstractContextManager[tuple[Connection, StateRow, mf.Manifest]]:
        """A write transaction holding the vault's write lock: ``(conn, state, manifest)``.

        Change rows on ``conn`` and entries of ``manifest``; the manifest is signed and stored before
        commit. See :meth:`tongbu.vault.ledger.Ledger.transaction`.
        """
        return self.ledger.transaction(check_manifest=check_manifest, secure_delete=secure_delete)

    def current_key_version(self, conn: Connection) -> int:
        """The key version new ciphertexts use, read inside ``conn``'s transaction."""
        return self.ledger.current_key_version(conn)

    def audit_log(
        self, *, limit: int = 100, name: str | None = None, tenant: str = DEFAULT_TENANT
    ) -> builtins.list[dict[str, Any]]:
        """The most recent audit events (newest first), optionally for one secret."""
        return self.audit.recent(limit=limit, name=name, tenant=tenant)

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
            self.audit.record_many(
                [
                    self.audit.row(action, sn, type(exc).__name__, None, None)
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
        self.audit.record_many(
            [self.audit.row(action, sn, "ok", values[sn][1], None) for sn in wanted.values()]
        )
        out: dict[str, Secret] = {}
        for short, sn in wanted.items():
            value = values[sn][0]
            register_secret(value)
            out[short] = Secret(value, ref=f"{VAULT_PREFIX}{sn.short}")
        return out

    def _read(
        self, names: list[SecretName], *, retried: bool = False, attempt: int = 0
    ) -> dict[SecretName, tuple[str, int]]:
        self.keyring.unlock()
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
            manifest = self.ledger.cached(first.generation, bytes(first.manifest_mac))
            if manifest is None:
                # The manifest body is fetched apart from the rows (joining it would copy it into
                # every row). Consistent only if it is the same generation the rows were read at;
                # otherwise a writer committed in between and we read again.
                with self.engine.connect() as conn:
                    state = StateRow.of(conn.execute(select(state_t).where(state_t.c.id == STATE_ID)).one())
                if (state.generation, state.manifest_mac) != (first.generation, bytes(first.manifest_mac)):
                    if attempt >= 20:
                        raise VaultError(
                            "the vault changed on every attempt to read it",
                            hint="retry when writes calm down",
                        )
                    return self._read(names, retried=retried, attempt=attempt + 1)
                manifest = self.ledger.checked(state)
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
                    raise tampered(
                        sn, "it was deleted outside tongbu (it is in the manifest but not in the table)"
                    )
                ciphertext = bytes(row.ciphertext)
                if expected is None:
                    raise tampered(sn, "it is not in the manifest (inserted or renamed outside tongbu)")
                if row.version < expected.version:
                    raise tampered(
                        sn,
                        f"it was rolled back to version {row.version} (the manifest expects {expected.version})",
                    )
                if (row.version, row.key_version, crypto.digest(ciphertext)) != (
                    expected.version,
                    expected.key_version,
                    expected.digest,
                ):
                    raise tampered(sn, "its ciphertext differs from the one recorded in the manifest")
                out[sn] = (
                    self.sealer.open_secret(sn, ciphertext, row.version, row.key_version),
                    row.key_version,
                )
            return out
        except KeyVersionUnavailableError:
            if retried:
                raise
            # A rotation may have finished between our read and the key lookup: reload and retry once.
            self.forget_keys()
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
        return secret_info(row)

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
        self.audit.record_many(
            [self.audit.row("list", None, "ok", None, f"tenant={tenant or '*'} count={len(rows)}")],
            fail_closed=True,
        )
        return [secret_info(r) for r in rows]

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
        with self.write_txn() as (conn, state, manifest):
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
                ciphertext = self.sealer.seal_secret(sn, text, version, kv)
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
                self.audit.record(conn, action, name=sn, key_version=kv, detail=f"version={version}")
                out[short] = version
            if conn_hook is not None:
                conn_hook(conn, state)
            self.ledger.write(conn, state, manifest)
        return out

    def delete(self, name: str, *, tenant: str = DEFAULT_TENANT) -> None:
        """Delete a secret (the manifest records the deletion, so it is not flagged as tampering)."""
        sn = SecretName.parse(name, tenant)
        with self.write_txn() as (conn, state, manifest):
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
            self.audit.record(conn, "delete", name=sn, key_version=state.current_key_version)
            self.ledger.write(conn, state, manifest)

    # ----------------------------------------------------------------------------------------------
    # verification

    def verify(self) -> VerifyReport:
        """Check every secret against the manifest and its own tag (see :func:`tongbu.vault.verify.verify`)."""
        return verification.verify(self)

    def reseal(self) -> builtins.list[Problem]:
        """Rebuild the manifest from the rows that authenticate (see :func:`tongbu.vault.verify.reseal`)."""
        return verification.reseal(self)

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


__all__ = [
    "Problem",
    "SecretInfo",
    "SecretName",
    "Vault",
    "VerifyReport",
    "default_actor",
]
