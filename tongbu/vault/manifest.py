"""The manifest: one authenticated list of every secret the vault should hold.

AES-GCM with bound associated data already stops a ciphertext from being edited or moved to another
field, connection or tenant. It cannot notice a row that was *deleted*, or *rolled back* to an older
ciphertext that was once valid in the same place. The manifest closes that gap (SOPS's file MAC plays
the same role): it lists ``(tenant, connection, field) → (version, key version, ciphertext digest)`` and
the vault generation, and is authenticated with an HMAC under a key derived from the vault's key
hierarchy. Every write rewrites it in the same transaction; every read checks its entry against it.

What it cannot catch is a rollback of the *whole* database to an older consistent copy; for that,
record ``generation``/``digest`` from ``tongbu vault verify`` somewhere the database's owner cannot edit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tongbu.vault import crypto

MANIFEST_FORMAT = 1
MAC_LABEL = b"tongbu-vault/manifest/v1\x00"

EntryKey = tuple[str, str, str]  # tenant, connection, field


@dataclass(frozen=True)
class ManifestEntry:
    """What the manifest expects of one secret row."""

    version: int
    key_version: int
    digest: str


@dataclass
class Manifest:
    """The expected contents of the vault at one generation."""

    vault_id: str
    generation: int
    key_version: int
    entries: dict[EntryKey, ManifestEntry] = field(default_factory=dict)

    def body(self) -> str:
        """Canonical JSON (sorted entries, compact), the exact bytes the MAC covers."""
        rows = [
            [t, c, f, e.version, e.key_version, e.digest] for (t, c, f), e in sorted(self.entries.items())
        ]
        return json.dumps(
            {
                "format": MANIFEST_FORMAT,
                "vault": self.vault_id,
                "generation": self.generation,
                "key_version": self.key_version,
                "entries": rows,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def parse(cls, body: str) -> Manifest:
        """Inverse of :meth:`body`; raises ``ValueError`` on anything malformed."""
        data = json.loads(body)
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError("unknown manifest format")
        entries = {
            (str(t), str(c), str(f)): ManifestEntry(int(v), int(kv), str(d))
            for t, c, f, v, kv, d in data["entries"]
        }
        return cls(
            vault_id=str(data["vault"]),
            generation=int(data["generation"]),
            key_version=int(data["key_version"]),
            entries=entries,
        )


def mac(mac_key: bytes, body: str) -> bytes:
    """HMAC-SHA256 over the manifest body, domain-separated from every other use of the key."""
    return crypto.hmac_digest(mac_key, MAC_LABEL + body.encode())


def verify(mac_key: bytes, body: str, tag: bytes) -> bool:
    """Constant-time check of a stored manifest MAC."""
    return crypto.constant_time_equal(mac(mac_key, body), tag)
