"""Resolve ``vault:`` references in connection configs at run time (and only then)."""

from __future__ import annotations

from typing import Any

from tongbu.config import DEFAULT_TENANT
from tongbu.vault.refs import VAULT_PREFIX


def has_refs(value: Any) -> bool:
    """True when any string in ``value`` is a ``vault:`` reference."""
    if isinstance(value, str):
        return value.startswith(VAULT_PREFIX)
    if isinstance(value, dict):
        return any(has_refs(v) for v in value.values())
    if isinstance(value, list):
        return any(has_refs(v) for v in value)
    return False


def resolve_secrets(
    config: dict[str, Any], *, tenant: str = DEFAULT_TENANT, engine: Any = None
) -> dict[str, Any]:
    """Return ``config`` with every ``vault:<connection>.<field>`` replaced by the secret's value.

    ``engine`` is the hub database whose vault holds the secrets (default: the configured hub).
    """
    if not has_refs(config):
        return dict(config)
    # Imported lazily: only projects that reference the vault need a master key.
    from tongbu.vault import Vault, resolve_refs

    return resolve_refs(config, tenant=tenant, vault=Vault(engine) if engine is not None else None)
