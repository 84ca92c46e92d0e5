"""The connector kit's HTTP plumbing: retry policy, Retry-After, error taxonomy, settings, paginators,
cursor helpers, log redaction. Unit tests of one class each (httpx.MockTransport stands in for a
server); the connectors' own tests run the same code against their simulators."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.kit.cursor import BoundaryDedupe, CompoundCursor, plan_read
from connectors.kit.errors import AuthError, BadRequest, ConnectorError, NotFound, Throttled, Transient
from connectors.kit.http import HttpClient, parse_retry_after, safe_url
from connectors.kit.logs import redact_http
from connectors.kit.pagination import (
    CursorPaginator,
    KeysetPaginator,
    LinkHeaderPaginator,
    OffsetPaginator,
    paginate,
)
from connectors.kit.retry import RetryPolicy
from connectors.kit.settings import ConfigError, HttpSettings

ROOT = Path(__file__).resolve().parent.parent


# -- Retry-After ------------------------------------------------------------------------------------
def test_retry_after_seconds_and_http_date() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("7") == 7.0
    later = email.utils.format_datetime(now + dt.timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now=now) == pytest.approx(90.0)
    earlier = email.utils.format_datetime(now - dt.timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(earlier, now=now) == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None and parse_retry_after("9" * 5000) == 24 * 3600
    # Shopify's fractional delay-seconds
    assert parse_retry_after("2.0") == 2.0 and parse_retry_after("0.5") == 0.5
    assert parse_retry_after("1.2.3") is None and parse_retry_after(".") is None


# -- the policy -------------------------------------------------------------------------------------
class Flaky:
    """A callable failing with ``errors`` in turn, then returning "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_attempts_are_bounded_and_there_is_no_sleep_after_the_last() -> None:
    sleeps: list[float] = []
    fn = Flaky(*[Transient("busy")] * 10)
    with pytest.raises(Transient, match=r"^get x: giving up after 4 attempts; last error: busy$") as err:
        RetryPolicy(max_retries=3).run(fn, label="get x", sleep=sleeps.append)
    assert fn.calls == 4 and len(sleeps) == 3 and err.value.attempts == 4


def test_full_jitter_backoff() -> None:
    policy = RetryPolicy(backoff_base=1, backoff_max=5)
    rng = random.Random(1)
    waits = [[policy.backoff(n, rng) for _ in range(2000)] for n in (1, 2, 3, 4, 5)]
    for ceiling, sample in zip((1, 2, 4, 5, 5), waits, strict=True):
        assert 0 <= min(sample) < 0.05 * ceiling and 0.95 * ceiling < max(sample) <= ceiling


def test_retry_after_is_honoured_exactly_even_zero() -> None:
    sleeps: list[float] = []
    fn = Flaky(Throttled("slow down", retry_after=7.0), Transient("again", retry_after=0.0))
    assert RetryPolicy(backoff_base=100).run(fn, label="x", sleep=sleeps.append) == "ok"
    assert sleeps == [7.0, 0.0]


def test_total_time_is_bounded() -> None:
    clock = [0.0]

    def sleep(s: float) -> None:
        clock[0] += s

    policy = RetryPolicy(max_retries=100, backoff_base=4, backoff_max=4, max_retry_seconds=10)
    fn = Flaky(*[Transient("busy", retry_after=4.0)] * 100)
    with pytest.raises(Transient, match="would pass max_retry_seconds=10") as err:
        policy.run(fn, label="x", sleep=sleep, clock=lambda: clock[0])
    assert fn.calls == 3 and clock[0] == 8.0 and err.value.attempts == 3


def test_a_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    sleeps: list[float] = []
    fn = Flaky(Throttled("quota", retry_after=3600.0))
    with pytest.raises(Throttled, match="giving up after 1 attempt "):
        RetryPolicy(max_retry_seconds=60).run(fn, label="x", sleep=sleeps.append)
    assert sleeps == []


def test_is_retryable_hook_and_non_retryable_errors() -> None:
    sleeps: list[float] = []
    bad = BadRequest("no such field")
    with pytest.raises(BadRequest) as err:
        RetryPolicy().run(Flaky(bad), label="x", sleep=sleeps.append)
    assert err.value is bad and sleeps == []
    # a connector may retry something the default would not, or refuse what it would
    fn = Flaky(BadRequest("eventually consistent"))
    assert RetryPolicy().run(fn, label="x", sleep=sleeps.append, is_retryable=lambda e: True) == "ok"
    with pytest.raises(Throttled):
        RetryPolicy().run(Flaky(Throttled("t")), label="x", sleep=sleeps.append, is_retryable=lambda e: False)


