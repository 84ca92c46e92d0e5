"""Opaque paging cursors, as WeCom's: a masked position and a MAC, so a client can neither craft nor
edit one (a tampered cursor is errcode 40058)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct

from connectors.wecom.simulator.errors import WeComAPIError


class CursorCodec:
    """Encodes a few integers into an opaque cursor and back."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._pad = hashlib.sha256(key + b"mask").digest()

    def _mask(self, raw: bytes) -> bytes:
        return bytes(a ^ b for a, b in zip(raw, self._pad, strict=False))

    def make(self, *values: int) -> str:
        """The cursor for ``values``."""
        raw = struct.pack(f">{len(values)}q", *values)
        tag = hmac.new(self._key, raw, hashlib.sha256).digest()[:6]
        return base64.urlsafe_b64encode(self._mask(raw) + tag).decode().rstrip("=")

    def read(self, cursor: str | None, n: int) -> tuple[int, ...] | None:
        """The ``n`` integers of ``cursor`` (None for no cursor); :class:`WeComAPIError` when forged."""
        if not cursor:
            return None
        try:
            blob = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            raw, tag = self._mask(blob[: 8 * n]), blob[8 * n :]
            if len(raw) != 8 * n or not hmac.compare_digest(
                tag, hmac.new(self._key, raw, hashlib.sha256).digest()[:6]
            ):
                raise ValueError
            return struct.unpack(f">{n}q", raw)
        except (ValueError, struct.error):
            raise WeComAPIError(40058, "invalid cursor") from None
