"""Resolving ``vault:`` references in config against a vault (the default one unless given).

Lives above :mod:`tongbu.vault.store` (it opens the default vault), while :mod:`tongbu.vault.refs`
(the :class:`~tongbu.vault.refs.Secret` type and reference parsing) sits below it: no import cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tongbu.config import DEFAULT_TENANT
from tongbu.vault.refs import Secret, SecretReader, find_refs, is_ref, lookup, parse_ref
from tongbu.vault.store import Vault


def resolve_ref(ref: str, *, tenant: str = DEFAULT_TENANT, vault: SecretReader | None = None) -> Secret:
    """Look up one reference; the returned :class:`Secret` remembers it."""
    return lookup(ref, vault or _default_vault(), tenant=tenant)


def resolve_refs(
    config: Mapping[str, Any],
    *,
    tenant: str = DEFAULT_TENANT,
    vault: Vault | None = None,
    as_secret: bool = False,
) -> dict[str, Any]:
    """Return a copy of ``config`` with every ``vault:<connection>.<field>`` string replaced.

    Values are plain ``str`` by default (what singer-sdk taps expect); ``as_secret=True`` gives
    :class:`Secret` objects instead. All references are read in one batch (one audit record each) and
    every value is registered with :mod:`tongbu.vault.redact`, so it is masked if it ever reaches a log.
    Raises :class:`SecretNotFoundError` naming the first missing secret, and
    :class:`InvalidReferenceError` naming the config key of a malformed one.
    """
    refs = find_refs(config)
    if not refs:
        return _copy(config)  # type: ignore[return-value]
    vault = vault or _default_vault()
    names = sorted({"{}.{}".format(*parse_ref(ref)) for _, ref in refs})
    values = vault.get_many(names, tenant=tenant)

    def substitute(node: Any) -> Any:
        if isinstance(node, str) and is_ref(node):
            name = "{}.{}".format(*parse_ref(node))
            secret = values[name]
            return Secret(secret.get_secret_value(), ref=node) if as_secret else secret.get_secret_value()
        if isinstance(node, Mapping):
            return {k: substitute(v) for k, v in node.items()}
        if isinstance(node, list | tuple):
            return type(node)(substitute(v) for v in node)
        return node

    return substitute(config)  # type: ignore[no-any-return]


def _copy(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {k: _copy(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return type(node)(_copy(v) for v in node)
    return node


def _default_vault() -> Vault:
    # One vault per process and key environment: unlocking may run Argon2id, too slow to repeat per reference.
    return Vault.default()


__all__ = ["resolve_ref", "resolve_refs"]
