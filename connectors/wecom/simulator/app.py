"""The WeCom simulator itself: credentials, the HTTP API and the control API over the corp."""

from __future__ import annotations

import base64
import collections
import hashlib
import itertools
import json
import os
import threading
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from connectors.kit.simulator import FaultSpec, Simulator
from connectors.wecom import simdata as sd
from connectors.wecom.simulator.api import ApiHandlers
from connectors.wecom.simulator.callbacks import CallbackRecord, CallbackSender, _CallbackConfig
from connectors.wecom.simulator.changes import CorpChanges
from connectors.wecom.simulator.cursors import CursorCodec
from connectors.wecom.simulator.messages import MessageDesk
from connectors.wecom.simulator.tokens import TokenDesk


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class WeComSimulator(CorpChanges, ApiHandlers, Simulator):
    """A faithful local WeCom 客户联系 server with callbacks and fault switches.

    ``records`` is the number of external contacts; employees (follow users, default
    ``records // 250`` clamped to 5..400) and customer group chats (default ``records // 50``) scale
    with it. ``credentials()`` returns the corp id / secret the API accepts and the Token /
    EncodingAESKey its callbacks are signed and encrypted with.
    """

    system: ClassVar[str] = "wecom"
    FAULTS: ClassVar[tuple[str, ...]] = ("throttle", "session_expiry", "http_5xx", "slow", "timeout", "hang")
    OWN_FAULTS: ClassVar[tuple[FaultSpec, ...]] = (
        FaultSpec("token_ttl", "SECONDS", "access_token lifetime", default=7200.0),
        FaultSpec("token_invalid", "RATE", "a call's token is refused as invalid (40014)"),
        FaultSpec("freq_per_min", "COUNT", "45009 above N calls per API per minute"),
        FaultSpec("concurrency", "COUNT", "45033 above N list-type requests in flight"),
        FaultSpec("concurrency_rate", "RATE", "a list-type call gets 45033"),
        FaultSpec("busy", "RATE", "a call gets errcode -1 (system busy)"),
        FaultSpec("drop_callbacks", "RATE", "a callback is never sent"),
        FaultSpec(
            "callback_timeout", "SECONDS", "how long a callback delivery waits for HTTP 200", default=5.0
        ),
        FaultSpec("callback_attempts", "COUNT", "deliveries of one callback before giving up", default=3.0),
        FaultSpec("callback_retry_delay", "SECONDS", "pause between deliveries", default=1.0),
    )

    def __init__(
        self,
        *,
        employees: int | None = None,
        group_chats: int | None = None,
        callback_url: str | None = None,
        corp_id: str | None = None,
        corp_secret: str | None = None,
        callback_token: str | None = None,
        encoding_aes_key: str | None = None,
        **common: Any,
    ) -> None:
        """``common``: the kit's ``records``, ``faults``, ``seed``; the rest default from the seed."""
        super().__init__(**common)
        records, seed = self.records, self.seed
        # Demo credentials derived from the seed, shaped like real ones: 18-char CorpID, 43-char secret,
        # a Token of letters and digits, a 43-char EncodingAESKey.
        digest = hashlib.sha512(f"tongbu-wecom-{seed}".encode()).digest()
        self.corp_id = corp_id or "ww" + digest[:8].hex()
        self._corp_secret = corp_secret or base64.urlsafe_b64encode(digest[8:40]).decode().rstrip("=")
        token = callback_token or "tb" + digest[40:52].hex()
        aes = encoding_aes_key or base64.b64encode(hashlib.sha256(digest).digest()).decode().rstrip("=")
        config = _CallbackConfig(
            url=callback_url or os.environ.get("TONGBU_WECOM_CALLBACK_URL"), token=token, encoding_aes_key=aes
        )
        self._callbacks = CallbackSender(self.corp_id, config, lambda: self.faults)
        self._tokens = TokenDesk(self.corp_id, self._corp_secret)
        self._cursors = CursorCodec(hashlib.sha256(digest + b"cursor").digest()[:16])
        self._lock = threading.RLock()
        self.n_users = employees or max(5, min(400, records // 250))
        self.n_companies = max(5, records // 3)
        self._ext_ids = sd.IdCodec(seed, "external_userid", "wm")
        self._chat_ids = sd.IdCodec(seed, "chat_id", "wr")
        self._build_corp(group_chats)
        self.calls: collections.Counter[str] = collections.Counter()
        self._minute: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._in_flight = 0
        self.desk = MessageDesk(
            {u["userid"] for u in self.users},
            robot_key=base64.urlsafe_b64encode(hashlib.sha256(digest + b"robot").digest()[:18]).decode(),
        )

    # == credentials ================================================================================
    def credentials(self) -> dict[str, Any]:
        """What a connector needs: corp id and secret, plus the callback Token and EncodingAESKey."""
        cfg = self._callbacks.config
        return {
            "base_url": self.base_url if self.port else None,
            "corp_id": self.corp_id,
            "corp_secret": self._corp_secret,
            "callback_token": cfg.token,
            "encoding_aes_key": cfg.encoding_aes_key,
            "agent_id": self.desk.agent_id,
            "robot_key": self.desk.robot_key,
        }

    def tap_config(self, **overrides: Any) -> dict[str, Any]:
        """A ``tap-wecom`` / ``tongbu serve`` connection config for this simulator (after ``start``)."""
        cred = self.credentials()
        return {
            "corp_id": cred["corp_id"],
            "corp_secret": cred["corp_secret"],
            "base_url": self.base_url,
            "callback_token": cred["callback_token"],
            "encoding_aes_key": cred["encoding_aes_key"],
            **overrides,
        }

    # == tokens =====================================================================================
    def issued_tokens(self) -> list[str]:
        """Access tokens the simulator has issued."""
        with self._lock:
            return self._tokens.issued()

    def expire_tokens(self) -> None:
        """Make every issued access_token expire now (the next call gets 42001)."""
        with self._lock:
            self._tokens.expire_all()

    def invalidate_tokens(self) -> None:
        """Revoke every issued access_token (the next call gets 40014), as a secret reset does."""
        with self._lock:
            self._tokens.invalidate_all()

    # == callbacks ==================================================================================
    @property
    def callback_log(self) -> list[CallbackRecord]:
        """Every callback generated, with its delivery outcome."""
        return self._callbacks.log

    def set_callback(self, url: str | None, *, verify: bool = True) -> None:
        """Point callbacks at ``url``; with ``verify`` do WeCom's echostr check first (as saving it in
        the admin console does) and raise if the receiver does not echo the plaintext back."""
        self._callbacks.set_url(url, verify=verify)

    @property
    def callback_url(self) -> str | None:
        """Where callbacks go (None: nowhere)."""
        return self._callbacks.url

    def wait_callbacks(self, timeout: float = 30.0) -> bool:
        """Block until every queued callback was delivered or gave up; False on timeout."""
        return self._callbacks.wait(timeout)

    def _emit(self, event: str, change_type: str, fields: dict[str, Any]) -> CallbackRecord:
        return self._callbacks.emit(event, change_type, fields, drop=self.chance("drop_callbacks"))

    # == truth ======================================================================================
    def truth_streams(self) -> tuple[str, ...]:
        """``contacts`` (as ``externalcontact/get``), ``group_chats``, ``corp_tags``, ``users``."""
        return ("contacts", "group_chats", "corp_tags", "users")

    def truth(self, stream: str, *, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """The corp's ground truth of ``stream``, in id order."""
        end = None if limit is None else offset + limit
        if stream == "contacts":
            return list(itertools.islice(self.truth_contacts(), offset, end))
        if stream == "group_chats":
            ids = self.group_chat_ids()[offset:end]
            return [c for c in (self.group_chat_detail(i) for i in ids) if c is not None]
        if stream == "corp_tags":
            return self.corp_tags()[offset:end]
        if stream == "users":
            with self._lock:
                return [dict(u) for u in self.users[offset:end]]
        raise KeyError(f"no truth stream {stream!r}; known: {', '.join(self.truth_streams())}")

    def counts(self) -> dict[str, int]:
        """Live contacts, follow relations, group chats and corp tags."""
        with self._lock:
            tags = sum(len(g.tags) for g in self._tag_groups)
        return {
            "contacts": self.contact_count,
            "follow_pairs": self.follow_pair_count,
            "group_chats": self.group_chat_count,
            "corp_tags": tags,
        }

    # == HTTP =======================================================================================
    _CONTROL = frozenset(
        {
            "add_external_contact",
            "edit_external_contact",
            "update_profile",
            "del_external_contact",
            "del_follow_user",
            "create_corp_tag",
            "update_corp_tag",
            "delete_corp_tag",
            "create_group_chat",
            "update_group_chat",
            "dismiss_group_chat",
            "expire_tokens",
            "invalidate_tokens",
            "set_faults",
            "set_callback",
        }
    )

    def api_routes(self) -> list[BaseRoute]:
        """``/cgi-bin/...``: the API."""
        return [Route("/cgi-bin/{api:path}", self._api, methods=["GET", "POST"])]

    def control_routes(self) -> list[BaseRoute]:
        """``/_sim/state`` and ``/_sim/<action>`` for each truth change (body: its keyword arguments)."""
        return [Route("/_sim/{action}", self._control, methods=["GET", "POST"])]

    async def _api(self, request: Request) -> Response:
        name = request.path_params["api"]
        raw = await request.body() if request.method == "POST" else b""
        query = dict(request.query_params)
        self._in_flight += 1  # a slow call still counts against the concurrency limit
        try:
            failure = await self.transport_faults()
            if failure is not None:
                return failure
            out = self.handle(request.method, name, query, raw)
        finally:
            self._in_flight -= 1
        return Response(_dumps(out), media_type="application/json; charset=utf-8")

    async def _control(self, request: Request) -> Response:
        action = request.path_params["action"]
        if action == "state":
            info = {
                **self.counts(),
                "calls": dict(self.calls),
                "callbacks": collections.Counter(r.status for r in self.callback_log),
            }
            return Response(_dumps(info), media_type="application/json")
        if action in ("messages", "robot_messages"):  # what was delivered (app messages, robot posts)
            return Response(_dumps(list(getattr(self.desk, action))), media_type="application/json")
        if action not in self._CONTROL:
            return self.json({"error": f"unknown action {action}"}, status=404)
        try:
            kwargs = json.loads(await request.body() or b"{}")
        except ValueError:
            return self.json({"error": "the body must be a JSON object of keyword arguments"}, status=400)
        if not isinstance(kwargs, dict):
            return self.json({"error": "the body must be a JSON object of keyword arguments"}, status=400)
        response = await self.run_control(getattr(self, action), **kwargs)
        if response.status_code != 200:
            return response
        return Response(_dumps({"result": json.loads(bytes(response.body))}), media_type="application/json")

    def stop(self) -> None:
        """Stop serving and the callback senders."""
        super().stop()
        self._callbacks.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m connectors.wecom.simulator --port P --records N [--faults ...] [--callback-url U]``."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--records", type=int, default=1000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--faults", default=None)
    p.add_argument("--callback-url", default=None)
    a = p.parse_args(argv)
    sim = WeComSimulator(records=a.records, faults=a.faults, seed=a.seed, callback_url=a.callback_url)
    url = sim.start(a.host, a.port)
    print(json.dumps({"base_url": url, **sim.credentials()}), flush=True)
    try:
        sim.wait()
    finally:
        sim.stop()
