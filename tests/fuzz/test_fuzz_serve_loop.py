"""No request to ``tongbu serve`` may hold the event loop for more than 100 ms.

The server runs in its own process with a loop-lag probe (:class:`benchmarks.serve_abuse.LagProbe`: a
task that sleeps 2 ms and records how late it wakes). The worst lag during trivial ``/healthz``
traffic is the machine's own noise (a loaded 2-core runner easily adds tens of ms); the worst lag
during adversarial deliveries of up to 64 KB (the issue-17 freeze body at every size, unterminated
CDATA, tag floods, deep nesting, entity bombs, random bytes, and correctly signed envelopes with
hostile content) must stay within that noise plus 100 ms. This is a property (blocking), not a
speed target. With the old cubic regex the loop froze for minutes on the first 64 KB body, so the
requests time out and the test fails at once; a deterministic regression fails every attempt,
while noise is given three attempts.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from benchmarks.serve_abuse import ServeProcess, adversarial_requests, credentials, send_all, serve_config

BUDGET_MS = 100.0


def test_no_request_holds_the_event_loop_for_100_ms(tmp_path: Path) -> None:
    cred = credentials()
    abuse = adversarial_requests(cred, 120)
    attempts: list[tuple[float, float]] = []
    with ServeProcess(serve_config(cred), tmp_path) as server:
        # One request of each kind first: the first use of the thread pool and of each code path
        # (lazy imports, first log line) is start-up cost, not a property of the request.
        warm = send_all(server.url, abuse[:10], threads=1, timeout=10)
        assert [s for _, s, _ in warm if s == -1] == [], "tongbu serve stopped answering while warming up"
        for _ in range(3):
            server.lag_ms(reset=True)
            with httpx.Client(base_url=server.url, timeout=10) as client:
                for _ in range(100):
                    assert client.get("/healthz").status_code == 200
            baseline = server.lag_ms(reset=True)
            results = send_all(server.url, abuse, threads=4, timeout=10)
            timed_out = [kind for kind, status, _ in results if status == -1]
            assert not timed_out, f"tongbu serve stopped answering during {sorted(set(timed_out))}"
            assert {status for _, status, _ in results} <= {400, 403}, sorted({s for _, s, _ in results})
            lag = server.lag_ms()
            attempts.append((baseline, lag))
            if lag <= baseline + BUDGET_MS:
                break
        else:
            raise AssertionError(
                "adversarial requests held the event loop: worst lag (baseline, abuse) per attempt in ms: "
                + ", ".join(f"({b:.0f}, {a:.0f})" for b, a in attempts)
            )
    print(f"worst event-loop lag (baseline, abuse) ms: {attempts}")
    assert "Traceback" not in server.output() and "Exception in ASGI" not in server.output()
