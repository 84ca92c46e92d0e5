"""The vault's state row and signed manifest, and the write transaction that serialises writers.

The manifest lists every secret's version, key version and ciphertext digest, MAC'd with a key from
the current data key: a row deleted, inserted, rolled back or swapped outside tongbu no longer matches
it. Writes bump ``vault_state.generation`` first (SQLite's write lock / PostgreSQL's row lock) and
rewrite the manifest in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from tongbu.vault import manifest as mf
from tongbu.vault.errors import ManifestError, VaultNotInitializedError
from tongbu.vault.keyring import Keyring
from tongbu.vault.names import utcnow
from tongbu.vault.tables import STATE_ID, state_t


@dataclass
class StateRow:
    """The ``vault_state`` row as read inside one transaction (plus what this transaction wrote)."""

    vault_id: str
    current_key_version: int
    generation: int
    manifest_key_version: int
    manifest_body: str
    manifest_mac: bytes
    written_generation: int = -1
    written_manifest: Any = None

    @classmethod
    def of(cls, row: Any) -> StateRow:
        return cls(
            vault_id=row.vault_id,
            current_key_version=row.current_key_version,
            generation=row.generation,
            manifest_key_version=row.manifest_key_version,
            manifest_body=row.manifest_body,
            manifest_mac=bytes(row.manifest_mac),
        )


class Ledger:
    """Reads, authenticates and rewrites the manifest; opens the vault's write transactions."""

    def __init__(self, engine: Engine, keyring: Keyring, *, location: str) -> None:
        self.engine = engine
        self.keyring = keyring
        self._location = location
        self._cache: tuple[int, bytes, mf.Manifest] | None = None

    def _not_initialized(self) -> VaultNotInitializedError:
        return VaultNotInitializedError(f"{self._location} has no vault yet", hint="run `tongbu vault init`")

    def invalidate(self) -> None:
        """Forget the cached authenticated manifest (the next read authenticates it again)."""
        self._cache = None

    def read_state(self, conn: Connection) -> StateRow:
        """The state row on ``conn`` (raises :class:`VaultNotInitializedError` if there is none)."""
        row = conn.execute(select(state_t).where(state_t.c.id == STATE_ID)).first()
        if row is None:
            raise self._not_initialized()
        return StateRow.of(row)

    def cached(self, generation: int, mac: bytes) -> mf.Manifest | None:
        """The already-authenticated manifest of this generation, if we hold it."""
        cached = self._cache
        if cached and cached[0] == generation and cached[1] == mac:
            return cached[2]
        return None

    def checked(self, state: StateRow) -> mf.Manifest:
        """Parse and authenticate the manifest of ``state`` (cached per generation and MAC)."""
        hit = self.cached(state.generation, state.manifest_mac)
        if hit is not None:
            return hit
        mac_key = self.keyring.manifest_key(state.manifest_key_version)
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
        self._cache = (state.generation, state.manifest_mac, manifest)
        return manifest

    def write(self, conn: Connection, state: StateRow, manifest: mf.Manifest) -> None:
        """Sign ``manifest`` for ``state``'s generation and key version and store it on ``conn``."""
        manifest.generation = state.generation
        manifest.key_version = state.current_key_version
        body = manifest.body()
        tag = mf.mac(self.keyring.manifest_key(state.current_key_version), body)
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
    def transaction(
        self, *, check_manifest: bool = True, secure_delete: bool = False
    ) -> Iterator[tuple[Connection, StateRow, mf.Manifest]]:
        """A write transaction that holds the vault's write lock and the authenticated manifest.

        Bumping ``generation`` is the first statement, so SQLite takes its write lock (waiting out the
        busy timeout) and PostgreSQL locks the state row before we read anything: writers serialise
        and every manifest update starts from the latest committed one. Callers change rows and the
        yielded manifest; the manifest is signed and written before commit even if nothing changed.
        """
        self.keyring.unlock()
        with self.engine.begin() as conn:
            if secure_delete and conn.dialect.name == "sqlite":
                # Deleted key wrappings must not linger in free pages where the retired key could
                # still open them; the pragma zeroes freed content (it stays on for this connection).
                conn.exec_driver_sql("PRAGMA secure_delete = ON")
            bumped = conn.execute(
                update(state_t).where(state_t.c.id == STATE_ID).values(generation=state_t.c.generation + 1)
            )
            if bumped.rowcount == 0:
                raise self._not_initialized()
            state = StateRow.of(conn.execute(select(state_t).where(state_t.c.id == STATE_ID)).one())
            if check_manifest:
                # Authenticate against the pre-bump generation the manifest was written with.
                previous = StateRow(**{**state.__dict__, "generation": state.generation - 1})
                manifest = self.checked(previous)
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
                self.write(conn, state, manifest)
        # Committed: the manifest we just signed is the authenticated current one (saves re-parsing).
        self._cache = (state.generation, state.manifest_mac, state.written_manifest)

    def current_key_version(self, conn: Connection) -> int:
        """The key version new ciphertexts use, read inside ``conn``'s transaction.

        On PostgreSQL ``FOR SHARE`` makes a token write wait for a rotation step that is changing it.
        """
        query = select(state_t.c.current_key_version).where(state_t.c.id == STATE_ID)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(read=True)
        value = conn.execute(query).scalar_one_or_none()
        if value is None:
            raise self._not_initialized()
        return int(value)


__all__ = ["Ledger", "StateRow"]
