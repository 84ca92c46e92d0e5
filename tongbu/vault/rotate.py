"""Master-key rotation: re-encrypt every secret under a new key version, resumably, with no downtime.

The rotation is a sequence of short transactions, each safe to be killed at any point:

1. **start** — one transaction: record the new master key (its check value, never the key), create a
   new data key, wrap it under *both* the new and the old master key, wrap the old data key under the
   new master key too, make the new version current and record a ``vault_rotations`` row. From here
   processes holding either master key can read everything, and new writes already use the new key.
2. **batches** — each transaction re-encrypts up to ``batch_size`` secrets (and cached tokens) from the
   old data key to the new one, in memory (plaintext never touches disk), updates the manifest and the
   progress counter, and commits. Every row is either wholly old or wholly new; both decrypt.
3. **finish** — one transaction: once no ciphertext uses the old version, delete the old data key and
   every wrapping made by the old master key, retire the old master key. From then on the old master
   key opens nothing (and is told so by name).

Re-running ``rotate`` after a crash resumes at the first row still on the old version; ``--abort``
runs the same loop towards the old version instead. Before re-encrypting, each row is checked against
the manifest, so a tampered or rolled-back secret stops the rotation instead of being laundered into
a freshly signed manifest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, insert, or_, select, update

from tongbu.vault import crypto
from tongbu.vault import manifest as mf
from tongbu.vault.errors import RotationError, RotationInProgressError
from tongbu.vault.keyring import check_value, wrap, wrap_key_for
from tongbu.vault.keys import KdfParams, MasterKeySource
from tongbu.vault.names import SecretName, tampered, utcnow
from tongbu.vault.store import Vault
from tongbu.vault.tables import STATE_ID, datakey_t, master_t, rotation_t, secret_t, state_t, token_t

log = logging.getLogger("tongbu.vault.rotate")

DEFAULT_BATCH_SIZE = 100
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class RotationStatus:
    """One row of ``vault_rotations``."""

    id: int
    from_version: int
    to_version: int
    status: str  # running | aborting | done | aborted
    total: int
    done: int

    @property
    def target_version(self) -> int:
        """The key version ciphertexts are being moved to."""
        return self.from_version if self.status in ("aborting", "aborted") else self.to_version


def rotation_status(vault: Vault, *, include_finished: bool = False) -> RotationStatus | None:
    """The unfinished rotation (or, with ``include_finished``, the latest one), if any."""
    query = select(rotation_t).order_by(rotation_t.c.id.desc()).limit(1)
    if not include_finished:
        query = query.where(rotation_t.c.status.in_(("running", "aborting")))
    with vault.engine.connect() as conn:
        row = conn.execute(query).first()
    return _status(row) if row is not None else None


def rotate(
    vault: Vault,
    new_key: MasterKeySource | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressFn | None = None,
    finish: bool = True,
) -> RotationStatus:
    """Rotate to ``new_key``, or resume the rotation in progress; return the final status.

    ``vault`` may hold either the old or the new master key. With no rotation in progress a
    ``new_key`` is required; with one in progress, ``new_key`` (if given) must be the key it started
    with — a different key is refused rather than silently starting a second rotation.

    ``finish=False`` re-encrypts everything but keeps both master keys valid (status stays
    ``running``), so long-running workers can be switched to the new key before the old one stops
    working; a later ``rotate()`` call finishes.
    """
    status = rotation_status(vault)
    if status is None:
        if new_key is None:
            raise RotationError(
                "no rotation is in progress and no new master key was given",
                hint="pass --new-key-file, --new-key-env or --new-passphrase",
            )
        last = rotation_status(vault, include_finished=True)
        if last is not None and last.status == "done" and _is_key_version(vault, new_key, last.to_version):
            # Re-run after a crash right after the finish commit: nothing left to do. (The vault's
            # own key may be the retired one here, so this check must not need it.)
            return last
        status = start_rotation(vault, new_key)
    elif status.status == "aborting":
        raise RotationInProgressError(
            f"an aborted rotation to key version {status.to_version} is still being rolled back",
            hint="finish it with `tongbu vault rotate --abort`",
        )
    elif new_key is not None and not _is_key_version(vault, new_key, status.to_version):
        raise RotationInProgressError(
            f"a rotation to key version {status.to_version} is in progress with a different new key",
            hint="resume it with the same new key (or no new-key option), or run `tongbu vault rotate --abort`",
        )
    else:
        log.info(
            "resuming rotation %s→%s at %s/%s",
            status.from_version,
            status.to_version,
            status.done,
            status.total,
        )
    return _run(vault, status, batch_size=batch_size, progress=progress, finish=finish)


def abort_rotation(
    vault: Vault, *, batch_size: int = DEFAULT_BATCH_SIZE, progress: ProgressFn | None = None
) -> RotationStatus:
    """Roll an unfinished rotation back: everything returns to the old key, the new key is dropped."""
    status = rotation_status(vault)
    if status is None:
        raise RotationError("no rotation is in progress", hint="nothing to abort")
    if status.status == "running":
        with vault.write_txn() as (conn, state, manifest):
            conn.execute(
                update(rotation_t)
                .where(rotation_t.c.id == status.id)
                .values(status="aborting", updated_at=utcnow())
            )
            conn.execute(
                update(state_t)
                .where(state_t.c.id == STATE_ID)
                .values(current_key_version=status.from_version)
            )
            state.current_key_version = status.from_version
            vault.audit.record(
                conn,
                "rotate.abort",
                key_version=status.from_version,
                detail=f"to_version={status.to_version}",
            )
            vault.ledger.write(conn, state, manifest)
        status = _status_by_id(vault, status.id)
    return _run(vault, status, batch_size=batch_size, progress=progress)


def start_rotation(vault: Vault, new_key: MasterKeySource) -> RotationStatus:
    """Step 1: register the new master key and data key; make the new version current."""
    vault.unlock()
    new_key.check_location(vault.data_dirs())
    params = KdfParams.generate() if new_key.kind == "passphrase" else None
    material = new_key.material(params)
    with vault.write_txn() as (conn, state, manifest):
        running = conn.execute(
            select(rotation_t.c.id).where(rotation_t.c.status.in_(("running", "aborting")))
        ).first()
        if running is not None:
            raise RotationInProgressError(
                "another rotation started meanwhile", hint="re-run `tongbu vault rotate` to resume it"
            )
        vault_id = state.vault_id
        old_master = vault.keyring.master_version
        keys = conn.execute(select(master_t)).all()
        check = check_value(material, vault_id)
        for row in keys:
            if crypto.constant_time_equal(check, bytes(row.check_value)):
                raise RotationError(
                    f"the new master key is key version {row.version} of this vault",
                    hint="rotate to a freshly generated key",
                )
        new_version = max(r.version for r in keys) + 1
        now = utcnow()
        conn.execute(
            insert(master_t).values(
                version=new_version,
                kind=new_key.kind,
                check_value=check,
                kdf_params=params.to_json() if params else None,
                status="pending",
                created_at=now,
                created_by=vault.actor,
            )
        )
        new_wrap_key = wrap_key_for(material, vault_id)
        new_data_key = crypto.new_key()
        wrappings = [
            (
                new_version,
                new_version,
                wrap(new_wrap_key, new_data_key, vault_id, key_version=new_version, wrapped_by=new_version),
            ),
            # Transitional: processes still configured with the old master key keep reading secrets
            # that were already moved to the new data key. Deleted when the rotation finishes.
            (
                new_version,
                old_master,
                wrap(
                    vault.keyring.wrap_key,
                    new_data_key,
                    vault_id,
                    key_version=new_version,
                    wrapped_by=old_master,
                ),
            ),
        ]
        live = (
            conn.execute(select(datakey_t.c.key_version).where(datakey_t.c.wrapped_by == old_master))
            .scalars()
            .all()
        )
        for key_version in live:
            # The new master key must open the data keys of rows not yet moved (resume with new key).
            old_data_key = vault.keyring.data_key(key_version)
            wrappings.append(
                (
                    key_version,
                    new_version,
                    wrap(
                        new_wrap_key, old_data_key, vault_id, key_version=key_version, wrapped_by=new_version
                    ),
                )
            )
        for key_version, wrapped_by, blob in wrappings:
            conn.execute(
                insert(datakey_t).values(
                    key_version=key_version, wrapped_by=wrapped_by, wrapped_key=blob, created_at=now
                )
            )
        total = _pending_count(conn, new_version)
        conn.execute(update(state_t).where(state_t.c.id == STATE_ID).values(current_key_version=new_version))
        from_version = state.current_key_version
        state.current_key_version = new_version
        vault.keyring.add_data_key(new_version, new_data_key)
        inserted = conn.execute(
            insert(rotation_t).values(
                from_version=from_version,
                to_version=new_version,
                status="running",
                total=total,
                done=0,
                actor=vault.actor,
                started_at=now,
                updated_at=now,
            )
        ).inserted_primary_key
        assert inserted is not None
        rotation_id = int(inserted[0])
        vault.audit.record(
            conn,
            "rotate.start",
            key_version=new_version,
            detail=f"from={from_version} new_key={new_key.description}",
        )
        vault.ledger.write(conn, state, manifest)
    log.info("rotation %s→%s started (%s ciphertexts)", from_version, new_version, total)
    return RotationStatus(rotation_id, from_version, new_version, "running", total, 0)


def _run(
    vault: Vault, status: RotationStatus, *, batch_size: int, progress: ProgressFn | None, finish: bool = True
) -> RotationStatus:
    if batch_size < 1:
        raise RotationError("batch size must be at least 1")
    while True:
        moved = _batch(vault, status, batch_size)
        status = _status_by_id(vault, status.id)
        if progress is not None:
            progress(status.done, status.total)
        if moved == 0 and not finish:
            return status
        if moved == 0 and _finish(vault, status):
            return _status_by_id(vault, status.id)
        if status.status not in ("running", "aborting"):
            return status


def _batch(vault: Vault, status: RotationStatus, batch_size: int) -> int:
    """Step 2: move up to ``batch_size`` ciphertexts to the target key version in one transaction."""
    target = status.target_version
    with vault.write_txn() as (conn, state, manifest):
        progress_row = conn.execute(select(rotation_t).where(rotation_t.c.id == status.id)).one()
        if progress_row.status not in ("running", "aborting"):
            return 0
        rows = conn.execute(
            select(secret_t).where(secret_t.c.key_version != target).order_by(secret_t.c.id).limit(batch_size)
        ).all()
        moved = 0
        for row in rows:
            name = SecretName(row.tenant, row.connection, row.field)
            ciphertext = bytes(row.ciphertext)
            expected = manifest.entries.get(name.key)
            if expected is None or (expected.version, expected.key_version, expected.digest) != (
                row.version,
                row.key_version,
                crypto.digest(ciphertext),
            ):
                raise _rotation_stopped(name)
            plaintext = vault.sealer.open_secret(name, ciphertext, row.version, row.key_version)
            new_ciphertext = vault.sealer.seal_secret(name, plaintext, row.version, target)
            del plaintext
            conn.execute(
                update(secret_t)
                .where(secret_t.c.id == row.id)
                .values(key_version=target, ciphertext=new_ciphertext)
            )
            manifest.entries[name.key] = mf.ManifestEntry(row.version, target, crypto.digest(new_ciphertext))
            vault.audit.record(conn, "rotate", name=name, key_version=target)
            moved += 1
        if moved < batch_size:
            tokens = conn.execute(
                select(token_t)
                .where(token_t.c.ciphertext.is_not(None), token_t.c.key_version != target)
                .order_by(token_t.c.id)
                .limit(batch_size - moved)
            ).all()
            for row in tokens:
                try:
                    value = vault.sealer.open_token(row)
                except Exception:  # noqa: BLE001 - a cache entry that does not open is simply dropped
                    conn.execute(
                        update(token_t)
                        .where(token_t.c.id == row.id)
                        .values(ciphertext=None, key_version=None, refresh_at=None, expires_at=None)
                    )
                else:
                    conn.execute(
                        update(token_t)
                        .where(token_t.c.id == row.id)
                        .values(
                            key_version=target,
                            ciphertext=vault.sealer.seal_token(row, value, target, row.token_version),
                        )
                    )
                    del value
                moved += 1
        if moved:
            conn.execute(
                update(rotation_t)
                .where(rotation_t.c.id == status.id)
                .values(done=min(progress_row.total, progress_row.done + moved), updated_at=utcnow())
            )
            vault.ledger.write(conn, state, manifest)
        return moved


def _finish(vault: Vault, status: RotationStatus) -> bool:
    """Step 3: drop the losing key version once nothing uses it. Returns False if work remains."""
    with vault.write_txn(secure_delete=True) as (conn, state, manifest):
        row = conn.execute(select(rotation_t).where(rotation_t.c.id == status.id)).one()
        current = _status(row)
        if current.status not in ("running", "aborting"):
            return True
        target = current.target_version
        if _pending_count(conn, target):
            return False  # a concurrent writer added work (cannot happen for secrets; be safe)
        loser = current.from_version if current.status == "running" else current.to_version
        conn.execute(
            delete(datakey_t).where(or_(datakey_t.c.key_version != target, datakey_t.c.wrapped_by != target))
        )
        now = utcnow()
        conn.execute(
            update(master_t)
            .where(master_t.c.version == loser)
            .values(status="retired" if current.status == "running" else "aborted", retired_at=now)
        )
        conn.execute(update(master_t).where(master_t.c.version == target).values(status="active"))
        conn.execute(
            update(rotation_t)
            .where(rotation_t.c.id == status.id)
            .values(
                status="done" if current.status == "running" else "aborted",
                done=row.total,
                finished_at=now,
                updated_at=now,
            )
        )
        vault.audit.record(conn, "rotate.finish", key_version=target, detail=f"retired={loser}")
        vault.ledger.write(conn, state, manifest)
    if vault.engine.dialect.name == "sqlite":
        # Fold the WAL (which still holds pre-delete pages) back into the file and truncate it.
        try:
            with vault.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        except Exception:  # noqa: BLE001 - best effort; busy readers just delay the checkpoint
            log.debug("WAL checkpoint after rotation deferred")
    vault.keyring.retain_only(target)
    vault.ledger.invalidate()
    log.info("rotation to key version %s finished", target)
    return True


def _pending_count(conn, target: int) -> int:  # type: ignore[no-untyped-def]
    secrets = conn.execute(
        select(func.count()).select_from(secret_t).where(secret_t.c.key_version != target)
    ).scalar_one()
    tokens = conn.execute(
        select(func.count())
        .select_from(token_t)
        .where(and_(token_t.c.ciphertext.is_not(None), token_t.c.key_version != target))
    ).scalar_one()
    return int(secrets) + int(tokens)


def _is_key_version(vault: Vault, source: MasterKeySource, version: int) -> bool:
    """Does ``source`` hold master key ``version``? (Needs no unlocked vault.)"""
    with vault.engine.connect() as conn:
        row = conn.execute(select(master_t).where(master_t.c.version == version)).first()
        vault_id = conn.execute(select(state_t.c.vault_id)).scalar_one()
    if row is None or row.kind != source.kind:
        return False
    params = KdfParams.from_json(row.kdf_params) if row.kdf_params else None
    return crypto.constant_time_equal(check_value(source.material(params), vault_id), bytes(row.check_value))


def _status(row) -> RotationStatus:  # type: ignore[no-untyped-def]
    return RotationStatus(row.id, row.from_version, row.to_version, row.status, row.total, row.done)


def _status_by_id(vault: Vault, rotation_id: int) -> RotationStatus:
    with vault.engine.connect() as conn:
        return _status(conn.execute(select(rotation_t).where(rotation_t.c.id == rotation_id)).one())


def _rotation_stopped(name: SecretName) -> Exception:
    return tampered(name, "it does not match the manifest, so the rotation stopped before re-encrypting it")
