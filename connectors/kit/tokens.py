"""Access tokens for connectors: a per-process cache, or the vault's shared one.

A connector whose source hands out short-lived tokens (WeCom ``access_token``, OAuth) asks a
:class:`TokenCache` first and fetches only when the token is missing, near expiry or was just rejected.
Two caches:

* :class:`MemoryTokenCache` — one process, thread-safe (the default);
* :class:`VaultTokenSource` — the vault's encrypted token cache (:mod:`tongbu.vault.tokens`), shared by
  every process of a deployment (``tongbu serve``, Dagster runs, taps) with single-flight refresh, so a
  token is fetched once per lifetime between them instead of once each. Opt in per connection with
  ``token_cache: vault``.

Token values are never in a repr, and every value fetched is registered with the log redactor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from connectors.kit.logs import remember_secret

__all__ = ["CachedToken", "MemoryTokenCache", "TokenCache", "VaultTokenSource"]


@dataclass
class CachedToken:
    """An access token and the wall-clock second it expires."""

    value: str
    expires_at: float

    def __repr__(self) -> str:
        return f"CachedToken(value=***, expires_at={self.expires_at:.0f})"


class TokenCache(Protocol):
    """Where access tokens are kept between calls (memory by default; the vault can provide one)."""

    def get(self, key: str) -> CachedToken | None: ...

    def set(self, key: str, token: CachedToken) -> None: ...

    def delete(self, key: str) -> None: ...


class MemoryTokenCache:
    """A process-local token cache (thread-safe)."""

    def __init__(self) -> None:
        self._data: dict[str, CachedToken] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> CachedToken | None:
        with self._lock:
            return self._data.get(key)

    def set(self, key: str, token: CachedToken) -> None:
        with self._lock:
            self._data[key] = token

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)


class VaultTokenSource:
    """One token shared between every process of a deployment through the vault's encrypted token
    cache: single-flight across processes, refreshed ahead of expiry, a rejected token dropped exactly.
    """

    def __init__(
        self, connection: str, *, tenant: str = "default", cache: Any = None, name: str = "access_token"
    ) -> None:
        if cache is None:
            from tongbu.vault.tokens import TokenCache as VaultTokenCache

            cache = VaultTokenCache()
        self.cache = cache
        self.connection = connection
        self.tenant = tenant
        self.name = name

    def get(self, fetch: Callable[[], CachedToken]) -> str:
        """The shared token, calling ``fetch`` only when it is due (in one process at a time)."""
        from tongbu.vault.tokens import TokenGrant

        def refresh(_refresh_token: Any) -> Any:
            token = fetch()
            return TokenGrant(token.value, expires_in=max(1.0, token.expires_at - time.time()))

        value: str = self.cache.get(
            self.connection, self.name, refresh, tenant=self.tenant
        ).get_secret_value()
        remember_secret(value)
        return value

    def invalidate(self, token: str) -> None:
        """The source rejected ``token`` (e.g. WeCom 40014/42001): drop exactly that one."""
        self.cache.invalidate(self.connection, self.name, tenant=self.tenant, token=token)
