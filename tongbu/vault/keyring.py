"""The vault's key hierarchy: master key → wrapping key → data keys → per-purpose subkeys.

:class:`Keyring` unlocks the vault with the master key (checked against the stored check value, never
stored itself), unwraps data keys on demand and derives and caches the per-tenant secret and token
keys and the manifest MAC key. The module-level functions derive what a *second* master key needs
(rotation wraps data keys for the new key before it becomes current).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from tongbu.vault import crypto
from tongbu.vault.errors import (
    KeyVersionUnavailableError,
    MasterKeyRetiredError,
    VaultNotInitializedError,
    WrongMasterKeyError,
)
from tongbu.vault.keys import KdfParams, MasterKeySource
from tongbu.vault.tables import STATE_ID, datakey_t, master_t, state_t


class Keyring:
    """Unlocked key material of one vault, cached per process; thread-safe.

    ``source`` returns the master key source (resolved lazily, so listing works without a key);
    ``data_dirs`` the folders a key file must not live in; ``location`` names the database in messages.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        source: Callable[[], MasterKeySource],
        data_dirs: Callable[[], list[Path]],
        location: str,
    ) -> None:
        self.engine = engine
        self._source = source
        self._data_dirs = data_dirs
        self._location = location
        self._lock = threading.RLock()
        self._vault_id: str | None = None
        self._master_version: int | None = None
        self._wrap_key: bytes | None = None
        self._data_keys: dict[int, bytes] = {}
        self._derived: dict[tuple[int, str], bytes] = {}

    # ------------------------------------------------------------------------------------------
    # state

    @property
    def vault_id(self) -> str:
        """The unlocked vault's id (unlocks first)."""
        self.unlock()
        assert self._vault_id is not None
        return self._vault_id

    @property
    def master_version(self) -> int:
        """The version of the master key this process unlocked with (unlocks first)."""
        self.unlock()
        assert self._master_version is not None
        return self._master_version

    @property
    def wrap_key(self) -> bytes:
        """The wrapping key derived from the unlocked master key (unlocks first)."""
        self.unlock()
        assert self._wrap_key is not None
        return self._wrap_key

    def adopt(self, vault_id: str, master_version: int, wrap_key: bytes, data_keys: dict[int, bytes]) -> None:
        """Take over keys a caller just created (``Vault.initialize``) instead of unlocking again."""
        with self._lock:
            self._vault_id, self._master_version, self._wrap_key = vault_id, master_version, wrap_key
            self._data_keys.update(data_keys)

    def add_data_key(self, key_version: int, key: bytes) -> None:
        """Cache a data key this process created (a rotation's new key version)."""
        with self._lock:
            self._data_keys[key_version] = key

    def retain_only(self, key_version: int) -> None:
        """Drop every cached data key (and its subkeys) except ``key_version`` (a rotation finished)."""
        with self._lock:
            for version in [v for v in self._data_keys if v != key_version]:
                self._data_keys.pop(version, None)
            for cache_key in [k for k in self._derived if k[0] != key_version]:
                self._derived.pop(cache_key, None)

    def forget(self) -> None:
        """Drop cached data keys and subkeys (after a rotation changed the key table)."""
        with self._lock:
            self._data_keys.clear()
            self._derived.clear()

    # ------------------------------------------------------------------------------------------
    # unlocking

    def unlock(self) -> None:
        """Load and check the master key (once per process; later calls return at once)."""
        with self._lock:
            if self._master_version is not None:
                return
            with self.engine.connect() as conn:
                state = conn.execute(select(state_t).where(state_t.c.id == STATE_ID)).first()
                if state is None:
                    raise VaultNotInitializedError(
                        f"{self._location} has no vault yet", hint="run `tongbu vault init` first"
                    )
                keys = conn.execute(select(master_t).order_by(master_t.c.version.desc())).all()
            source = self._source()
            source.check_location(self._data_dirs())
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
                if crypto.constant_time_equal(check_value(material, vault_id), bytes(row.check_value)):
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
                    f"the master key from {source.description} does not open the vault in {self._location}{kind_hint}",
                    hint="use the key created by `tongbu vault init` or by the last completed `tongbu vault rotate`",
                )
            row, material = matched
            if row.status in ("retired", "aborted"):
                raise retired_error(source, row)
            self._vault_id = vault_id
            self._master_version = row.version
            self._wrap_key = wrap_key_for(material, vault_id)

    def raise_if_master_retired(self) -> None:
        """Raise :class:`MasterKeyRetiredError` if a rotation retired the master key we unlocked with."""
        with self.engine.connect() as conn:
            row = conn.execute(select(master_t).where(master_t.c.version == self._master_version)).first()
        if row is not None and row.status in ("retired", "aborted"):
            raise retired_error(self._source(), row)

    # ------------------------------------------------------------------------------------------
    # keys

    def data_key(self, key_version: int) -> bytes:
        """The data key of ``key_version``, unwrapped with this process's master key."""
        with self._lock:
            key = self._data_keys.get(key_version)
            if key is not None:
                return key
            self.unlock()
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
                self.raise_if_master_retired()
                raise KeyVersionUnavailableError(
                    f"data key version {key_version} is not available to the master key from "
                    f"{self._source().description}",
                    hint="if a rotation finished, use the new master key; otherwise run `tongbu vault verify`",
                )
            try:
                key = crypto.open_sealed(
                    self._wrap_key,
                    bytes(row.wrapped_key),
                    wrap_aad(self._vault_id, key_version=key_version, wrapped_by=self._master_version or 0),
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
                key = crypto.derive_key(
                    self.data_key(key_version), f"tongbu-vault/{purpose}/v1", salt=self.vault_id.encode()
                )
                self._derived[cache_key] = key
            return key

    def secret_key(self, key_version: int, tenant: str) -> bytes:
        """The AES-GCM key for ``tenant``'s secrets under ``key_version``."""
        return self._subkey(key_version, f"secret/{tenant}")

    def token_key(self, key_version: int, tenant: str) -> bytes:
        """The AES-GCM key for ``tenant``'s cached tokens under ``key_version``."""
        return self._subkey(key_version, f"token/{tenant}")

    def manifest_key(self, key_version: int) -> bytes:
        """The manifest MAC key under ``key_version``."""
        return self._subkey(key_version, "manifest")


# --------------------------------------------------------------------------------------------------
# derivations for a given master key (rotation uses them with a second master key)


def wrap_key_for(master: bytes, vault_id: str) -> bytes:
    """The key that wraps data keys, derived from master key material."""
    return crypto.derive_key(master, "tongbu-vault/wrap/v1", salt=vault_id.encode())


def check_value(master: bytes, vault_id: str) -> bytes:
    """What the vault stores to recognise a master key (not enough to recover it)."""
    check_key = crypto.derive_key(master, "tongbu-vault/check/v1", salt=vault_id.encode())
    return crypto.hmac_digest(check_key, b"tongbu-vault master key check")[:16]


def manifest_key_for(data_key: bytes, vault_id: str) -> bytes:
    """The manifest MAC key of a data key (the same derivation as :meth:`Keyring.manifest_key`)."""
    return crypto.derive_key(data_key, "tongbu-vault/manifest/v1", salt=vault_id.encode())


def wrap_aad(vault_id: str, *, key_version: int, wrapped_by: int) -> bytes:
    """Associated data binding a wrapped data key to its vault, version and wrapping master key."""
    return crypto.aad("data-key", vault=vault_id, key_version=key_version, wrapped_by=wrapped_by)


def wrap(wrap_key: bytes, data_key: bytes, vault_id: str, *, key_version: int, wrapped_by: int) -> bytes:
    """Wrap ``data_key`` (version ``key_version``) with master key ``wrapped_by``'s wrapping key."""
    return crypto.seal(
        wrap_key,
        data_key,
        wrap_aad(vault_id, key_version=key_version, wrapped_by=wrapped_by),
        key_version=wrapped_by,
    )


def retired_error(source: MasterKeySource, row: Any) -> MasterKeyRetiredError:
    """The error for a master key that a finished (or aborted) rotation took out of use."""
    return MasterKeyRetiredError(
        f"the master key from {source.description} was "
        + ("retired by a key rotation" if row.status == "retired" else "dropped by an aborted rotation")
        + (f" on {row.retired_at:%Y-%m-%d %H:%M}" if row.retired_at else ""),
        hint="use the new master key given to `tongbu vault rotate`",
    )


__all__ = ["Keyring", "check_value", "manifest_key_for", "retired_error", "wrap", "wrap_aad", "wrap_key_for"]
