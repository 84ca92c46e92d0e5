"""tongbu's encrypted credential vault.

Public API (everything a connector, the CLI or the Dagster resource needs)::

    from tongbu.vault import Vault, TokenCache, TokenGrant, resolve_refs, Secret, install_redaction

    vault = Vault()                                  # hub DB + master key from the environment
    vault.set("kingdee.app_secret", "…")             # encrypt and store (audited)
    vault.get("kingdee.app_secret").get_secret_value()
    config = resolve_refs({"app_secret": "vault:kingdee.app_secret"}, tenant="default")

See ``docs/security.md`` for the threat model and ``tongbu vault --help`` for the CLI.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from tongbu.vault.errors import (
    AuditError,
    ConcurrentUpdateError,
    IntegrityError,
    InvalidReferenceError,
    InvalidSecretNameError,
    KeyVersionUnavailableError,
    ManifestError,
    MasterKeyError,
    MasterKeyFormatError,
    MasterKeyMissingError,
    MasterKeyPermissionError,
    MasterKeyRetiredError,
    ReauthRequiredError,
    RotationError,
    RotationInProgressError,
    SecretNotFoundError,
    SecretTamperedError,
    TokenError,
    TokenRefreshTimeoutError,
    UnresolvedSecretError,
    VaultAlreadyInitializedError,
    VaultError,
    VaultNotInitializedError,
    WrongMasterKeyError,
)

if TYPE_CHECKING:
    from tongbu.vault.keys import (
        EnvKeySource,
        FileKeySource,
        MasterKeySource,
        PassphraseKeySource,
        RawKeySource,
        default_key_file,
        default_key_source,
        write_key_file,
    )
    from tongbu.vault.redact import (
        RedactedError,
        RedactingFilter,
        contains_secret,
        format_exception_redacted,
        install_redaction,
        redact,
        redact_value,
        redacting_errors,
        register_secret,
        scrub_exception,
        scrub_mapping,
    )
    from tongbu.vault.refs import (
        Secret,
        SecretConfigModel,
        find_refs,
        is_ref,
        parse_ref,
    )
    from tongbu.vault.resolve import resolve_ref, resolve_refs
    from tongbu.vault.rotate import RotationStatus, abort_rotation, rotate, rotation_status
    from tongbu.vault.store import Problem, SecretInfo, SecretName, Vault, VerifyReport
    from tongbu.vault.tokens import TokenCache, TokenGrant

# The store, rotation and token cache pull in SQLAlchemy (about half a second of start-up on a
# small machine), redaction and references pydantic; load them on first use so that commands which
# never touch the vault (``tongbu mappings suggest``, ``--help``) start fast.
_MODULES = {
    "keys": (
        "EnvKeySource",
        "FileKeySource",
        "MasterKeySource",
        "PassphraseKeySource",
        "RawKeySource",
        "default_key_file",
        "default_key_source",
        "write_key_file",
    ),
    "redact": (
        "RedactedError",
        "RedactingFilter",
        "contains_secret",
        "format_exception_redacted",
        "install_redaction",
        "redact",
        "redact_value",
        "redacting_errors",
        "register_secret",
        "scrub_exception",
        "scrub_mapping",
    ),
    "refs": (
        "Secret",
        "SecretConfigModel",
        "find_refs",
        "is_ref",
        "parse_ref",
    ),
    "resolve": ("resolve_ref", "resolve_refs"),
    "rotate": ("RotationStatus", "abort_rotation", "rotate", "rotation_status"),
    "store": ("Problem", "SecretInfo", "SecretName", "Vault", "VerifyReport"),
    "tokens": ("TokenCache", "TokenGrant"),
}
_LAZY = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """Keeps ``tongbu.vault.rotate`` the function: importing the submodule of the same name would
    otherwise rebind the package attribute to the module (the submodule stays in ``sys.modules``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _LAZY:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "AuditError",
    "ConcurrentUpdateError",
    "EnvKeySource",
    "FileKeySource",
    "IntegrityError",
    "InvalidReferenceError",
    "InvalidSecretNameError",
    "KeyVersionUnavailableError",
    "ManifestError",
    "MasterKeyError",
    "MasterKeyFormatError",
    "MasterKeyMissingError",
    "MasterKeyPermissionError",
    "MasterKeyRetiredError",
    "MasterKeySource",
    "PassphraseKeySource",
    "Problem",
    "RawKeySource",
    "ReauthRequiredError",
    "RedactedError",
    "RedactingFilter",
    "RotationError",
    "RotationInProgressError",
    "RotationStatus",
    "Secret",
    "SecretConfigModel",
    "SecretInfo",
    "SecretName",
    "SecretNotFoundError",
    "SecretTamperedError",
    "TokenCache",
    "TokenError",
    "TokenGrant",
    "TokenRefreshTimeoutError",
    "UnresolvedSecretError",
    "Vault",
    "VaultAlreadyInitializedError",
    "VaultError",
    "VaultNotInitializedError",
    "VerifyReport",
    "WrongMasterKeyError",
    "abort_rotation",
    "contains_secret",
    "default_key_file",
    "default_key_source",
    "find_refs",
    "format_exception_redacted",
    "install_redaction",
    "is_ref",
    "parse_ref",
    "redact",
    "redact_value",
    "redacting_errors",
    "register_secret",
    "resolve_ref",
    "resolve_refs",
    "rotate",
    "rotation_status",
    "scrub_exception",
    "scrub_mapping",
    "write_key_file",
]
