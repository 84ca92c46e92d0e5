"""Abuse of ``tongbu serve``: does adversarial webhook content keep the event loop (and /healthz) free?

Setup: ``tongbu serve`` runs as its own process (one WeCom source, a scratch SQLite hub) with a
*loop-lag probe* wrapped around the app: a task that sleeps 2 ms in a loop and records how late it
wakes up, which is exactly how long something held the event loop. Two phases in the same run:

* **baseline** — ``/healthz`` alone, polled every 10 ms, no other traffic;
* **abuse** — ``--requests`` (default 1,000) adversarial deliveries of up to 64 KB from 8 threads
  (the issue-17 freeze body ``<Encrypt>`` + spaces at every size, unterminated CDATA, thousands of
  tags, deep nesting, DTD/entity bombs, random bytes, and *correctly signed* envelopes whose
  decrypted content is a deep tree, an entity bomb or not UTF-8, so the costly path runs too) while
  ``/healthz`` is polled as in the baseline.

Reported: ``/healthz`` p50/p99/max in both phases and their ratio, the loop's worst lag, the abusive
requests' p50/p99 and status codes. Targets (issue 17): the freeze request answers 403 in < 10 ms;
``/healthz`` p99 < 50 ms under the abuse.

    python benchmarks/serve_abuse.py [--requests 1000] [--threads 8] [--json]

The same module provides :func:`adversarial_requests`, :class:`LagProbe` and :class:`ServeProcess`
to ``tests/fuzz/test_fuzz_serve_loop.py`` (the event-loop-time test).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MAX_BODY = 64 * 1024


@dataclass
class Abuse:
    """One adversarial delivery."""

    kind: str
    params: dict[str, str]
    body: bytes


def credentials() -> dict[str, str]:
    """A fresh WeCom corp for the receiver (the simulator is not needed: nothing is applied)."""
    from connectors.wecom.crypto import new_encoding_aes_key

    return {
        "corp_id": "wwabuse" + os.urandom(4).hex(),
        "corp_secret": "unused",
        "callback_token": base64.b32encode(os.urandom(10)).decode(),
        "encoding_aes_key": new_encoding_aes_key(),
        "base_url": "http://127.0.0.1:9",  # never called: no request here is applied
    }


def serve_config(cred: dict[str, str]) -> dict[str, Any]:
    """A ``build_app`` config with one WeCom source for ``cred``."""
    return {"sources": [{"name": "wecom", "connector": "wecom", "config": cred}], "dagster": "off"}


def adversarial_requests(cred: dict[str, str], n: int, *, seed: int = 17) -> list[Abuse]:
    """``n`` adversarial deliveries of at most 64 KB, every kind in turn, sizes spread up to the limit."""
    from connectors.wecom.crypto import WXBizMsgCrypt

    rng = random.Random(seed)
    crypt = WXBizMsgCrypt(cred["callback_token"], cred["encoding_aes_key"], cred["corp_id"])
    now = str(int(time.time()))
    unsigned = {"msg_signature": "0" * 40, "timestamp": now, "nonce": "1"}

    def signed(inner: bytes) -> Abuse:
        encrypt = crypt.encrypt(inner)
        body = f"<xml><ToUserName><![CDATA[{cred['corp_id']}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        params = {"msg_signature": crypt.sign(now, "2", encrypt), "timestamp": now, "nonce": "2"}
        return Abuse("", params, body.encode())

    def size() -> int:
        return rng.choice([1_500, 3_000, 8_000, 16_000, 32_000, MAX_BODY - 64])

    # decrypted payloads must fit a 64 KB envelope after AES padding and base64 (4/3)
    inner_max = (MAX_BODY - 200) * 3 // 4 - 64
    kinds: list[tuple[str, Any]] = [
        ("freeze", lambda: b"<Encrypt>" + b" " * size() + b"x"),
        (
            "freeze-in-xml",
            lambda: b"<xml><ToUserName>" + b" " * size() + b"x<Encrypt>" + b" " * 64 + b"</xml>",
        ),
        ("cdata-unterminated", lambda: b"<xml><Encrypt><![CDATA[" + b"A" * size()),
        ("many-tags", lambda: b"<Encrypt>" * (size() // 9)),
        ("deep-nesting", lambda: b"<a>" * (size() // 3)),
        (
            "entity-bomb",
            lambda: (
                b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "'
                + b"a" * 1000
                + b'">'
                + b"".join(b"<!ENTITY a%d '%s'>" % (i, b"&a;" * 10) for i in range(9))
                + b"]><xml><Encrypt>&a8;</Encrypt></xml>"
            ),
        ),
        ("random-bytes", lambda: rng.randbytes(size())),
        ("signed-deep-tree", lambda: b"<xml>" + b"<a>" * ((inner_max - 20) // 3) + b"</xml>"),
        (
            "signed-entity-bomb",
            lambda: (
                b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><xml>&b;</xml>'
            ),
        ),
        (
            "signed-not-utf8",
            lambda: b"<xml><Event>" + rng.randbytes(min(size(), inner_max - 40)) + b"</Event></xml>",
        ),
    ]
    out: list[Abuse] = []
    for i in range(n):
        kind, make = kinds[i % len(kinds)]
        body = make()
        if kind.startswith("signed-"):
            abuse = signed(body)
            abuse.kind = kind
        else:
            abuse = Abuse(kind, unsigned, body[:MAX_BODY])
        assert len(abuse.body) <= MAX_BODY, (kind, len(abuse.body))
        out.append(abuse)
    return out


class LagProbe:
    """ASGI wrapper: measures how long anything holds the event loop (``/_probe/lag``, ``/_probe/reset``).

    A task sleeps ``interval`` seconds in a loop; the amount by which it wakes up late is time the loop
    spent on something else without yielding. Started with the first request.
    """

    def __init__(self, app: Any, interval: float = 0.002) -> None:
        self.app = app
        self.interval = interval
        self.max_lag = 0.0
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(self.interval)
            lag = time.perf_counter() - t0 - self.interval
            self.ticks += 1
            if lag > self.max_lag:
                self.max_lag = lag

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._tick())
            if scope["path"] in ("/_probe/lag", "/_probe/reset"):
                body = json.dumps({"max_lag_ms": self.max_lag * 1000, "ticks": self.ticks}).encode()
                if scope["path"] == "/_probe/reset":
                    self.max_lag, self.ticks = 0.0, 0
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _serve_main(config_path: str, port: int) -> None:
    """Child process: ``tongbu serve`` with the lag probe (``--serve CONFIG PORT``)."""
    import uvicorn

    from tongbu.serve.app import build_app

    app = LagProbe(build_app(json.loads(Path(config_path).read_text())))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")


class ServeProcess:
    """``tongbu serve`` (with :class:`LagProbe`) in its own process, so a frozen loop cannot freeze us."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        from connectors.kit.server import free_port

        self.port = free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = workdir / "serve-abuse.json"
        cfg.write_text(json.dumps(config))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        env.setdefault("TONGBU_HOME", str(workdir / "home"))
        self.log = open(workdir / "serve-abuse.log", "w+b")  # noqa: SIM115 - closed in stop()
        self._output = ""
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve", str(cfg), str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def start(self, timeout: float = 60.0) -> ServeProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tongbu serve exited: {self.output()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"tongbu serve did not start on {self.url}")

    def output(self) -> str:
        """What the server logged (also after :meth:`stop`)."""
        if self.log.closed:
            return self._output
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def lag_ms(self, reset: bool = False) -> float:
        r = httpx.get(self.url + ("/_probe/reset" if reset else "/_probe/lag"), timeout=30)
        return float(r.json()["max_lag_ms"])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._output = self.output()
        self.log.close()

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def send_all(
    url: str, requests: list[Abuse], threads: int, timeout: float = 10.0
) -> list[tuple[str, int, float]]:
    """POST every request from ``threads`` threads; (kind, status or -1 on timeout, seconds) each.

    A request still unanswered after ``timeout`` seconds counts as -1 and ends the run at once (a
    frozen server would otherwise cost ``timeout`` per remaining request); the stragglers are daemon
    threads that finish when the server goes away.
    """
    results: list[tuple[str, int, float]] = []
    lock = threading.Lock()
    todo: Iterator[Abuse] = iter(requests)
    failed = threading.Event()
    inflight: dict[int, tuple[str, float]] = {}

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=timeout) as client:
            while True:
                with lock:
                    item = None if failed.is_set() else next(todo, None)
                    if item is None:
                        return
                    t0 = time.perf_counter()
                    inflight[threading.get_ident()] = (item.kind, t0)
                try:
                    status = client.post("/hooks/wecom", params=item.params, content=item.body).status_code
                except httpx.HTTPError:
                    status = -1
                with lock:
                    inflight.pop(threading.get_ident(), None)
                    results.append((item.kind, status, time.perf_counter() - t0))
                    if status == -1:
                        failed.set()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    while any(t.is_alive() for t in pool):
        time.sleep(0.05)
        with lock:
            stuck = [(k, t0) for k, t0 in inflight.values() if time.perf_counter() - t0 > timeout + 1]
            if stuck:
                failed.set()
                results.extend((k, -1, time.perf_counter() - t0) for k, t0 in stuck)
                return list(results)
    return results


