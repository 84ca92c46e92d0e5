"""Verification and recovery: check every secret against the manifest and its own tag; reseal.

:func:`verify` detects deleted rows, inserted or renamed rows, rollbacks, ciphertexts moved between
fields, connections or tenants, bit flips, a forged manifest and undecryptable key wrappings, each
problem naming the secret, and changes nothing. :func:`reseal` is the recovery step after an operator
restored or re-set what verify reported.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Engine, select

from tongbu.vault import crypto
from tongbu.vault import manifest as mf
from tongbu.vault.audit import AuditLog
from tongbu.vault.errors import (
    KeyVersionUnavailableError,
    ManifestError,
    SecretTamperedError,
    VaultError,
    VaultNotInitializedError,
)
from tongbu.vault.keyring import Keyring
from tongbu.vault.ledger import Ledger, StateRow
from tongbu.vault.names import SecretName
from tongbu.vault.sealing import Sealer
from tongbu.vault.tables import STATE_ID, datakey_t, rotation_t, secret_t, state_t, token_t


class Vault(Protocol):
    """The parts of a :class:`tongbu.vault.store.Vault` that verification uses."""

    engine: Engine
    keyring: Keyring
    sealer: Sealer
    ledger: Ledger
    audit: AuditLog

    @property
    def location(self) -> str: ...

    def forget_keys(self) -> None: ...


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


def verify(vault: Vault) -> VerifyReport:
    """Check every secret against the manifest and its own authentication tag.

    Detects deleted rows, inserted/renamed rows, rollbacks, ciphertexts moved between fields,
    connections or tenants, bit flips, a forged manifest and undecryptable key wrappings. Each
    problem names the secret. Nothing is modified.
    """
    vault.keyring.unlock()
    report = VerifyReport()
    with vault.engine.connect() as conn:
        # Read state, secrets and tokens inside one explicit transaction: on PostgreSQL a
        # REPEATABLE READ snapshot is not needed for correctness, only for a tidy report.
        state_row = conn.execute(select(state_t).where(state_t.c.id == STATE_ID)).first()
        if state_row is None:
            raise VaultNotInitializedError(
                f"{vault.location} has no vault yet", hint="run `tongbu vault init`"
            )
        state = StateRow.of(state_row)
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
    vault.forget_keys()
    manifest: mf.Manifest | None
    try:
        manifest = vault.ledger.checked(state)
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
                    Problem("modified", str(sn), "ciphertext differs from the one recorded in the manifest")
                )
        try:
            vault.sealer.open_secret(sn, ciphertext, row.version, row.key_version)
        except SecretTamperedError as exc:
            report.problems.append(Problem("undecryptable", str(sn), exc.message.split(": ", 1)[-1]))
        except KeyVersionUnavailableError as exc:
            report.problems.append(Problem("key_unavailable", str(sn), exc.message))
    with vault.engine.connect() as conn:
        wrappings = conn.execute(
            select(datakey_t).where(datakey_t.c.wrapped_by == vault.keyring.master_version)
        ).all()
    for wrapping in wrappings:
        try:
            vault.keyring.data_key(wrapping.key_version)
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
            vault.sealer.open_token(row)
        except VaultError:
            report.problems.append(
                Problem(
                    "token_undecryptable",
                    f"{row.tenant}/{row.connection}#{row.name}",
                    "cached token failed authentication (it will be discarded and fetched again)",
                )
            )
    vault.audit.record_many(
        [
            vault.audit.row(
                "verify",
                None,
                "ok" if report.ok else "problems",
                None,
                f"problems={len(report.problems)}",
            )
        ]
    )
    return report


def reseal(vault: Vault) -> list[Problem]:
    """Rebuild the manifest from the rows that authenticate; return the rows left out.

    For recovery only, after ``verify`` reported a problem and the operator restored or re-set what
    was wrong: it makes the *current* table contents the trusted state.
    """
    excluded: list[Problem] = []
    with vault.ledger.transaction(check_manifest=False) as (conn, state, _old):
        manifest = mf.Manifest(state.vault_id, state.generation, state.current_key_version)
        for row in conn.execute(select(secret_t)).all():
            sn = SecretName(row.tenant, row.connection, row.field)
            try:
                vault.sealer.open_secret(sn, bytes(row.ciphertext), row.version, row.key_version)
            except VaultError as exc:
                excluded.append(Problem("excluded", str(sn), exc.message))
                continue
            manifest.entries[sn.key] = mf.ManifestEntry(
                row.version, row.key_version, crypto.digest(bytes(row.ciphertext))
            )
        vault.audit.record(
            conn,
            "reseal",
            outcome="ok",
            detail=f"entries={len(manifest.entries)} excluded={len(excluded)}",
        )
        vault.ledger.write(conn, state, manifest)
    vault.ledger.invalidate()
    return excluded


__all__ = ["Problem", "VerifyReport", "reseal", "verify"]