# -- the client: statuses, transport errors, messages ------------------------------------------------
def client(
    handler: Callable[[httpx.Request], httpx.Response], **settings: Any
) -> tuple[HttpClient, list[float]]:
    sleeps: list[float] = []
    c = HttpClient(
        settings=HttpSettings(**{"backoff_base": 0.01, **settings}),
        base_url="http://source.test/api/",
        transport=httpx.MockTransport(handler),
        sleep=sleeps.append,
    )
    return c, sleeps


def replies(*responses: httpx.Response | Exception) -> Callable[[httpx.Request], httpx.Response]:
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return item

    return handler


def test_429_honours_retry_after_then_succeeds() -> None:
    c, sleeps = client(
        replies(httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200, json={}))
    )
    assert c.request("GET", "items").status_code == 200 and sleeps == [2.0]


@pytest.mark.parametrize(
    ("status", "cls", "retried"),
    [
        (500, Transient, True),
        (503, Transient, True),
        (408, Transient, True),
        (429, Throttled, True),
        (401, AuthError, False),
        (403, AuthError, False),
        (404, NotFound, False),
        (410, NotFound, False),
        (400, BadRequest, False),
        (422, BadRequest, False),
    ],
)
def test_statuses_map_to_the_taxonomy(status: int, cls: type[ConnectorError], retried: bool) -> None:
    c, sleeps = client(replies(httpx.Response(status)), max_retries=2)
    with pytest.raises(cls) as err:
        c.request("GET", "items?access_token=tok-SECRET-123")
    assert err.value.status_code == status and len(sleeps) == (2 if retried else 0)
    assert "tok-SECRET-123" not in str(err.value) and "http://source.test/api/items" in str(err.value)


def test_timeouts_and_connection_errors_are_transient() -> None:
    c, sleeps = client(replies(httpx.ReadTimeout("slow"), httpx.ConnectError("refused"), httpx.Response(200)))
    assert c.request("GET", "items").status_code == 200 and len(sleeps) == 2
    c, _ = client(replies(httpx.ReadTimeout("slow")), max_retries=0)
    with pytest.raises(Transient, match="timed out") as err:
        c.request("GET", "items")
    assert err.value.kind == "timeout"


def test_safe_url_drops_query_and_credentials() -> None:
    assert safe_url("https://u:pw@h.test/p?access_token=x#f") == "https://h.test/p"


# -- settings ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("timeout", "request_timeout"),
        ("max_attempts", "max_retries"),
        ("backoff_base_seconds", "backoff_base"),
        ("backoff_max_seconds", "backoff_max"),
    ],
)
def test_renamed_settings_are_refused_with_the_new_name(old: str, new: str) -> None:
    with pytest.raises(ConfigError, match=f"`{old}` \\(did you mean `{new}`\\?\\)"):
        HttpSettings.from_config({old: 1}, connector="acme")


def test_settings_are_validated() -> None:
    s = HttpSettings.from_config(
        {"request_timeout": "5", "max_retries": 2}, connector="acme", request_timeout=9
    )
    assert (s.request_timeout, s.max_retries, s.retry.max_retries) == (5.0, 2, 2)
    assert HttpSettings.from_config({}, connector="acme", request_timeout=9).request_timeout == 9
    with pytest.raises(ConfigError, match="`max_retries` must be at least 0"):
        HttpSettings.from_config({"max_retries": -1}, connector="acme")
    with pytest.raises(ConfigError, match="must be a number"):
        HttpSettings.from_config({"backoff_max": "lots"}, connector="acme")


def test_connectors_refuse_the_old_names() -> None:
    from connectors.kingdee.tap import TapKingdee
    from connectors.wecom.client import client_from_config

    with pytest.raises(ConfigError, match="did you mean `max_retries`"):
        client_from_config({"corp_id": "ww1", "corp_secret": "s" * 20, "max_attempts": 3})
    tap = TapKingdee(
        config={
            "base_url": "http://x.test",
            "acct_id": "a",
            "username": "u",
            "password": "p" * 8,
            "timeout": 3,
        },
        validate_config=False,
    )
    with pytest.raises(ConfigError, match="did you mean `request_timeout`"):
        _ = tap.client


