"""Sealing and opening ciphertexts: secrets and cached tokens, each bound to exactly one place.

A secret's associated data binds vault id, tenant, connection, field, the secret's write version and
the key version; a token's binds its tenant, connection, name and token version. A ciphertext copied
to another row, tenant or vault fails authentication.
"""

from __future__ import annotations

from typing import Any

from tongbu.vault import crypto
from tongbu.vault.errors import SecretTamperedError
from tongbu.vault.keyring import Keyring
from tongbu.vault.names import SecretName, tampered


class Sealer:
    """Encrypts and decrypts secret and token values with the keys of a :class:`Keyring`."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    # secrets ----------------------------------------------------------------------------------

    def _secret_aad(self, name: SecretName, version: int, key_version: int) -> bytes:
        return crypto.aad(
            "secret",
            vault=self.keyring.vault_id,
            tenant=name.tenant,
            connection=name.connection,
            field=name.field,
            version=version,
            key_version=key_version,
        )

    def seal_secret(self, name: SecretName, value: str, version: int, key_version: int) -> bytes:
        """The ciphertext of write ``version`` of secret ``name`` under data key ``key_version``."""
        return crypto.seal(
            self.keyring.secret_key(key_version, name.tenant),
            value.encode("utf-8"),
            self._secret_aad(name, version, key_version),
            key_version=key_version,
        )

    def open_secret(self, name: SecretName, ciphertext: bytes, version: int, key_version: int) -> str:
        """Decrypt one secret row; any failure becomes a :class:`SecretTamperedError` naming it."""
        try:
            header = crypto.parse_header(ciphertext)
        except crypto.AuthenticationFailed:
            raise tampered(name, "its ciphertext is not in the vault format") from None
        if header.key_version != key_version:
            raise tampered(name, "its key-version column disagrees with the ciphertext header")
        key = self.keyring.secret_key(key_version, name.tenant)
        try:
            return crypto.open_sealed(key, ciphertext, self._secret_aad(name, version, key_version)).decode(
                "utf-8"
            )
        except (crypto.AuthenticationFailed, UnicodeDecodeError):
            raise tampered(
                name, "its ciphertext failed authentication (modified, or moved from another secret)"
            ) from None

    # tokens -----------------------------------------------------------------------------------

    def _token_aad(self, row: Any, key_version: int, token_version: int) -> bytes:
        return crypto.aad(
            "token",
            vault=self.keyring.vault_id,
            tenant=row.tenant,
            connection=row.connection,
            name=row.name,
            version=token_version,
            key_version=key_version,
        )

    def seal_token(self, row: Any, value: str, key_version: int, token_version: int) -> bytes:
        """The ciphertext of a cached token (``row`` is its ``vault_tokens`` row: tenant, connection, name)."""
        self.keyring.unlock()
        return crypto.seal(
            self.keyring.token_key(key_version, row.tenant),
            value.encode("utf-8"),
            self._token_aad(row, key_version, token_version),
            key_version=key_version,
        )

    def open_token(self, row: Any) -> str:
        """Decrypt a cached token row; failure raises :class:`SecretTamperedError` (fetch a new one)."""
        self.keyring.unlock()
        label = f"{row.tenant}/{row.connection}#{row.name}"
        try:
            header = crypto.parse_header(bytes(row.ciphertext))
            if header.key_version != row.key_version:
                raise crypto.AuthenticationFailed()
            return crypto.open_sealed(
                self.keyring.token_key(row.key_version, row.tenant),
                bytes(row.ciphertext),
                self._token_aad(row, row.key_version, row.token_version),
            ).decode("utf-8")
        except (crypto.AuthenticationFailed, UnicodeDecodeError):
            raise SecretTamperedError(
                f"cached token {label} failed authentication", hint="it will be fetched again", secret=label
            ) from None


__all__ = ["Sealer"]
