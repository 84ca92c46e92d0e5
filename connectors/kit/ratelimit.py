"""Client-side pacing: a sliding-window limiter shared by every client of one account in a process.

A source that allows "N calls per W seconds per endpoint" (Fxiaoke: 100 per 20 s; its token endpoint:
10 a minute) refuses the call that goes over, and many parallel pipelines of one tenant would go over
together even if each stayed polite. So the budget belongs to the *account*, not to a client:
:func:`shared_limiter` hands every client the same :class:`SlidingWindowLimiter` for the same name,
and :meth:`SlidingWindowLimiter.acquire` blocks until a call fits in the window. Waiting happens on a
condition variable (woken by the clock, never busy-polling), so a thread that waits costs nothing.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

__all__ = ["SlidingWindowLimiter", "shared_limiter"]


class SlidingWindowLimiter:
    """At most ``limit`` acquisitions per key in any ``window`` seconds (thread-safe).

    ``clock`` and ``sleep`` exist for tests; ``margin`` (seconds) keeps a little away from the edge
    of the window, so a server whose window starts a few milliseconds later does not count one call
    too many.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        margin: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a rate limit needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self.margin = margin
        self._clock = clock
        self._calls: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._cond = threading.Condition()
        #: seconds callers spent waiting, in total (for reports)
        self.waited = 0.0

    def acquire(self, key: str = "") -> float:
        """Block until one more call under ``key`` fits; returns the seconds waited."""
        waited = 0.0
        with self._cond:
            while True:
                now = self._clock()
                q = self._calls[key]
                horizon = now - self.window - self.margin
                while q and q[0] <= horizon:
                    q.popleft()
                if len(q) < self.limit:
                    q.append(now)
                    self.waited += waited
                    return waited
                delay = max(0.001, q[0] - horizon)
                start = self._clock()
                self._cond.wait(delay)
                waited += self._clock() - start

    def in_window(self, key: str = "") -> int:
        """Calls under ``key`` in the current window."""
        with self._cond:
            now = self._clock()
            return sum(1 for t in self._calls[key] if t > now - self.window - self.margin)


_SHARED: dict[tuple[str, int, float], SlidingWindowLimiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_limiter(name: str, limit: int, window: float) -> SlidingWindowLimiter:
    """The one limiter of ``name`` (e.g. ``fxiaoke:<base url>:<app id>``) in this process."""
    key = (name, limit, float(window))
    with _SHARED_LOCK:
        limiter = _SHARED.get(key)
        if limiter is None:
            limiter = _SHARED[key] = SlidingWindowLimiter(limit, window)
        return limiter