# -- paginators ----------------------------------------------------------------------------------------
def test_cursor_paginator_follows_next_cursor_and_detects_loops() -> None:
    pages = {
        None: {"items": [1], "next_cursor": "a"},
        "a": {"items": [2], "next_cursor": "b"},
        "b": {"items": [3]},
    }
    seen: list[Any] = []

    def fetch(cursor: str | None) -> dict[str, Any]:
        seen.append(cursor)
        return pages[cursor]

    assert [p["items"][0] for p in paginate(fetch, CursorPaginator())] == [1, 2, 3] and seen == [
        None,
        "a",
        "b",
    ]
    with pytest.raises(RuntimeError, match="Loop detected"):
        list(paginate(lambda c: {"next_cursor": "same"}, CursorPaginator(start="same")))


def test_keyset_paginator_stops_on_an_empty_page_not_a_short_one() -> None:
    rows = list(range(1, 8))
    asked: list[Any] = []

    def fetch(after: int | None) -> list[int]:
        asked.append(after)
        return [r for r in rows if after is None or r > after][:3]

    pages = list(paginate(fetch, KeysetPaginator(lambda r: r)))
    assert pages == [[1, 2, 3], [4, 5, 6], [7]] and asked == [None, 3, 6, 7]


def test_offset_paginator() -> None:
    rows = list(range(25))
    fetch = lambda start: rows[start : start + 10]  # noqa: E731
    assert [len(p) for p in paginate(fetch, OffsetPaginator(10))] == [10, 10, 5]
    assert sum(1 for _ in paginate(fetch, OffsetPaginator(10, stop_on_short=True))) == 3
    rows = list(range(20))
    assert [len(p) for p in paginate(fetch, OffsetPaginator(10, stop_on_short=True))] == [10, 10]


def test_link_header_paginator_on_httpx_responses() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "1"))
        headers = {"Link": f'<http://s.test/items?page={page + 1}>; rel="next"'} if page < 3 else {}
        return httpx.Response(200, json=[page], headers=headers)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    fetch = lambda link: http.get(link.geturl() if link else "http://s.test/items")  # noqa: E731
    assert [r.json() for r in paginate(fetch, LinkHeaderPaginator())] == [[1], [2], [3]]


# -- cursor helpers ------------------------------------------------------------------------------------
def test_compound_cursor_order_puts_null_timestamps_first() -> None:
    a, b, c = (
        CompoundCursor(None, 9),
        CompoundCursor("2024-01-01T00:00:00.000+08:00", 1),
        CompoundCursor("2024-01-01T00:00:00.000+08:00", 2),
    )
    assert b.after(a) and c.after(b) and not a.after(b) and a.after(None)
    assert CompoundCursor.furthest(c, b) is c and CompoundCursor.furthest(b, c) is c


def test_plan_read() -> None:
    ts = "2024-05-01T10:00:00.000+08:00"
    assert plan_read(None) == plan_read(None, lookback_seconds=5)
    p = plan_read(None)
    assert p.null_pass and p.null_after_id is None and p.ts_floor is None and p.ts_after is None
    p = plan_read(CompoundCursor(None, 42))
    assert p.null_pass and p.null_after_id == 42 and p.ts_floor is None
    p = plan_read(CompoundCursor(ts, 7))
    assert not p.null_pass and p.ts_after == CompoundCursor(ts, 7)
    p = plan_read(CompoundCursor(ts, 7), lookback_seconds=5)
    assert p.ts_floor == "2024-05-01T09:59:55.000+08:00" and p.ts_after is None
    assert plan_read(CompoundCursor(ts, None)).ts_floor == ts
    start = "2024-06-01T00:00:00.000+08:00"
    p = plan_read(CompoundCursor(ts, 7), start=start)
    assert not p.null_pass and p.ts_floor == start
    assert not plan_read(None, start=start).null_pass and not plan_read(None, nulls=False).null_pass


def test_boundary_dedupe() -> None:
    d = BoundaryDedupe(capacity=2)
    assert d.first_time(1, "a") and not d.first_time(1, "a") and d.first_time(1, "b")
    assert d.first_time(2, "a") and d.first_time(1, "a")  # capacity 2: (1, "a") was forgotten


