"""The one retry policy of every connector: bounded attempts and time, full jitter, ``Retry-After``.

Built on `tenacity <https://tenacity.readthedocs.io>`_; this module only fixes the choices:

* at most ``max_retries`` retries after the first attempt, and never past ``max_retry_seconds`` of
  wall time (a wait that would cross the budget ends the call at once instead of sleeping);
* the wait before retry *n* is "full jitter", ``uniform(0, min(backoff_max, backoff_base · 2ⁿ⁻¹))``,
  so parallel workers throttled together do not come back together;
* a ``retry_after`` on the error (from a ``Retry-After`` header, or a connector that knows the source's
  own hint) is honoured exactly instead of the backoff — including 0, an immediate retry;
* what is retried is decided by an ``is_retryable(exc)`` hook: by default :class:`Throttled` and
  :class:`Transient`; everything else is raised at once;
* after the last attempt the last error is raised again via :meth:`ConnectorError.giving_up`, so the
  caller sees its class, its attributes and ``giving up after N attempts; last error: ...``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from connectors.kit.errors import ConnectorError, Throttled, Transient

T = TypeVar("T")
log = logging.getLogger("tongbu.kit.retry")


def default_is_retryable(exc: BaseException) -> bool:
    """Retry what the source told us is temporary: throttling and transient failures."""
    return isinstance(exc, Throttled | Transient)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a connector retries; built from the shared settings (:mod:`connectors.kit.settings`)."""

    max_retries: int = 8
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    #: total wall time for one call, attempts and waits included
    max_retry_seconds: float = 300.0

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Full-jitter wait before retry number ``retry`` (1-based)."""
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** max(0, retry - 1)))
        return (rng or random).uniform(0, ceiling)

    def run(
        self,
        fn: Callable[[], T],
        *,
        label: str,
        is_retryable: Callable[[BaseException], bool] = default_is_retryable,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[BaseException, int, float], None] | None = None,
        logger: logging.Logger | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> T:
        """Call ``fn`` until it returns, raises something not retryable, or the budget is spent.

        ``on_retry(exc, retry_number, delay)`` runs before each wait (counters); ``label`` names the
        call in log lines (``"ExecuteBillQuery BD_Customer"``) and must not hold a secret.
        """
        out = logger or log
        start = clock()
        why: list[str] = []

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hinted = getattr(exc, "retry_after", None)
            if hinted is not None:
                return max(0.0, float(hinted))
            return self.backoff(state.attempt_number, rng)

        def stop(state: tenacity.RetryCallState) -> bool:
            if state.attempt_number > self.max_retries:
                return True
            upcoming = state.upcoming_sleep or 0.0
            if clock() - start + upcoming > self.max_retry_seconds:
                why.append(
                    f"the next wait of {upcoming:.1f}s would pass max_retry_seconds={self.max_retry_seconds:g}"
                )
                return True
            return False

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            delay = state.upcoming_sleep or 0.0
            assert exc is not None
            if on_retry is not None:
                on_retry(exc, state.attempt_number, delay)
            # an immediate retry the source asked for (a new token, a new session) is routine: INFO
            out.log(
                logging.WARNING if delay > 0 else logging.INFO,
                "%s: %s; retry %d/%d in %.2fs",
                label,
                exc,
                state.attempt_number,
                self.max_retries,
                delay,
            )

        retrying = tenacity.Retrying(
            stop=stop,
            wait=wait,
            retry=tenacity.retry_if_exception(is_retryable),
            sleep=sleep,
            before_sleep=before_sleep,
            reraise=False,
        )
        try:
            return retrying(fn)
        except tenacity.RetryError as err:
            last = err.last_attempt.exception()
            attempts = err.last_attempt.attempt_number
            if isinstance(last, ConnectorError):
                raise last.giving_up(attempts, why[0] if why else "", label) from None
            assert last is not None
            raise last from None
