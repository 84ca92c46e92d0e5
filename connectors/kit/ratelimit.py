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
        self._calls: dict[str, list[list[float]]] = collections.defaultdict(list)
        self._cond = threading.Condition()
        #: seconds callers spent waiting, in total (for reports)
        self.waited = 0.0

    def acquire(self, key: str = "") -> list[float]:
        """Block until one more call under ``key`` fits; returns its slot, to hand to :meth:`done`.

        A slot occupies the window from its acquisition until ``window`` seconds after the call
        *ended* (:meth:`done`): the server counts a call when it arrives, which is some time after
        we let it go, so only the end of the call bounds its arrival from above. Counting from the
        end keeps the server's count within the limit whatever the latency."""
        waited = 0.0
        with self._cond:
            while True:
                now = self._clock()
                slots = self._calls[key]
                horizon = now - self.window - self.margin
                slots[:] = [s for s in slots if s[0] > horizon]
                if len(slots) < self.limit:
                    slot = [float("inf")]  # in flight until done()
                    slots.append(slot)
                    self.waited += waited
                    return slot
                delay = max(0.001, min(s[0] for s in slots) - horizon)
                start = self._clock()
                self._cond.wait(min(delay, self.window))
                waited += self._clock() - start

    def done(self, slot: list[float]) -> None:
        """The call of ``slot`` has ended (answered or failed): its window starts now."""
        with self._cond:
            slot[0] = self._clock()
            self._cond.notify_all()

    def in_window(self, key: str = "") -> int:
        """Calls under ``key`` in the current window (in flight included)."""
        with self._cond:
            now = self._clock()
            return sum(1 for s in self._calls[key] if s[0] > now - self.window - self.margin)


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