def poll_health(url: str, stop: threading.Event, every: float = 0.01, minimum: int = 0) -> list[float]:
    """``/healthz`` latencies (seconds), polled every ``every`` s until ``stop`` (and ``minimum`` done)."""
    out: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set() or len(out) < minimum:
            t0 = time.perf_counter()
            client.get("/healthz")
            out.append(time.perf_counter() - t0)
            time.sleep(every)
    return out


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 0.5) * 1000, 2),
        "p99_ms": round(percentile(values, 0.99) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
    }


def run(requests: int = 1000, threads: int = 8) -> dict[str, Any]:
    """Both phases against one server process; returns the figures."""
    cred = credentials()
    abuse = adversarial_requests(cred, requests)
    with tempfile.TemporaryDirectory() as tmp, ServeProcess(serve_config(cred), Path(tmp)) as server:
        # the freeze request of the issue, alone: its own latency
        freeze = [a for a in adversarial_requests(cred, 1)]
        freeze[0].body = b"<Encrypt>" + b" " * 3000 + b"x"
        send_all(server.url, freeze, 1)  # warm up the connection path once
        freeze_s = [s for _, _, s in send_all(server.url, freeze * 20, 1)]

        server.lag_ms(reset=True)
        stop = threading.Event()
        stop.set()
        baseline = poll_health(server.url, stop, minimum=500)
        baseline_lag = server.lag_ms(reset=True)

        stop = threading.Event()
        health: list[float] = []
        poller = threading.Thread(
            target=lambda: health.extend(poll_health(server.url, stop, 0.002, minimum=200))
        )
        poller.start()
        t0 = time.perf_counter()
        results = send_all(server.url, abuse, threads)
        wall = time.perf_counter() - t0
        stop.set()
        poller.join()
        abuse_lag = server.lag_ms()
    codes: dict[str, dict[int, int]] = {}
    for kind, status, _ in results:
        codes.setdefault(kind, {}).setdefault(status, 0)
        codes[kind][status] += 1
    base, under = _stats(baseline), _stats(health)
    return {
        "requests": requests,
        "threads": threads,
        "cpus": os.cpu_count(),
        "load_1m": round(os.getloadavg()[0], 2),
        "freeze_request": _stats(freeze_s),
        "healthz_baseline": base,
        "healthz_under_abuse": under,
        "healthz_p99_ratio": round(under["p99_ms"] / base["p99_ms"], 2) if base["p99_ms"] else None,
        "loop_max_lag_ms": {"baseline": round(baseline_lag, 2), "abuse": round(abuse_lag, 2)},
        "abuse_requests": {**_stats([s for _, _, s in results]), "wall_s": round(wall, 2)},
        "status_codes": codes,
    }


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        _serve_main(sys.argv[2], int(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = run(args.requests, args.threads)
    if args.json:
        print(json.dumps(res))
        return
    print(
        f"{res['requests']} adversarial requests, {res['threads']} threads, {res['cpus']} CPUs, load {res['load_1m']}"
    )
    fr = res["freeze_request"]
    print(f"  freeze request (issue 17): p50 {fr['p50_ms']} ms, p99 {fr['p99_ms']} ms (target < 10 ms)")
    b, u = res["healthz_baseline"], res["healthz_under_abuse"]
    print(
        f"  /healthz baseline:     p50 {b['p50_ms']:7.2f} ms  p99 {b['p99_ms']:7.2f} ms  max {b['max_ms']:7.2f} ms  (n={b['n']})"
    )
    print(
        f"  /healthz under abuse:  p50 {u['p50_ms']:7.2f} ms  p99 {u['p99_ms']:7.2f} ms  max {u['max_ms']:7.2f} ms  (n={u['n']})"
    )
    print(f"  p99 ratio under abuse / baseline: {res['healthz_p99_ratio']}x (target p99 < 50 ms)")
    lag = res["loop_max_lag_ms"]
    print(f"  event loop worst lag: baseline {lag['baseline']} ms, under abuse {lag['abuse']} ms")
    a = res["abuse_requests"]
    print(f"  abusive requests: p50 {a['p50_ms']} ms, p99 {a['p99_ms']} ms, all done in {a['wall_s']} s")
    for kind, codes in sorted(res["status_codes"].items()):
        print(f"    {kind:20s} {codes}")


if __name__ == "__main__":
    main()
