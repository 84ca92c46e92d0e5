"""The vault's only cryptography: AES-256-GCM sealing, key wrapping, HKDF and HMAC.

Kept in one small module so a reviewer can audit every use of ``hazmat`` in one read. Nothing here
touches the database, logs, or knows about secrets' names beyond the associated data it is handed.

Ciphertext format (binary, stored in ``LargeBinary`` columns)::

    b"TBV1" | key_version (uint32, big endian) | nonce (12 bytes) | AES-GCM ciphertext + 16-byte tag

The 8-byte header is self-describing, so a vault that is half way through a rotation can hold both key
versions side by side, and it is part of the associated data, so editing the header breaks the tag.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"TBV1"
HEADER = struct.Struct(">4sI")
NONCE_BYTES = 12  # 96-bit nonces: the size GCM is specified and analysed for
KEY_BYTES = 32  # AES-256
TAG_BYTES = 16

__all__ = [
    "KEY_BYTES",
    "AuthenticationFailed",
    "CiphertextHeader",
    "aad",
    "derive_key",
    "hmac_digest",
    "new_key",
    "open_sealed",
    "parse_header",
    "seal",
]


class AuthenticationFailed(Exception):
    """A ciphertext did not authenticate: wrong key, wrong associated data, or modified bytes.

    Deliberately carries no detail: callers translate it into a :class:`VaultError` that names the
    secret, and AES-GCM cannot tell the three causes apart anyway.
    """


@dataclass(frozen=True)
class CiphertextHeader:
    """The clear-text prefix of a sealed value."""

    format: int
    key_version: int


def new_key() -> bytes:
    """A fresh random 256-bit key from the OS CSPRNG."""
    return os.urandom(KEY_BYTES)


def aad(purpose: str, **context: str | int) -> bytes:
    """Canonical associated data: sorted-key compact JSON.

    JSON with sorted keys is unambiguous where plain concatenation is not (``("ab","c")`` and
    ``("a","bc")`` would collide), and readable when debugging a mismatch.
    """
    return json.dumps({"purpose": purpose, **context}, sort_keys=True, separators=(",", ":")).encode()


def seal(key: bytes, plaintext: bytes, associated_data: bytes, *, key_version: int) -> bytes:
    """Encrypt ``plaintext`` under ``key`` with a fresh random nonce; return the versioned blob."""
    header = HEADER.pack(MAGIC, key_version)
    nonce = os.urandom(NONCE_BYTES)  # never reused: fresh per call, independent of any counter state
    body = AESGCM(key).encrypt(nonce, plaintext, header + associated_data)
    return header + nonce + body


def parse_header(blob: bytes) -> CiphertextHeader:
    """Read the format and key version of a sealed blob without decrypting it."""
    if len(blob) < HEADER.size + NONCE_BYTES + TAG_BYTES:
        raise AuthenticationFailed()
    magic, key_version = HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise AuthenticationFailed()
    return CiphertextHeader(format=1, key_version=key_version)


def open_sealed(key: bytes, blob: bytes, associated_data: bytes) -> bytes:
    """Decrypt a blob produced by :func:`seal`; raise :class:`AuthenticationFailed` on any mismatch."""
    parse_header(blob)
    header, nonce, body = (
        blob[: HEADER.size],
        blob[HEADER.size : HEADER.size + NONCE_BYTES],
        blob[HEADER.size + NONCE_BYTES :],
    )
    try:
        return AESGCM(key).decrypt(nonce, body, header + associated_data)
    except InvalidTag:
        raise AuthenticationFailed() from None


def derive_key(root: bytes, info: str, *, salt: bytes) -> bytes:
    """HKDF-SHA256: one root key, many independent purpose keys (wrapping, MAC, per-tenant data)."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=info.encode()).derive(root)


def hmac_digest(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256."""
    return hmac.new(key, message, hashlib.sha256).digest()


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare MACs without a timing side channel."""
    return hmac.compare_digest(a, b)


def digest(data: bytes) -> str:
    """A short, stable fingerprint of public bytes (ciphertexts) for the manifest: 128-bit SHA-256 prefix."""
    return hashlib.sha256(data).hexdigest()[:32]
