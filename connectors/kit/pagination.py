"""Paginators: singer-sdk's own (:mod:`singer_sdk.pagination`), plus the shapes tongbu's sources use.

A paginator holds the token of the next page and :meth:`advance` reads it from the page just fetched;
:func:`paginate` drives one with a ``fetch(token)`` function, so the same loop serves an httpx
response (``Link`` header), a decoded JSON body (an opaque cursor) or a list of rows (keyset, offset).
singer-sdk's loop check applies to all: a source that hands back the same token twice raises instead
of looping forever.

* :class:`CursorPaginator` — an opaque cursor in the body (WeCom ``next_cursor``; empty = done);
* :class:`KeysetPaginator` — "after the last row's key" (Kingdee ``(FModifyDate, id)``); ends on an
  empty page, not a short one (a server that caps the page size below ours would end a sync early);
* :class:`OffsetPaginator` — ``start + page_size``; ends on an empty (or, if asked, short) page;
* :class:`LinkHeaderPaginator` — RFC 8288 ``Link: <...>; rel="next"`` (singer-sdk's
  :class:`~singer_sdk.pagination.HeaderLinkPaginator`; works on httpx responses as they are).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar, cast

from singer_sdk.pagination import BaseAPIPaginator, HeaderLinkPaginator
from singer_sdk.pagination import OffsetPaginator as _SDKOffsetPaginator

__all__ = [
    "CursorPaginator",
    "KeysetPaginator",
    "LinkHeaderPaginator",
    "OffsetPaginator",
    "paginate",
]

P = TypeVar("P")
K = TypeVar("K")

#: ``Link: <...>; rel="next"``; the token is a parsed URL (``token.geturl()`` to fetch it)
LinkHeaderPaginator = HeaderLinkPaginator


class CursorPaginator(BaseAPIPaginator[str | None]):
    """An opaque cursor read from a decoded JSON page (``page[key]``); a missing or empty one ends."""

    def __init__(self, key: str = "next_cursor", start: str | None = None) -> None:
        super().__init__(start)
        self.key = key

    def get_next(self, response: Any) -> str | None:
        page = cast(Mapping[str, Any], response)
        value = page.get(self.key)
        return str(value) if value else None


class KeysetPaginator(BaseAPIPaginator[K | None], Generic[K]):
    """The key of the last row of a page (``key_of(rows[-1])``); ends on an empty page."""

    def __init__(self, key_of: Callable[[Any], K], start: K | None = None) -> None:
        super().__init__(start)
        self._key_of = key_of

    def has_more(self, response: Any) -> bool:
        return bool(response)

    def get_next(self, response: Any) -> K | None:
        rows = cast(Sequence[Any], response)
        return self._key_of(rows[-1])


class OffsetPaginator(_SDKOffsetPaginator):
    """Row offsets (``start``, ``start + page_size``, ...); ends on an empty page, or on a short one
    with ``stop_on_short=True`` when the source is known to fill every page."""

    def __init__(self, page_size: int, start: int = 0, *, stop_on_short: bool = False) -> None:
        super().__init__(start, page_size)
        self.stop_on_short = stop_on_short

    def has_more(self, response: Any) -> bool:
        rows = cast(Sequence[Any], response)
        if not rows:
            return False
        return not (self.stop_on_short and len(rows) < self.page_size)


def paginate(fetch: Callable[[Any], P], paginator: BaseAPIPaginator[Any]) -> Iterator[P]:
    """Pages from ``fetch(token)``, starting at the paginator's start value, until it is finished.

    An empty list of rows (the end of a keyset or offset read) is not yielded."""
    advance = cast(Any, paginator).advance  # singer-sdk types pages as requests.Response; any page works
    while not paginator.finished:
        page = fetch(paginator.current_value)
        if not (isinstance(page, list | tuple) and not page):
            yield page
        advance(page)
