"""The pipeline lock across PID namespaces and over long gaps between batches (issue 18 item 4)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tongbu.state.store import PipelineLock, PipelineLocked, _holder_is_dead

ROOT = Path(__file__).resolve().parent.parent

_HOLDER = """
import sys, time
from sqlalchemy import create_engine
from tongbu.state.store import PipelineLock
lock = PipelineLock(create_engine(sys.argv[1]), "shared")
lock.acquire()
print(lock.holder, flush=True)
sys.stdin.read()  # hold until the test closes our stdin
lock.release()
"""


def _free_pid() -> int:
    # A PID that exists in the other namespace but not in ours: the collision the old check mistook
    # for a dead holder.
    for pid in range(20_000, 32_000):
        if not os.path.exists(f"/proc/{pid}"):
            return pid
    raise AssertionError("no free pid")


def _can_unshare() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], check=False).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare(1) for a second PID namespace")
def test_a_live_holder_in_another_pid_namespace_keeps_its_lock(hub_engine) -> None:
    url = hub_engine.url.render_as_string(hide_password=False)
    pid = _free_pid()
    # In a fresh PID namespace (as in a second container with the same hostname) the holder gets a
    # PID that does not exist here.
    script = f"echo {pid - 1} > /proc/sys/kernel/ns_last_pid && {sys.executable} -c '{_HOLDER}' {url}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        name = holder.stdout.readline().strip()  # type: ignore[union-attr]
        assert name.split(":")[1] == str(pid), name
        assert not os.path.exists(f"/proc/{pid}")  # same hostname, and that PID is free here
        assert not _holder_is_dead(name)
        with pytest.raises(PipelineLocked, match="already running"):
            PipelineLock(hub_engine, "shared").acquire()
    finally:
        holder.stdin.close()  # type: ignore[union-attr]
        holder.wait(30)
    mine = PipelineLock(hub_engine, "shared")
    mine.acquire()  # released by its holder: free again
    mine.release()


def test_a_dead_holder_in_our_own_pid_space_is_taken_over_at_once(hub_engine) -> None:
    url = hub_engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    name = holder.stdout.readline().strip()  # type: ignore[union-attr]
    with pytest.raises(PipelineLocked):
        PipelineLock(hub_engine, "shared").acquire()
    holder.kill()
    holder.wait(30)
    assert _holder_is_dead(name)
    mine = PipelineLock(hub_engine, "shared")
    mine.acquire()  # its lease is far from over, but its process is gone
    mine.release()


def test_the_heartbeat_keeps_a_live_run_locked_between_batches(hub_engine) -> None:
    lock = PipelineLock(hub_engine, "slow", lease_s=1.2)
    lock.acquire()
    try:
        time.sleep(2.5)  # two leases without a batch: the heartbeat renewed it
        with pytest.raises(PipelineLocked, match="already running"):
            PipelineLock(hub_engine, "slow").acquire()
        with hub_engine.begin() as conn:
            lock.renew(conn)
        assert not lock.lost
    finally:
        lock.release()
    without = PipelineLock(hub_engine, "slow", lease_s=0.5, heartbeat=False)
    without.acquire()
    time.sleep(1)
    other = PipelineLock(hub_engine, "slow")
    other.acquire()  # the lease of a holder that stopped renewing ran out
    other.release()


def test_holders_without_a_pid_space_are_never_judged_dead() -> None:
    import socket

    assert not _holder_is_dead(f"{socket.gethostname()}:{_free_pid()}:abcd1234")  # the old format
