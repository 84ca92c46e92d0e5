"""Reading a "changed between start and end, page N" API completely, whatever its paging limits.

Chinese shop and ERP APIs (Youzan ``youzan.trades.sold.get``, Taobao ``taobao.trades.sold.get``…) page
by number inside a time window and refuse deep pages (``page_no × page_size`` above a cap). To read
everything, :func:`read_windows` walks ``[start, end]`` in windows of at most ``max_span`` seconds and
splits a window in two while it holds more than ``max_depth`` records. Offsets shift when records change
during the read (a record edited mid-read leaves the window, and every later record moves up a page),
so a window whose total changed while it was read is read again.

``fetch(lo, hi, page_no) -> (records, total)`` is one API call for the inclusive window ``[lo, hi]``
(integer seconds).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["read_windows"]

Fetch = Callable[[int, int, int], tuple[Sequence[Any], int]]


def read_windows(
    fetch: Fetch,
    start: int,
    end: int,
    *,
    page_size: int,
    max_depth: int,
    max_span: int | None = None,
    rereads: int = 3,
) -> Iterator[list[Any]]:
    """Every record changed in ``[start, end]``, one list per window, windows in time order."""
    span = max(1, max_span or (end - start + 1))
    pending: list[tuple[int, int]] = []
    lo = start
    while lo <= end:
        hi = min(end, lo + span - 1)
        pending.append((lo, hi))
        lo = hi + 1
    pending.reverse()  # a stack: the earliest window on top
    while pending:
        lo, hi = pending.pop()
        for attempt in range(rereads + 1):
            first, total = fetch(lo, hi, 1)
            if total > max_depth and hi > lo:
                mid = (lo + hi) // 2
                pending += [(mid + 1, hi), (lo, mid)]
                break
            rows = list(first)
            page, changed = 1, False
            while len(rows) < min(total, max_depth) and len(first) == page_size:
                page += 1
                first, again = fetch(lo, hi, page)
                changed |= again != total
                rows.extend(first)
            if not changed or attempt == rereads:
                yield rows
                break
