"""Every error the vault raises, in one module.

Each message names the secret (tenant/connection.field) and says what to do next; none ever carries a
secret value, a key, or a ciphertext. The CLI prints ``str(error)`` as one line, so messages stay short.
"""

from __future__ import annotations


class VaultError(Exception):
    """Base class: a vault problem the operator can act on.

    ``str(error)`` is the full one-line message: what went wrong, then what to do (the ``hint``).
    """

    #: process exit code the CLI uses for this class of problem
    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None, secret: str | None = None) -> None:
        self.message = message
        self.hint = hint
        self.secret = secret
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


# --- master key -------------------------------------------------------------------------------------


class MasterKeyError(VaultError):
    """The master key could not be loaded or does not open this vault."""


class MasterKeyMissingError(MasterKeyError):
    """No master key source is configured, or the configured key file does not exist."""


class MasterKeyPermissionError(MasterKeyError):
    """The key file is readable by other users, or sits inside the data directory."""


class MasterKeyFormatError(MasterKeyError):
    """The key material is not a 32-byte key in base64 or hex, or a passphrase is too short."""


class WrongMasterKeyError(MasterKeyError):
    """The master key is well formed but was never a key of this vault."""


class MasterKeyRetiredError(WrongMasterKeyError):
    """The master key belonged to this vault but was replaced by a completed rotation."""


# --- vault state ------------------------------------------------------------------------------------


class VaultNotInitializedError(VaultError):
    """The database has no vault yet (``tongbu vault init`` was never run against it)."""


class VaultAlreadyInitializedError(VaultError):
    """``init`` was asked to create a vault where one already exists."""


class SecretNotFoundError(VaultError, KeyError):
    """The named secret does not exist for this tenant."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return VaultError.__str__(self)


class InvalidSecretNameError(VaultError, ValueError):
    """A secret name is not ``<connection>.<field>`` with safe characters."""


class InvalidReferenceError(VaultError, ValueError):
    """A config string starts with ``vault:`` but is not a well-formed reference."""


class UnresolvedSecretError(VaultError):
    """A :class:`~tongbu.vault.refs.Secret` holds only a reference; it was never resolved."""


class ConcurrentUpdateError(VaultError):
    """A compare-and-set write lost against another writer (the expected version had moved on)."""


# --- integrity --------------------------------------------------------------------------------------


class IntegrityError(VaultError):
    """A ciphertext, key wrapping or manifest failed authentication: tampering or corruption."""

    exit_code = 3


class SecretTamperedError(IntegrityError):
    """One secret's ciphertext does not authenticate, or disagrees with the manifest."""


class ManifestError(IntegrityError):
    """The manifest MAC does not verify, so deletions and rollbacks can no longer be ruled out."""


class KeyVersionUnavailableError(IntegrityError):
    """A ciphertext names a key version whose data key this master key cannot unwrap."""


# --- rotation ---------------------------------------------------------------------------------------


class RotationError(VaultError):
    """Rotation cannot start, resume or finish as asked."""


class RotationInProgressError(RotationError):
    """Another rotation is under way; it must be resumed with the same new key (or aborted)."""


# --- token cache ------------------------------------------------------------------------------------


class TokenError(VaultError):
    """Base for token-cache failures."""


class TokenRefreshTimeoutError(TokenError):
    """Another worker holds the refresh lease and did not finish in time."""


class ReauthRequiredError(TokenError):
    """The refresh token may already be spent (an earlier refresh died mid-flight); re-authorise."""


class AuditError(VaultError):
    """The audit record could not be written; the vault fails closed and returns nothing."""
