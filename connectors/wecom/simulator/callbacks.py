"""Callbacks: WeCom's encrypted, signed event POSTs to the receiver, with its retry behaviour.

Callbacks about one key (contact, chat, tag) leave in order on one of a few sender lanes; a
delivery that does not get HTTP 200 in time is resent unchanged, as WeCom does.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.kit.simulator import FaultConfig
from connectors.wecom.crypto import WXBizMsgCrypt

log = logging.getLogger("tongbu.sim.wecom")
_CALLBACK_LANES = 8


@dataclass
class CallbackRecord:
    """One callback the simulator generated, with its delivery outcome (for tests and benchmarks)."""

    seq: int
    event: str
    change_type: str
    key: str
    created_at: float
    plaintext_sha1: str
    status: str = "queued"  # queued | delivered | failed | dropped | no_url
    attempts: int = 0
    first_sent_at: float | None = None
    delivered_at: float | None = None
    #: the signed query of the delivery (every retry resends it unchanged)
    query: dict[str, str] | None = None


@dataclass
class _CallbackConfig:
    url: str | None = None
    token: str = ""
    encoding_aes_key: str = ""


def _cdata(value: Any) -> str:
    text = str(value).replace("]]>", "]]]]><![CDATA[>")
    return f"<![CDATA[{text}]]>"


class CallbackSender:
    """Builds, encrypts, records and delivers the callbacks of one simulated corp."""

    def __init__(self, corp_id: str, config: _CallbackConfig, faults: Callable[[], FaultConfig]) -> None:
        self.corp_id = corp_id
        self.config = config
        self._faults = faults
        self._crypt = WXBizMsgCrypt(config.token, config.encoding_aes_key, corp_id)
        self._lock = threading.RLock()
        self.log: list[CallbackRecord] = []
        self._cb_seq = 0
        self._cb_pending = 0
        self._cb_cond = threading.Condition()
        self._cb_pool: list[ThreadPoolExecutor] | None = None
        self._cb_http: httpx.Client | None = None

    def set_url(self, url: str | None, *, verify: bool = True) -> None:
        """Point callbacks at ``url``; with ``verify`` do WeCom's echostr check first (as saving it in
        the admin console does) and raise if the receiver does not echo the plaintext back."""
        if url and verify:
            plain = str(secrets.randbelow(10**18))
            msg = self._crypt.echostr(plain)
            resp = httpx.get(url, params={**msg.query, "echostr": msg.encrypt}, timeout=5)
            if resp.status_code != 200 or resp.text != plain:
                raise RuntimeError(f"callback URL verification failed (HTTP {resp.status_code})")
        with self._lock:
            self.config.url = url

    @property
    def url(self) -> str | None:
        """Where callbacks go (None: nowhere)."""
        return self.config.url

    def _event_xml(self, event: str, change_type: str, fields: dict[str, Any], create_time: int) -> str:
        parts = [
            f"<ToUserName>{_cdata(self.corp_id)}</ToUserName>",
            f"<FromUserName>{_cdata('sys')}</FromUserName>",
            f"<CreateTime>{create_time}</CreateTime>",
            f"<MsgType>{_cdata('event')}</MsgType>",
            f"<Event>{_cdata(event)}</Event>",
            f"<ChangeType>{_cdata(change_type)}</ChangeType>",
        ]
        for k, v in fields.items():
            parts.append(f"<{k}>{v}</{k}>" if isinstance(v, int) else f"<{k}>{_cdata(v)}</{k}>")
        return "<xml>" + "".join(parts) + "</xml>"

    def emit(
        self, event: str, change_type: str, fields: dict[str, Any], *, drop: bool = False
    ) -> CallbackRecord:
        """Record a callback and queue its delivery (``drop``: the fault ``drop_callbacks`` hit)."""
        now = time.time()
        plain = self._event_xml(event, change_type, fields, int(now))
        key = str(fields.get("ExternalUserID") or fields.get("ChatId") or fields.get("Id") or "")
        with self._lock:
            self._cb_seq += 1
            rec = CallbackRecord(
                self._cb_seq, event, change_type, key, now, hashlib.sha1(plain.encode()).hexdigest()
            )
            self.log.append(rec)
            url = self.config.url
        if not url:
            rec.status = "no_url"
            return rec
        if drop:
            rec.status = "dropped"
            return rec
        with self._cb_cond:
            self._cb_pending += 1
        self._sender(key).submit(self._deliver, rec, url, plain)
        return rec

    def _sender(self, key: str) -> ThreadPoolExecutor:
        # Callbacks about one contact (chat, tag) leave in order, one lane per key hash; different
        # contacts go out in parallel, so one slow delivery does not hold up every other.
        with self._lock:
            if self._cb_pool is None:
                self._cb_pool = [
                    ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"wecom-callback-{n}")
                    for n in range(_CALLBACK_LANES)
                ]
                self._cb_http = httpx.Client(
                    limits=httpx.Limits(max_connections=16, max_keepalive_connections=16)
                )
            return self._cb_pool[zlib.crc32(key.encode()) % _CALLBACK_LANES]

    def _deliver(self, rec: CallbackRecord, url: str, plain: str) -> None:
        try:
            f = self._faults()
            attempts = max(1, int(f.value("callback_attempts", 3)))
            timeout = f.value("callback_timeout", 5.0)
            delay = f.value("callback_retry_delay", 1.0)
            # One message, resent unchanged on retry: the receiver recognises it as the same event.
            msg = self._crypt.encrypt_message(plain)
            rec.query = msg.query
            assert self._cb_http is not None
            for attempt in range(attempts):
                rec.attempts = attempt + 1
                if rec.first_sent_at is None:
                    rec.first_sent_at = time.time()
                try:
                    resp = self._cb_http.post(
                        url,
                        params=msg.query,
                        content=msg.body.encode("utf-8"),
                        headers={"Content-Type": "text/xml"},
                        timeout=timeout,
                    )
                    if resp.status_code == 200:
                        rec.status = "delivered"
                        rec.delivered_at = time.time()
                        return
                except httpx.HTTPError:
                    pass
                if attempt + 1 < attempts:
                    time.sleep(delay)
            rec.status = "failed"
        except Exception:  # pragma: no cover - a sender thread must never die silently
            log.exception("callback delivery crashed")
            rec.status = "failed"
        finally:
            with self._cb_cond:
                self._cb_pending -= 1
                self._cb_cond.notify_all()

    def wait(self, timeout: float = 30.0) -> bool:
        """Block until every queued callback was delivered or gave up; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cb_cond:
            while self._cb_pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cb_cond.wait(left)
        return True

    def close(self) -> None:
        """Stop the sender lanes (queued deliveries are cancelled)."""
        with self._lock:
            pool, http = self._cb_pool, self._cb_http
            self._cb_pool = self._cb_http = None
        for lane in pool or []:
            lane.shutdown(wait=False, cancel_futures=True)
        if http is not None:
            http.close()
