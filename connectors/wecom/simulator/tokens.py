"""access_token issue and checks: ``gettoken``, expiry (42001), revocation (40014), ``session_expiry``."""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any

from connectors.wecom.simulator.errors import WeComAPIError


class TokenDesk:
    """The corp's access tokens: token -> [expires_at (wall clock), valid, calls served]."""

    def __init__(self, corp_id: str, corp_secret: str) -> None:
        self.corp_id = corp_id
        self._corp_secret = corp_secret
        self._tokens: dict[str, list[Any]] = {}

    def issued(self) -> list[str]:
        """Every access token handed out and still remembered (tests look for them in logs)."""
        return list(self._tokens)

    def gettoken(self, q: dict[str, str], ttl: int) -> dict[str, Any]:
        """Answer ``/cgi-bin/gettoken`` (raises :class:`WeComAPIError` for bad credentials)."""
        if q.get("corpid") != self.corp_id:
            raise WeComAPIError(40013)
        if not hmac.compare_digest(str(q.get("corpsecret", "")), self._corp_secret):
            raise WeComAPIError(40001)
        now = time.time()
        self._tokens = {t: e for t, e in self._tokens.items() if e[0] > now and e[1]}
        # WeCom hands out the same token while it is young, and a fresh one near expiry.
        for tok, (exp, valid, _calls) in self._tokens.items():
            if valid and exp - now > ttl / 2:
                return {"access_token": tok, "expires_in": int(exp - now)}
        tok = secrets.token_urlsafe(48)[:64]
        self._tokens[tok] = [now + ttl, True, 0]
        return {"access_token": tok, "expires_in": ttl}

    def check(self, q: dict[str, str], calls_per_token: int = 0) -> None:
        """A call's token must be present (41001), known and valid (40014) and unexpired (42001).

        ``calls_per_token`` (the ``session_expiry`` fault) expires a token once it served that many.
        """
        tok = q.get("access_token")
        if not tok:
            raise WeComAPIError(41001)
        ent = self._tokens.get(tok)
        if ent is None or not ent[1]:
            raise WeComAPIError(40014)
        if calls_per_token and ent[2] >= calls_per_token:
            ent[0] = min(ent[0], time.time() - 1)
        if time.time() >= ent[0]:
            raise WeComAPIError(42001)
        ent[2] += 1

    def expire_all(self) -> None:
        """Every issued token expires now (the next call gets 42001)."""
        for ent in self._tokens.values():
            ent[0] = min(ent[0], time.time() - 1)

    def invalidate_all(self) -> None:
        """Every issued token is revoked (the next call gets 40014), as a secret reset does."""
        for ent in self._tokens.values():
            ent[1] = False
