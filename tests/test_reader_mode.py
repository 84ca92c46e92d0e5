"""Where the runner reads: a forked reader process only from a parent with no threads but tongbu's own."""

from __future__ import annotations

import threading

import pytest

from pipelines.runner import _reader_mode


def _with_thread(name: str) -> str:
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name=name, daemon=True)
    t.start()
    try:
        return _reader_mode()
    finally:
        stop.set()
        t.join()


def test_a_foreign_thread_means_no_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TONGBU_READER", raising=False)
    if threading.active_count() > 1:
        pytest.skip("the test process itself has threads")
    assert _reader_mode() == "process"
    # a Dagster event writer, a Celery heartbeat, …: whatever it holds at fork time stays held
    assert _with_thread("dagster-event-writer") == "thread"
    # the pipeline lock's own heartbeat is fork-safe (no pool, nothing the reader shares)
    assert _with_thread("tongbu-lock-heartbeat") == "process"


def test_an_explicit_choice_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGBU_READER", "thread")
    assert _reader_mode() == "thread"
    monkeypatch.setenv("TONGBU_READER", "process")
    assert _with_thread("someone-elses") == "process"


def test_a_daemonic_process_reads_in_a_thread() -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    queue = ctx.SimpleQueue()

    def child() -> None:
        from pipelines.runner import _reader_mode

        queue.put(_reader_mode())

    # what a Celery prefork pool child is: daemonic, so it may not fork a reader of its own
    p = ctx.Process(target=child, daemon=True)
    p.start()
    p.join(60)
    assert queue.get() == "thread"