# -- log redaction ------------------------------------------------------------------------------------
def test_redact_http_masks_headers_cookies_and_query_secrets() -> None:
    line = (
        "receive_response_headers.complete return_value=(b'HTTP/1.1', 200, b'OK', [(b'content-type', b'json'), "
        "(b'set-cookie', b'kdservice-sessionid=abc123def; HttpOnly; Path=/'), (b'Authorization', b'Bearer zzz9')])"
    )
    out = redact_http(line)
    assert (
        "abc123def" not in out and "zzz9" not in out and "b'json'" in out and "(b'set-cookie', b'***')" in out
    )
    out = redact_http('HTTP Request: GET http://h/cgi-bin/x?access_token=TKN123&userid=u1 "HTTP/1.1 200 OK"')
    assert "TKN123" not in out and "access_token=***&userid=u1" in out
    assert "S1D" not in redact_http("Cookie: ASP.NET_SessionId=S1D; other=1")
    assert redact_http("stats: session_lost=3 retries=2") == "stats: session_lost=3 retries=2"


def test_importing_connectors_changes_no_logging() -> None:
    code = (
        "import logging, connectors.kingdee.tap, connectors.wecom.tap, connectors.wecom.client\n"
        "names = ['httpx', 'httpcore', 'httpcore.http11']\n"
        "print(all(not logging.getLogger(n).filters and logging.getLogger(n).level == 0 for n in names))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.stdout.strip() == "True", out.stderr[-2000:]


# -- WeCom and Kingdee agree through the one policy ---------------------------------------------------
def test_wecom_retries_429_and_makes_one_loop_per_call() -> None:
    from connectors.wecom.client import MemoryTokenCache, WeComClient, WeComRetryExhausted
    from connectors.wecom.client import RetryPolicy as WeComRetry

    calls: list[str] = []
    script = iter(
        [httpx.Response(429, headers={"Retry-After": "1"})]
        + [httpx.Response(200, json={"errcode": 0, "follow_user": ["u"]})]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path.endswith("gettoken"):
            return httpx.Response(200, json={"errcode": 0, "access_token": "T" * 20, "expires_in": 7200})
        return next(script)

    sleeps: list[float] = []
    wc = WeComClient(
        "ww1",
        "s" * 20,
        base_url="http://wx.test",
        transport=httpx.MockTransport(handler),
        sleep=sleeps.append,
        token_cache=MemoryTokenCache(),
    )
    assert wc.get_follow_user_list() == ["u"] and sleeps == [1.0]

    # 5xx, 5xx, 5xx, 45009 forever: the old client nested its loops (8 x 8 = 64 requests); now one
    # loop: max_retries + 1 requests, max_retries sleeps (none after the last attempt)
    pattern = [httpx.Response(502)] * 3 + [httpx.Response(200, json={"errcode": 45009, "errmsg": "freq"})]
    calls.clear()
    counter = iter(range(10**6))
    script = (pattern[next(counter) % 4] for _ in iter(int, 1))
    sleeps.clear()
    wc = WeComClient(
        "ww1",
        "s" * 20,
        base_url="http://wx.test",
        transport=httpx.MockTransport(handler),
        sleep=sleeps.append,
        token_cache=MemoryTokenCache(),
        retry=WeComRetry(max_retries=7),
    )
    with pytest.raises(WeComRetryExhausted, match="giving up after 8 attempts"):
        wc.get_follow_user_list()
    assert len([c for c in calls if not c.endswith("gettoken")]) == 8 and len(sleeps) == 7


def test_kingdee_retries_429_like_wecom() -> None:
    from connectors.kingdee.client import KingdeeClient, KingdeeThrottled

    answers = iter([httpx.Response(429, headers={"Retry-After": "3"}), httpx.Response(200, json=[["C1"]])])

    def handler(request: httpx.Request) -> httpx.Response:
        if "ValidateUser" in request.url.path:
            return httpx.Response(
                200, json={"LoginResultType": 1}, headers={"set-cookie": "kdservice-sessionid=x1"}
            )
        return next(answers)

    sleeps: list[float] = []
    kc = KingdeeClient(
        "http://kd.test",
        acct_id="a",
        username="u",
        password="pw-1234",
        transport=httpx.MockTransport(handler),
        sleep=sleeps.append,
    )
    assert kc.execute_bill_query("BD_Customer", ["FNumber"]) == [["C1"]] and sleeps == [3.0]
    assert kc.is_retryable(KingdeeThrottled("x"))
    assert json.dumps(kc.stats)  # counters stay plain ints
