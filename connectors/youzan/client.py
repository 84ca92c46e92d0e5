"""The Youzan (有赞云) open API client: the kit's HTTP client, the self-use app's token, the envelope.

* token: ``POST /auth/token`` with ``client_id``, ``client_secret``, ``authorize_type: silent`` and the
  shop's ``grant_id`` (kdt_id); ``data.expires`` is a millisecond epoch. Kept in the kit's token cache
  (:mod:`connectors.kit.tokens`), fetched again a minute before it expires or when the gateway says it
  is dead (``gw_err_resp.err_code`` 4203), once per call, without counting as a retry;
* calls: ``POST /api/{name}/{version}?access_token=…`` with the parameters as JSON;
* errors arrive with HTTP 200 in the body: ``gw_err_resp`` (gateway: token, rate limit) or
  ``success: false`` with ``code``/``message`` (the API's own). They become the kit's error classes,
  so the retry policy treats them like any other source's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx

from connectors.kit.errors import AuthError, BadRequest, Throttled, Transient
from connectors.kit.http import HttpClient
from connectors.kit.logs import remember_secret
from connectors.kit.settings import HttpSettings
from connectors.kit.tokens import CachedToken, MemoryTokenCache, TokenCache

#: gateway codes: a dead or unknown token, and the call-rate limit ([U] the latter: see the docs)
TOKEN_CODES = frozenset({4201, 4202, 4203})
THROTTLE_CODES = frozenset({4290, 429})


class YouzanClient(HttpClient):
    """API calls of one shop (``grant_id``) for a self-use app."""

    name = "youzan"

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str,
        client_secret: str,
        grant_id: str,
        settings: HttpSettings | None = None,
        tokens: TokenCache | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(settings=settings, base_url=base_url.rstrip("/"), transport=transport)
        remember_secret(client_secret)
        self._credentials = {
            "client_id": client_id,
            "client_secret": client_secret,
            "authorize_type": "silent",
            "grant_id": str(grant_id),
        }
        self._tokens = tokens or MemoryTokenCache()
        self._key = f"youzan:{client_id}:{grant_id}"
        self.calls = 0

    def check(self, response: httpx.Response) -> None:
        """Raise the kit error an HTTP-200 body carries (``gw_err_resp`` or ``success: false``)."""
        if response.request.url.path.endswith("/auth/token"):
            return
        try:
            body = response.json()
        except ValueError:
            raise Transient(
                f"{self.name}: the gateway answered something that is not JSON", kind="bad_body"
            ) from None
        if not isinstance(body, dict):
            raise Transient(f"{self.name}: unexpected answer", kind="bad_body")
        gateway = body.get("gw_err_resp")
        if isinstance(gateway, dict):
            code, message = gateway.get("err_code"), str(gateway.get("err_msg") or "")[:200]
            if code in TOKEN_CODES:
                raise AuthError(f"{self.name}: access token refused ({code} {message})", kind="token")
            if code in THROTTLE_CODES:
                raise Throttled(f"{self.name}: call rate limit ({code} {message})")
            raise BadRequest(f"{self.name}: gateway error {code}: {message}")
        if body.get("success") is False:
            raise BadRequest(
                f"{self.name}: API error {body.get('code')}: {str(body.get('message') or '')[:200]}"
            )

    def access_token(self) -> str:
        """A valid token: cached, or fetched (wrong credentials raise :class:`AuthError`)."""
        cached = self._tokens.get(self._key)
        if cached is not None and cached.expires_at > time.time() + 60:
            return cached.value
        body = self.send("POST", "/auth/token", json=self._credentials).json()
        data = body.get("data") if isinstance(body, dict) else None
        if not body.get("success") or not isinstance(data, dict) or not data.get("access_token"):
            raise AuthError(
                f"{self.name}: token refused ({body.get('code')} {str(body.get('message') or '')[:120]}); "
                "check client_id, client_secret and grant_id (the shop's kdt_id) in the vault"
            )
        token = str(data["access_token"])
        remember_secret(token)
        expires = float(data.get("expires") or 0) / 1000 or time.time() + 7 * 86400
        self._tokens.set(self._key, CachedToken(token, expires))
        return token

    def call(self, api: str, version: str, params: Mapping[str, Any]) -> Any:
        """The ``data`` of one API call, under the retry policy (a dead token is fetched again at once)."""
        body = {k: v for k, v in params.items() if v is not None}

        def attempt() -> Any:
            token = self.access_token()
            self.calls += 1
            try:
                response = self.send(
                    "POST", f"/api/{api}/{version}", params={"access_token": token}, json=body
                )
            except AuthError:
                self._tokens.delete(self._key)
                raise Transient(f"{self.name}: access token expired", retry_after=0.0, kind="token") from None
            return response.json().get("data")

        return self.retrying(attempt, label=f"{api} {version}")


def client_from_config(config: Mapping[str, Any], *, connector: str = "tap-youzan") -> YouzanClient:
    """A client from a tap or event-source config."""
    return YouzanClient(
        str(config.get("base_url") or "https://open.youzanyun.com"),
        client_id=str(config["client_id"]),
        client_secret=str(config["client_secret"]),
        grant_id=str(config["grant_id"]),
        settings=HttpSettings.from_config(config, connector=connector, request_timeout=30),
    )
