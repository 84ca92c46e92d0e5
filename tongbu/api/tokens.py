"""API tokens: random bearer secrets stored only as their SHA-256, with a scope and a name (the author).

A token is ``tbk_`` + 43 URL-safe characters (256 random bits): shown once when it is created, never
stored, logged or shown again. A high-entropy secret needs no slow hash: SHA-256 of it is a safe
lookup key (nobody can guess a preimage), and the lookup is by that key, so nothing is compared
character by character.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import DateTime, Engine, Integer, String, UniqueConstraint, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from tongbu.config import DEFAULT_TENANT
from tongbu.db import Base

PREFIX = "tbk_"
SCOPES = ("read", "write")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_TOKEN = re.compile(r"^tbk_[A-Za-z0-9_-]{43}$")


class ApiToken(Base):
    """One API token: its hash, scope and name; revoked tokens stay for the record."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), default=DEFAULT_TENANT, nullable=False)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    token_sha256: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    scope: Mapped[str] = mapped_column(String(8), nullable=False)
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.current_timestamp(), nullable=False
    )
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)


@dataclass(frozen=True)
class TokenInfo:
    """Who a valid token belongs to."""

    name: str
    scope: str

    @property
    def author(self) -> str:
        """The author recorded on every change made with this token."""
        return f"api:{self.name}"

    def may(self, scope: str) -> bool:
        """Whether this token may do what ``scope`` needs (``write`` implies ``read``)."""
        return scope == "read" or self.scope == "write"


class TokenError(ValueError):
    """A token command that cannot be done (bad name or scope, a name in use, no such token)."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Create, verify, list and revoke the API tokens of one tenant."""

    _T = ApiToken.__table__

    def __init__(self, engine: Engine, tenant: str = DEFAULT_TENANT) -> None:
        self.engine = engine
        self.tenant = tenant

    def create(self, name: str, scope: str = "read", *, by: str | None = None) -> str:
        """A new token (returned once, stored only as its hash)."""
        if not _NAME.match(name):
            raise TokenError(f"token name {name!r}: letters, digits and _.@- only, at most 64")
        if scope not in SCOPES:
            raise TokenError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        token = PREFIX + secrets.token_urlsafe(32)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(self._T).values(
                        tenant_id=self.tenant,
                        name=name,
                        token_sha256=_digest(token),
                        scope=scope,
                        created_by=by,
                        created_at=dt.datetime.now(dt.UTC),
                    )
                )
        except IntegrityError:
            raise TokenError(f"a token named {name!r} exists; revoke it or pick another name") from None
        return token

    def verify(self, token: str) -> TokenInfo | None:
        """The owner of a valid, unrevoked token of this tenant; None otherwise."""
        if not _TOKEN.match(token):  # cheap shape check before any database work
            return None
        t = self._T
        with self.engine.begin() as conn:
            row = conn.execute(
                select(t.c.id, t.c.name, t.c.scope, t.c.last_used_at).where(
                    t.c.token_sha256 == _digest(token), t.c.tenant_id == self.tenant, t.c.revoked_at.is_(None)
                )
            ).first()
            if row is None:
                return None
            now = dt.datetime.now(dt.UTC)
            last = row.last_used_at
            if last is None or (last if last.tzinfo else last.replace(tzinfo=dt.UTC)) < now - dt.timedelta(
                minutes=1
            ):
                conn.execute(update(t).where(t.c.id == row.id).values(last_used_at=now))  # coarse: 1/min
        return TokenInfo(row.name, row.scope)

    def list(self) -> list[dict[str, object]]:
        """Every token of the tenant (names, scopes, times; never the secret)."""
        t = self._T
        cols = (t.c.name, t.c.scope, t.c.created_by, t.c.created_at, t.c.last_used_at, t.c.revoked_at)
        with self.engine.connect() as conn:
            return [
                dict(r) for r in conn.execute(select(*cols).where(t.c.tenant_id == self.tenant)).mappings()
            ]

    def revoke(self, name: str) -> None:
        """Revoke a token by name (it stops working at once)."""
        t = self._T
        with self.engine.begin() as conn:
            done = conn.execute(
                update(t)
                .where(t.c.tenant_id == self.tenant, t.c.name == name, t.c.revoked_at.is_(None))
                .values(revoked_at=dt.datetime.now(dt.UTC))
            ).rowcount
        if not done:
            raise TokenError(f"no active token named {name!r}; see `tongbu api token list`")
