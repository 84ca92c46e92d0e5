"""SIGKILL a sync at random points after it has committed a batch (the crash-and-resume tests)."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence


def kill_mid_sync(
    cmd: Sequence[str],
    env: Mapping[str, str],
    landed: Callable[[], int],
    total: int,
    *,
    rounds: int,
    rng: random.Random,
    max_extra_s: float,
    deadline_s: float = 300.0,
) -> tuple[int, int]:
    """Start ``cmd`` ``rounds`` times and SIGKILL each run once it has committed a batch.

    A run is killed only after ``landed()`` (rows in the hub) grew past what it was when the run
    started, since a kill during start-up tests nothing, and then after a random further
    ``0..max_extra_s`` seconds. Returns ``(kills, kills_mid_sync)``: how many runs were killed, and
    how many of those left the hub with some rows but fewer than ``total``.
    """
    kills = mid_sync = 0
    for _ in range(rounds):
        before = landed()
        proc = subprocess.Popen(
            list(cmd), env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + deadline_s
        # polling the hub's row count: the commit is in another process, so there is no event to await
        while proc.poll() is None and landed() <= before:
            assert time.monotonic() < deadline, f"no batch committed within {deadline_s:.0f} s"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, max_extra_s))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
            mid_sync += 0 < landed() < total
        proc.wait()
    return kills, mid_sync
