"""The Tender feeds (标讯) API client: the kit's HTTP client plus the system's token login.

Everything else (timeouts, retries with full jitter, ``Retry-After``, the error taxonomy, log
redaction) is :class:`connectors.kit.http.HttpClient`'s.
"""

from __future__ import annotations

import time
from typing import Any

from connectors.kit.errors import AuthError, Transient
from connectors.kit.http import HttpClient
from connectors.kit.logs import remember_secret
from connectors.kit.settings import HttpSettings
from connectors.kit.tokens import CachedToken, MemoryTokenCache


class TenderClient(HttpClient):
    """``GET`` calls with a bearer token fetched with the client credentials and renewed when refused."""

    name = "tender"

    def __init__(
        self, base_url: str, *, client_id: str, client_secret: str, settings: HttpSettings | None = None
    ) -> None:
        super().__init__(settings=settings, base_url=base_url.rstrip("/"))
        remember_secret(client_secret)
        self._credentials = {"client_id": client_id, "client_secret": client_secret}
        self._tokens = MemoryTokenCache()

    def access_token(self) -> str:
        """A valid token: the cached one, or a new one (wrong credentials raise ``AuthError``)."""
        cached = self._tokens.get("token")
        if cached is not None and cached.expires_at > time.time() + 60:
            return cached.value
        body = self.send("POST", "/api/v1/auth/token", json=self._credentials).json()
        token = str(body["access_token"])
        remember_secret(token)
        self._tokens.set("token", CachedToken(token, time.time() + float(body.get("expires_in", 3600))))
        return token

    def get(self, path: str, **params: Any) -> Any:
        """The decoded body of ``GET path`` (None-valued params left out), under the retry policy."""
        query = {k: v for k, v in params.items() if v is not None}

        def attempt() -> Any:
            token = self.access_token()
            try:
                auth = {"Authorization": f"Bearer {token}"}
                return self.send("GET", path, params=query, headers=auth).json()
            except AuthError:
                # The token expired or was revoked: drop it and retry at once with a new one.
                self._tokens.delete("token")
                raise Transient(f"{self.name}: access token refused", retry_after=0.0, kind="token") from None

        return self.retrying(attempt, label=f"GET {path}")
