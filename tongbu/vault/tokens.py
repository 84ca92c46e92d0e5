"""Encrypted cache of short-lived tokens with single-flight refresh across threads and processes.

Typical use (a WeCom ``access_token``, valid 7,200 s, rate-limited to fetch)::

    cache = TokenCache(vault)
    token = cache.get("wecom", "access_token", lambda _rt: fetch_wecom_token(corp_secret))
    ... use token.get_secret_value() ...
    # the API said the token is invalid (WeCom may revoke early): drop exactly that token
    cache.invalidate("wecom", "access_token", token=token)

OAuth with rotating refresh tokens: pass ``refresh_token="crm.refresh_token"`` (a vault secret); the
callback receives the current refresh token, and a new one in its :class:`TokenGrant` is written to
the vault (compare-and-set) **in the same transaction** as the new access token, before the access
token is handed to anyone.

How single-flight works:

* a token is refreshed ahead of expiry: at ``issued + ttl − max(min_margin, margin_ratio × ttl)``
  (WeCom: 7,200 s → refreshed after 6,480 s);
* one thread per process refreshes a given token (a per-token lock); across processes the winner is
  whoever sets ``lease_owner`` by compare-and-set (``UPDATE … WHERE lease_owner IS NULL OR
  lease_until < now``), which is atomic on SQLite and PostgreSQL alike; the lease is released when
  the new token is committed;
* the others keep using the old token while it is still inside its validity (the margin exists for
  exactly this), or poll until the winner commits; a lease that outlives ``lease_seconds`` (the
  refresher died) is taken over;
* before calling the token endpoint with a refresh token we record its vault version in
  ``refresh_in_flight``. Finding that mark left behind by a dead refresher means the provider may
  already have rotated (and so revoked) that refresh token; retrying would trip reuse detection and
  revoke the whole token family, so we raise :class:`ReauthRequiredError` instead of looping.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr
from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from tongbu.config import DEFAULT_TENANT
from tongbu.vault.errors import (
    ReauthRequiredError,
    SecretTamperedError,
    TokenError,
    TokenRefreshTimeoutError,
    VaultError,
)
from tongbu.vault.names import SecretName, utcnow
from tongbu.vault.redact import register_secret, scrub_exception
from tongbu.vault.refs import Secret
from tongbu.vault.store import Vault
from tongbu.vault.tables import token_t

log = logging.getLogger("tongbu.vault.tokens")


@dataclass(frozen=True)
class TokenGrant:
    """What a refresh callback returns: the new token, its lifetime and (OAuth) a rotated refresh token."""

    access_token: str = field(repr=False)
    expires_in: float | None = None
    refresh_token: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        rotated = ", refresh_token=***" if self.refresh_token else ""
        return f"TokenGrant(access_token=***, expires_in={self.expires_in}{rotated})"


RefreshFn = Callable[[Secret | None], TokenGrant]


@dataclass
class _Cached:
    token: Secret
    refresh_at: float
    expires_at: float
    token_version: int


class TokenCache:
    """Encrypted, shared cache of short-lived tokens (see module docs for the protocol).

    ``clock`` is injectable for tests; leases compare wall-clock times written by different processes,
    so hosts sharing a PostgreSQL hub need synchronised clocks (NTP) to within ``lease_seconds``.
    """

    def __init__(
        self,
        vault: Vault | None = None,
        *,
        min_margin: float = 60.0,
        margin_ratio: float = 0.10,
        default_ttl: float = 300.0,
        lease_seconds: float = 120.0,
        wait_timeout: float = 150.0,
        poll_interval: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.vault = vault or Vault.default()
        self.min_margin = min_margin
        self.margin_ratio = margin_ratio
        self.default_ttl = default_ttl
        self.lease_seconds = lease_seconds
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval
        self.clock = clock
        self._memory: dict[tuple[str, str, str], _Cached] = {}
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        #: how many times this instance called a refresh callback (tests and metrics)
        self.refresh_calls = 0

    # ------------------------------------------------------------------------------------------
    # public API

    def refresh_at(self, issued_at: float, ttl: float) -> float:
        """When a token issued at ``issued_at`` with lifetime ``ttl`` should be replaced."""
        margin = min(max(self.min_margin, self.margin_ratio * ttl), ttl / 2)
        return issued_at + ttl - margin

    def get(
        self,
        connection: str,
        name: str,
        refresh: RefreshFn,
        *,
        tenant: str = DEFAULT_TENANT,
        refresh_token: str | None = None,
        rotating_refresh_token: bool = True,
    ) -> Secret:
        """Return a valid token, calling ``refresh`` at most once across all workers when it is due.

        ``refresh_token`` names the vault secret (``"<connection>.<field>"``) holding an OAuth refresh
        token; ``refresh`` then receives its current value. ``rotating_refresh_token=False`` is for
        providers that do not rotate refresh tokens: an interrupted refresh is then simply retried.
        """
        key = (tenant, connection, name)
        SecretName.of(tenant, connection, name.replace(":", "_"))  # validate the parts early
        cached = self._memory.get(key)
        if cached is not None and self.clock() < cached.refresh_at:
            return cached.token
        with self._lock_for(key):
            cached = self._memory.get(key)
            if cached is not None and self.clock() < cached.refresh_at:
                return cached.token  # another thread of this process refreshed while we waited
            return self._get_shared(key, refresh, refresh_token, rotating_refresh_token)

    def invalidate(
        self,
        connection: str,
        name: str,
        *,
        tenant: str = DEFAULT_TENANT,
        token: str | SecretStr | None = None,
    ) -> bool:
        """Mark the cached token unusable (the provider rejected it early).

        With ``token``, only that exact token is invalidated: if another worker already replaced it,
        nothing happens, so N workers that all saw the same rejection cause one refresh, not N.
        Returns True when a cached token was invalidated.
        """
        key = (tenant, connection, name)
        self._memory.pop(key, None)
        wanted = token.get_secret_value() if isinstance(token, SecretStr) else token
        row = self._row(key)
        if row is None or row.ciphertext is None:
            return False
        if wanted is not None:
            try:
                if self.vault.sealer.open_token(row) != wanted:
                    return False
            except SecretTamperedError:
                pass
        with self.vault.engine.begin() as conn:
            result = conn.execute(
                update(token_t)
                .where(token_t.c.id == row.id, token_t.c.token_version == row.token_version)
                .values(refresh_at=0.0, expires_at=0.0, updated_at=utcnow())
            )
            if result.rowcount:
                self.vault.audit.record(
                    conn, "token.invalidate", name=_label(key), detail=f"token_version={row.token_version}"
                )
        return bool(result.rowcount)

    def clear(self, connection: str, name: str, *, tenant: str = DEFAULT_TENANT) -> None:
        """Forget a cached token entirely (e.g. when a connection is removed)."""
        key = (tenant, connection, name)
        self._memory.pop(key, None)
        with self.vault.engine.begin() as conn:
            conn.execute(delete(token_t).where(*_match(key)))
            self.vault.audit.record(conn, "token.clear", name=_label(key))

    # ------------------------------------------------------------------------------------------
    # protocol

    def _lock_for(self, key: tuple[str, str, str]) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def _row(self, key: tuple[str, str, str]) -> Any:
        with self.vault.engine.connect() as conn:
            return conn.execute(select(token_t).where(*_match(key))).first()

    def _usable(self, key: tuple[str, str, str], row: Any, until: str) -> Secret | None:
        """Decrypt ``row`` if its token is still before ``refresh_at`` (or ``expires_at``)."""
        if row is None or row.ciphertext is None:
            return None
        limit = row.refresh_at if until == "refresh" else row.expires_at
        if limit is None or self.clock() >= limit:
            return None
        try:
            value = self.vault.sealer.open_token(row)
        except SecretTamperedError:
            log.warning("cached token %s failed authentication; fetching a new one", _label(key))
            return None
        register_secret(value)
        token = Secret(value)
        self._memory[key] = _Cached(token, row.refresh_at or 0.0, row.expires_at or 0.0, row.token_version)
        self.vault.audit.record_many(
            [self.vault.audit.row("token.read", _label(key), "ok", row.key_version, None)]
        )
        return token

    def _get_shared(
        self,
        key: tuple[str, str, str],
        refresh: RefreshFn,
        refresh_token: str | None,
        rotating: bool,
    ) -> Secret:
        deadline = self.clock() + self.wait_timeout
        delay = self.poll_interval
        while True:
            row = self._row(key)
            token = self._usable(key, row, "refresh")
            if token is not None:
                return token
            owner = self._acquire(key, row)
            if owner is not None:
                return self._refresh_holding_lease(key, owner, refresh, refresh_token, rotating)
            # Someone else is refreshing. The margin keeps the old token valid meanwhile: use it.
            token = self._usable(key, row, "expiry")
            if token is not None:
                self._memory[key].refresh_at = self.clock() + self.poll_interval  # re-check soon
                return token
            if self.clock() > deadline:
                raise TokenRefreshTimeoutError(
                    f"token {_label(key)} is being refreshed by another worker that did not finish in "
                    f"{self.wait_timeout:.0f} s",
                    hint="check the other worker's logs; the lease expires by itself",
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _acquire(self, key: tuple[str, str, str], row: Any) -> str | None:
        """Compare-and-set the refresh lease; return our owner id if we won it."""
        owner = f"{self.vault.actor}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"[:200]
        now = self.clock()
        if row is None:
            try:
                with self.vault.engine.begin() as conn:
                    conn.execute(
                        insert(token_t).values(
                            tenant=key[0],
                            connection=key[1],
                            name=key[2],
                            token_version=0,
                            lease_owner=owner,
                            lease_until=now + self.lease_seconds,
                            updated_at=utcnow(),
                        )
                    )
            except SAIntegrityError:
                return None  # another worker created the row (and holds the lease) first
            return owner
        with self.vault.engine.begin() as conn:
            result = conn.execute(
                update(token_t)
                .where(
                    token_t.c.id == row.id,
                    or_(token_t.c.lease_owner.is_(None), token_t.c.lease_until < now),
                )
                .values(lease_owner=owner, lease_until=now + self.lease_seconds)
            )
        return owner if result.rowcount == 1 else None

    def _release(self, row_id: int, owner: str, *, clear_in_flight: bool) -> None:
        values: dict[str, Any] = {"lease_owner": None, "lease_until": None}
        if clear_in_flight:
            values["refresh_in_flight"] = None
        with self.vault.engine.begin() as conn:
            conn.execute(
                update(token_t).where(token_t.c.id == row_id, token_t.c.lease_owner == owner).values(**values)
            )

    def _refresh_holding_lease(
        self,
        key: tuple[str, str, str],
        owner: str,
        refresh: RefreshFn,
        refresh_token: str | None,
        rotating: bool,
    ) -> Secret:
        row = self._row(key)
        assert row is not None
        # Between our read and the lease, another worker may have committed a fresh token.
        token = self._usable(key, row, "refresh")
        if token is not None:
            self._release(row.id, owner, clear_in_flight=False)
            return token
        tenant = key[0]
        current_rt: Secret | None = None
        rt_version: int | None = None
        in_flight_set = False
        try:
            if refresh_token is not None:
                info = self.vault.info(refresh_token, tenant=tenant)
                rt_version = info.version
                if rotating and row.refresh_in_flight is not None and row.refresh_in_flight == rt_version:
                    self.vault.audit.record_many(
                        [
                            self.vault.audit.row(
                                "token.reauth_required", _label(key), "ReauthRequiredError", None, None
                            )
                        ]
                    )
                    raise ReauthRequiredError(
                        f"an earlier refresh of token {_label(key)} was interrupted after it may have used "
                        f"refresh token {info.name}; reusing it could revoke the whole grant",
                        hint=f"re-authorise the connection and store the new refresh token with "
                        f"`{info.name.cli_hint()}`",
                        secret=str(info.name),
                    )
                current_rt = self.vault.get(refresh_token, tenant=tenant)
                with self.vault.engine.begin() as conn:
                    conn.execute(
                        update(token_t)
                        .where(token_t.c.id == row.id, token_t.c.lease_owner == owner)
                        .values(refresh_in_flight=rt_version)
                    )
                in_flight_set = True
            self.refresh_calls += 1
            grant = refresh(current_rt)
            if (
                not isinstance(grant, TokenGrant)
                or not isinstance(grant.access_token, str)
                or not grant.access_token
            ):
                raise TokenError(
                    f"the refresh callback for token {_label(key)} returned no access token",
                    hint="return TokenGrant(access_token=..., expires_in=...)",
                )
        except BaseException as exc:
            if isinstance(exc, Exception):
                # The call failed with an answer (or never started): the refresh token was not spent,
                # so the in-flight mark goes. A killed process never gets here and leaves the mark.
                self._release(row.id, owner, clear_in_flight=not isinstance(exc, ReauthRequiredError))
                if not isinstance(exc, VaultError):
                    self.vault.audit.record_many(
                        [self.vault.audit.row("token.refresh", _label(key), type(exc).__name__, None, None)],
                        fail_closed=False,
                    )
                    clean = scrub_exception(exc)
                    if clean is not exc:
                        raise clean from None
            raise
        register_secret(grant.access_token)
        if grant.refresh_token:
            register_secret(grant.refresh_token)
        issued = self.clock()
        ttl = float(grant.expires_in) if grant.expires_in else self.default_ttl
        refresh_at = self.refresh_at(issued, ttl)
        new_version = row.token_version + 1

        def write_token(conn: Any, _state: Any = None) -> None:
            key_version = self.vault.current_key_version(conn)
            ciphertext = self.vault.sealer.seal_token(row, grant.access_token, key_version, new_version)
            # Not conditional on still owning the lease: if our lease expired mid-call the token we
            # hold is still the newest (and a rotated refresh token must be stored regardless).
            conn.execute(
                update(token_t)
                .where(token_t.c.id == row.id)
                .values(
                    ciphertext=ciphertext,
                    key_version=key_version,
                    token_version=new_version,
                    issued_at=issued,
                    expires_at=issued + ttl,
                    refresh_at=refresh_at,
                    lease_owner=None,
                    lease_until=None,
                    refresh_in_flight=None,
                    updated_at=utcnow(),
                )
            )
            self.vault.audit.record(
                conn, "token.refresh", name=_label(key), key_version=key_version, detail=f"ttl={ttl:.0f}"
            )

        try:
            if (
                refresh_token is not None
                and grant.refresh_token
                and (current_rt is None or grant.refresh_token != current_rt.get_secret_value())
            ):
                # The rotated refresh token and the access token commit together, before anyone
                # can use either; compare-and-set on the refresh token's version.
                self.vault.set_many(
                    {refresh_token: grant.refresh_token},
                    tenant=tenant,
                    expected_versions={refresh_token: rt_version or 0},
                    action="token.rotate_refresh",
                    _conn_hook=write_token,
                )
            else:
                with self.vault.engine.begin() as conn:
                    write_token(conn)
        except Exception:
            if in_flight_set:
                log.error("token %s: the provider issued a new token but it could not be stored", _label(key))
            raise
        token = Secret(grant.access_token)
        self._memory[key] = _Cached(token, refresh_at, issued + ttl, new_version)
        return token


def _match(key: tuple[str, str, str]) -> tuple[Any, ...]:
    return (token_t.c.tenant == key[0], token_t.c.connection == key[1], token_t.c.name == key[2])


def _label(key: tuple[str, str, str]) -> SecretName:
    # Audit rows store the token's name in the field column, prefixed so it never collides with a secret.
    return SecretName(key[0], key[1], f"token:{key[2]}")


__all__ = ["RefreshFn", "TokenCache", "TokenGrant"]
