"""A local WeCom (企业微信) server: the 客户联系 API at the real paths, and its callbacks.

What it reproduces (external-apis.md §1):

* ``/cgi-bin/gettoken`` → ``access_token`` that expires after ``expires_in``; every error is HTTP 200
  with ``errcode``/``errmsg`` (41001 missing, 40014 invalid, 42001 expired token, 45009 frequency,
  45033 concurrency, -1 busy, 84061 no relationship, 40096 bad external_userid, 43001/43002 method);
* ``externalcontact/get_follow_user_list``, ``list``, ``get``, ``batch/get_by_user`` (both request
  shapes, opaque ``next_cursor``), ``get_corp_tag_list``, ``add_corp_tag``/``edit_corp_tag``/
  ``del_corp_tag``, ``mark_tag``, ``remark``, ``groupchat/list``, ``groupchat/get``, ``/cgi-bin/user/list``;
* callbacks POSTed to a configured URL, encrypted and signed with WXBizMsgCrypt, retried when the
  receiver does not answer in time; **changes made through the API produce no callback**, as in WeCom.

Data is realistic Chinese and deterministic from the seed (see :mod:`connectors.wecom.simdata`);
only changes are stored, so 100,000 contacts over hundreds of employees fit in a few megabytes.

Tests and benchmarks drive it through Python methods (``add_external_contact``, ``edit_external_contact``,
``del_external_contact``, ``del_follow_user``, tag and group-chat changes, ``update_profile`` for the
silent edits WeCom never reports) or the same actions over HTTP under ``/_sim/``.

Fault switches (``--faults``): ``token_ttl=S`` (token lifetime), ``token_expiry=N`` (expire every token
every N API calls), ``token_invalid=R`` (random 40014), ``freq_limit=R`` (random 45009),
``freq_per_min=N`` (45009 above N calls per API per minute), ``concurrency=N`` (45033 above N
requests in flight), ``concurrency_rate=R`` (random 45033), ``busy=R`` (random -1),
``latency_ms=N`` (slow API), ``drop_callbacks=R`` (callbacks never sent), ``callback_timeout=S``
(default 5), ``callback_attempts=N`` (default 3), ``callback_retry_delay=S`` (default 1).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import collections
import hashlib
import hmac
import json
import logging
import os
import random
import secrets
import struct
import threading
import time
import zlib
from array import array
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.kit.simulator import FaultConfig, Simulator
from connectors.wecom import simdata as sd
from connectors.wecom.crypto import WXBizMsgCrypt

log = logging.getLogger("tongbu.sim.wecom")

MAX_BATCH_LIMIT = 100
MAX_BATCH_USERS = 100
MAX_CHAT_LIMIT = 1000
GET_FOLLOW_PAGE = 500  # externalcontact/get pages follow_user beyond 500 entries
_CALLBACK_LANES = 8

_ERRMSG = {
    -1: "system busy",
    40001: "invalid credential",
    40013: "invalid corpid",
    40014: "invalid access_token",
    40058: "invalid Request Parameter",
    40068: "invalid tagid",
    40071: "UserTag Name Already Exist",
    40096: "invalid external userid",
    41001: "access_token missing",
    42001: "access_token expired",
    43001: "require GET method",
    43002: "require POST method",
    45009: "api freq out of limit",
    45033: "api concurrent out of limit",
    47001: "data format error",
    48001: "api forbidden",
    60111: "invalid string value `userid`. userid not found",
    81017: "too many chat owners, please use owner_filter",
    84061: "not external contact",
    86001: "chat not exist",
}
# APIs WeCom counts as "list-type" for its concurrency limit (45033).
_CONCURRENCY_LIMITED = frozenset(
    {
        "externalcontact/batch/get_by_user",
        "externalcontact/list",
        "externalcontact/get",
        "externalcontact/groupchat/list",
        "externalcontact/groupchat/get",
    }
)


class WeComAPIError(Exception):
    """Raised inside a handler to answer with an ``errcode`` (HTTP 200, like WeCom)."""

    def __init__(self, errcode: int, detail: str = "") -> None:
        super().__init__(errcode, detail)
        self.errcode = errcode
        self.detail = detail


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


@dataclass
class _TagGroup:
    group_id: str
    group_name: str
    create_time: int
    order: int
    tags: list[dict[str, Any]] = field(default_factory=list)


def _cdata(value: Any) -> str:
    text = str(value).replace("]]>", "]]]]><![CDATA[>")
    return f"<![CDATA[{text}]]>"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class WeComSimulator(Simulator):
    """A faithful local WeCom 客户联系 server with callbacks and fault switches.

    ``records`` is the number of external contacts; employees (follow users, default
    ``records // 250`` clamped to 5..400) and customer group chats (default ``records // 50``) scale
    with it. ``credentials()`` returns the corp id / secret the API accepts and the Token /
    EncodingAESKey its callbacks are signed and encrypted with.
    """

    system = "wecom"

    def __init__(
        self,
        *,
        records: int = 100,
        faults: FaultConfig | str | None = None,
        seed: int = 7,
        employees: int | None = None,
        group_chats: int | None = None,
        callback_url: str | None = None,
        corp_id: str | None = None,
        corp_secret: str | None = None,
        callback_token: str | None = None,
        encoding_aes_key: str | None = None,
    ) -> None:
        super().__init__(records=records, faults=faults, seed=seed)
        # Demo credentials derived from the seed, shaped like real ones: 18-char CorpID, 43-char secret,
        # a Token of letters and digits, a 43-char EncodingAESKey.
        digest = hashlib.sha512(f"tongbu-wecom-{seed}".encode()).digest()
        self.corp_id = corp_id or "ww" + digest[:8].hex()
        self._corp_secret = corp_secret or base64.urlsafe_b64encode(digest[8:40]).decode().rstrip("=")
        token = callback_token or "tb" + digest[40:52].hex()
        aes = encoding_aes_key or base64.b64encode(hashlib.sha256(digest).digest()).decode().rstrip("=")
        self._callback = _CallbackConfig(
            url=callback_url or os.environ.get("TONGBU_WECOM_CALLBACK_URL"), token=token, encoding_aes_key=aes
        )
        self._crypt = WXBizMsgCrypt(token, aes, self.corp_id)
        self._lock = threading.RLock()
        self._rng = random.Random(seed ^ 0x5EED)
        self._cursor_key = hashlib.sha256(digest + b"cursor").digest()[:16]
        self.n_users = employees or max(5, min(400, records // 250))
        self.n_companies = max(5, records // 3)
        self._ext_ids = sd.IdCodec(seed, "external_userid", "wm")
        self._chat_ids = sd.IdCodec(seed, "chat_id", "wr")
        self._build_users()
        self._build_tags()
        self._build_relations()
        self._n_chats = group_chats if group_chats is not None else max(1, records // 50)
        self._next_chat = self._n_chats
        self._chat_over: dict[int, dict[str, Any] | None] = {}
        # Tokens: token -> [expires_at (wall clock), valid]
        self._tokens: dict[str, list[Any]] = {}
        self._api_calls = 0
        self.calls: collections.Counter[str] = collections.Counter()
        self._minute: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._in_flight = 0
        # Callbacks
        self.callback_log: list[CallbackRecord] = []
        self._cb_seq = 0
        self._cb_pending = 0
        self._cb_cond = threading.Condition()
        self._cb_pool: list[ThreadPoolExecutor] | None = None
        self._cb_http: httpx.Client | None = None

    # == data model =================================================================================
    def _build_users(self) -> None:
        self.users: list[dict[str, Any]] = []
        self._user_index: dict[str, int] = {}
        for u in range(self.n_users):
            name, py = sd.person_name(self.seed, u, 501)
            userid = py
            n = 2
            while userid in self._user_index:
                userid = f"{py}{n}"
                n += 1
            self._user_index[userid] = u
            self.users.append(
                {
                    "userid": userid,
                    "name": name,
                    "department": [1 + sd.mix(self.seed, u, 502) % 8],
                    "position": sd.pick(
                        ("销售代表", "客户经理", "大客户经理", "销售主管", "区域经理"), self.seed, u, 503
                    ),
                    "mobile": sd.mobile(self.seed, u, 504),
                    "status": 1,
                }
            )

    def _build_tags(self) -> None:
        codec = sd.IdCodec(self.seed, "tag", "et")
        self._tag_codec = codec
        self._tag_groups: list[_TagGroup] = []
        self._tags: dict[str, tuple[_TagGroup, dict[str, Any]]] = {}
        self._initial_tags: list[list[str]] = []
        n = 0
        for g, (gname, names) in enumerate(sd.TAG_GROUPS):
            group = _TagGroup(codec.encode(10_000 + g), gname, sd.BASE_EPOCH - 86400 * (30 - g), g + 1)
            ids = []
            for t, tname in enumerate(names):
                tag = {"id": codec.encode(n), "name": tname, "create_time": group.create_time + t, "order": t}
                group.tags.append(tag)
                self._tags[tag["id"]] = (group, tag)
                ids.append(tag["id"])
                n += 1
            self._tag_groups.append(group)
            self._initial_tags.append(ids)
        self._next_tag = n
        self._next_group = len(self._tag_groups)

    def _default_followers(self, i: int) -> list[int]:
        if i >= self.records:
            return []
        s, n = self.seed, self.n_users
        first = sd.mix(s, i, 101) % n
        out = [first]
        if sd.chance(0.12, s, i, 102):
            second = sd.mix(s, i, 103) % n
            if second not in out:
                out.append(second)
            if sd.chance(0.25, s, i, 104):
                third = sd.mix(s, i, 105) % n
                if third not in out:
                    out.append(third)
        return out

    def _build_relations(self) -> None:
        # The only per-contact structure: each employee's sorted contact indices (a compact array).
        lists: list[list[int]] = [[] for _ in range(self.n_users)]
        for i in range(self.records):
            for u in self._default_followers(i):
                lists[u].append(i)
        self._user_contacts = [array("I", lst) for lst in lists]
        self._followers_over: dict[int, list[int]] = {}
        self._contact_over: dict[int, dict[str, Any]] = {}
        self._follow_over: dict[tuple[int, int], dict[str, Any]] = {}
        self._next_index = self.records
        self._live = self.records

    def _followers(self, i: int) -> list[int]:
        over = self._followers_over.get(i)
        return list(over) if over is not None else self._default_followers(i)

    def _set_followers(self, i: int, users: list[int]) -> None:
        before = self._followers(i)
        for u in set(before) - set(users):
            lst = self._user_contacts[u]
            k = bisect.bisect_left(lst, i)
            if k < len(lst) and lst[k] == i:
                del lst[k]
        for u in users:
            if u not in before:
                lst = self._user_contacts[u]
                k = bisect.bisect_left(lst, i)
                if k >= len(lst) or lst[k] != i:
                    lst.insert(k, i)
        self._followers_over[i] = list(users)
        self._live += (1 if users else 0) - (1 if before else 0)

    def _generated_contact(self, i: int) -> dict[str, Any]:
        s = self.seed
        ext = self._ext_ids.encode(i)
        ctype = 2 if sd.chance(0.45, s, i, 201) else 1
        c: dict[str, Any] = {"external_userid": ext}
        cn, _py = sd.person_name(s, i, 202)
        if ctype == 1 and sd.chance(0.35, s, i, 203):
            cn = sd.pick(sd.NICKNAMES, s, i, 204)
        c["name"] = cn
        c["avatar"] = f"http://wx.qlogo.cn/mmhead/{hashlib.md5(ext.encode()).hexdigest()}/0"
        c["type"] = ctype
        c["gender"] = sd.pick((1, 1, 2, 2, 0), s, i, 205)
        if ctype == 1 and sd.chance(0.7, s, i, 206):
            c["unionid"] = (
                "oz"
                + base64.urlsafe_b64encode(hashlib.blake2b(ext.encode(), digest_size=20).digest()).decode()[
                    :26
                ]
            )
        if ctype == 2:
            comp = sd.company(s, sd.mix(s, i, 207) % self.n_companies)
            c["position"] = sd.pick(sd.POSITIONS, s, i, 208)
            c["corp_name"] = comp.short_name
            c["corp_full_name"] = comp.full_name
            if sd.chance(0.3, s, i, 209):
                c["external_profile"] = {
                    "external_attr": [
                        {
                            "type": 0,
                            "name": "部门",
                            "text": {"value": sd.pick(("采购部", "技术部", "总经办", "生产部"), s, i, 210)},
                        },
                    ]
                }
        return c

    def _contact(self, i: int) -> dict[str, Any]:
        over = self._contact_over.get(i)
        return dict(over) if over is not None else self._generated_contact(i)

    def _generated_follow(self, i: int, u: int, contact: dict[str, Any] | None = None) -> dict[str, Any]:
        s = self.seed
        contact = contact if contact is not None else self._contact(i)
        userid = self.users[u]["userid"]
        surname = sd.pick(sd.SURNAMES, s, i, 202, 11)[0]  # the real surname, even behind a nickname
        title = sd.pick(("经理", "总", "工", "老师", "主任"), s, i, u, 301)
        corp_short = (
            contact.get("corp_name") or sd.company(s, sd.mix(s, i, 207) % self.n_companies).short_name
        )
        tags: list[str] = []
        grade_ids, source_ids, product_ids, industry_ids = self._initial_tags[:4]
        if sd.chance(0.6, s, i, u, 302):
            tags.append(sd.pick(grade_ids, s, i, u, 303))
        if sd.chance(0.5, s, i, u, 304):
            tags.append(sd.pick(source_ids, s, i, u, 305))
        if sd.chance(0.3, s, i, u, 306):
            tags.append(sd.pick(product_ids, s, i, u, 307))
        if contact["type"] == 2 and sd.chance(0.3, s, i, u, 308):
            tags.append(sd.pick(industry_ids, s, i, u, 309))
        add_way = sd.pick(sd.ADD_WAYS, s, i, u, 310)
        f: dict[str, Any] = {
            "userid": userid,
            "remark": f"{surname}{title}-{corp_short}" if sd.chance(0.8, s, i, u, 311) else "",
            "description": sd.pick(sd.DESCRIPTIONS, s, i, u, 312),
            "createtime": sd.epoch_in_span(s, i, u, 313),
            "tag_id": tags,
            "remark_corp_name": corp_short if sd.chance(0.6, s, i, u, 314) else "",
            "remark_mobiles": [sd.mobile(s, i, u, 315)] if sd.chance(0.7, s, i, u, 316) else [],
            "oper_userid": userid if add_way != 1 else contact["external_userid"],
            "add_way": add_way,
        }
        state = sd.pick(sd.STATES, s, i, u, 317)
        if state and add_way == 1:
            f["state"] = state
        return f

    def _follow(self, i: int, u: int, contact: dict[str, Any] | None = None) -> dict[str, Any]:
        over = self._follow_over.get((i, u))
        f = dict(over) if over is not None else self._generated_follow(i, u, contact)
        f["tag_id"] = [t for t in f["tag_id"] if t in self._tags]  # deleted tags vanish from relations
        return f

    def _follow_with_tag_names(self, i: int, u: int) -> dict[str, Any]:
        f = self._follow(i, u)
        ids = f.pop("tag_id")
        f["tags"] = [
            {
                "group_name": self._tags[t][0].group_name,
                "tag_name": self._tags[t][1]["name"],
                "tag_id": t,
                "type": 1,
            }
            for t in ids
        ]
        # ``get`` lists keys in WeCom's documented order: remark fields after the tags.
        return f

    def _index_of(self, external_userid: str) -> int:
        i = self._ext_ids.decode(external_userid or "")
        if i is None or i >= self._next_index:
            raise WeComAPIError(40096)
        return i

    def _user(self, userid: str) -> int:
        u = self._user_index.get(userid or "")
        if u is None:
            raise WeComAPIError(60111)
        return u

    # == public read helpers (tests, benchmarks) ====================================================
    def credentials(self) -> dict[str, Any]:
        """What a connector needs: corp id and secret, plus the callback Token and EncodingAESKey."""
        return {
            "base_url": self.base_url if self.port else None,
            "corp_id": self.corp_id,
            "corp_secret": self._corp_secret,
            "callback_token": self._callback.token,
            "encoding_aes_key": self._callback.encoding_aes_key,
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

    @property
    def contact_count(self) -> int:
        """External contacts that currently have at least one follow user."""
        return self._live

    @property
    def follow_pair_count(self) -> int:
        """(employee, external contact) relations: what ``batch/get_by_user`` pages over."""
        with self._lock:
            return sum(len(lst) for lst in self._user_contacts)

    @property
    def group_chat_count(self) -> int:
        """Live customer group chats."""
        with self._lock:
            return sum(1 for c in range(self._next_chat) if self._chat_owner(c) is not None)

    def follow_user_ids(self) -> list[str]:
        """Employees with customer contact enabled who follow at least one contact."""
        with self._lock:
            return [self.users[u]["userid"] for u in range(self.n_users) if self._user_contacts[u]]

    def external_userids(self) -> Iterator[str]:
        """Every live external_userid (generated lazily)."""
        for i in range(self._next_index):
            with self._lock:
                live = bool(self._followers(i))
            if live:
                yield self._ext_ids.encode(i)

    def contact_detail(self, external_userid: str) -> dict[str, Any] | None:
        """The ``externalcontact/get`` body (without errcode) for a live contact, else None."""
        with self._lock:
            try:
                i = self._index_of(external_userid)
            except WeComAPIError:
                return None
            users = self._followers(i)
            if not users:
                return None
            return {
                "external_contact": self._contact(i),
                "follow_user": [self._follow_with_tag_names(i, u) for u in users],
            }

    def truth_contacts(self) -> Iterator[dict[str, Any]]:
        """Every live contact as ``externalcontact/get`` returns it: the simulator's truth."""
        for ext in self.external_userids():
            detail = self.contact_detail(ext)
            if detail is not None:
                yield detail

    def random_external_userid(self, rng: random.Random) -> str:
        """A random live contact (benchmarks pick what to edit with this)."""
        with self._lock:
            for _ in range(1000):
                i = rng.randrange(self._next_index)
                if self._followers(i):
                    return self._ext_ids.encode(i)
        raise LookupError("no live external contact")

    def corp_tags(self) -> list[dict[str, Any]]:
        """The ``tag_group`` list of ``get_corp_tag_list``."""
        with self._lock:
            return [self._render_group(g, None) for g in self._tag_groups]

    def tag_id(self, group_name: str, tag_name: str) -> str:
        """The id of a corp tag by its group and name."""
        with self._lock:
            for g in self._tag_groups:
                if g.group_name == group_name:
                    for t in g.tags:
                        if t["name"] == tag_name:
                            return t["id"]
        raise KeyError(f"no corp tag {group_name}/{tag_name}")

    def group_chat_ids(self) -> list[str]:
        """Every live customer group chat id."""
        with self._lock:
            return [
                self._chat_ids.encode(c) for c in range(self._next_chat) if self._chat_owner(c) is not None
            ]

    def group_chat_detail(self, chat_id: str) -> dict[str, Any] | None:
        """The ``groupchat/get`` ``group_chat`` object, else None."""
        with self._lock:
            c = self._chat_ids.decode(chat_id)
            return None if c is None or c >= self._next_chat else self._chat(c)

    # == tokens and limits ==========================================================================
    def expire_tokens(self) -> None:
        """Make every issued access_token expire now (the next call gets 42001)."""
        with self._lock:
            for ent in self._tokens.values():
                ent[0] = min(ent[0], time.time() - 1)

    def invalidate_tokens(self) -> None:
        """Revoke every issued access_token (the next call gets 40014), as a secret reset does."""
        with self._lock:
            for ent in self._tokens.values():
                ent[1] = False

    def set_faults(self, spec: str | FaultConfig | None) -> None:
        """Replace the fault switches at run time."""
        with self._lock:
            self.faults = spec if isinstance(spec, FaultConfig) else FaultConfig.parse(spec)

    def _token_ttl(self) -> int:
        return int(self.faults.value("token_ttl", 7200))

    def _gettoken(self, q: dict[str, str]) -> dict[str, Any]:
        if q.get("corpid") != self.corp_id:
            raise WeComAPIError(40013)
        if not hmac.compare_digest(str(q.get("corpsecret", "")), self._corp_secret):
            raise WeComAPIError(40001)
        now = time.time()
        ttl = self._token_ttl()
        self._tokens = {t: e for t, e in self._tokens.items() if e[0] > now and e[1]}
        # WeCom hands out the same token while it is young, and a fresh one near expiry.
        for tok, (exp, valid) in self._tokens.items():
            if valid and exp - now > ttl / 2:
                return {"access_token": tok, "expires_in": int(exp - now)}
        tok = secrets.token_urlsafe(48)[:64]
        self._tokens[tok] = [now + ttl, True]
        return {"access_token": tok, "expires_in": ttl}

    def _check_token(self, q: dict[str, str]) -> None:
        tok = q.get("access_token")
        if not tok:
            raise WeComAPIError(41001)
        ent = self._tokens.get(tok)
        if ent is None or not ent[1]:
            raise WeComAPIError(40014)
        if time.time() >= ent[0]:
            raise WeComAPIError(42001)

    def _limits(self, api: str) -> None:
        f = self.faults
        self._api_calls += 1
        every = int(f.value("token_expiry", 0))
        if every and self._api_calls % every == 0:
            self.expire_tokens()
        if f.enabled("token_invalid") and self._rng.random() < f.value("token_invalid"):
            raise WeComAPIError(40014)
        if f.enabled("busy") and self._rng.random() < f.value("busy"):
            raise WeComAPIError(-1)
        if f.enabled("freq_limit") and self._rng.random() < f.value("freq_limit"):
            raise WeComAPIError(45009)
        per_min = int(f.value("freq_per_min", 0))
        if per_min:
            window = self._minute[api]
            now = time.monotonic()
            while window and now - window[0] > 60:
                window.popleft()
            if len(window) >= per_min:
                raise WeComAPIError(45009)
            window.append(now)
        if api in _CONCURRENCY_LIMITED:
            limit = int(f.value("concurrency", 0))
            if limit and self._in_flight > limit:
                raise WeComAPIError(45033)
            if f.enabled("concurrency_rate") and self._rng.random() < f.value("concurrency_rate"):
                raise WeComAPIError(45033)

    # == cursors ====================================================================================
    def _mask(self, raw: bytes) -> bytes:
        pad = hashlib.sha256(self._cursor_key + b"mask").digest()
        return bytes(a ^ b for a, b in zip(raw, pad, strict=False))

    def _make_cursor(self, *values: int) -> str:
        # Opaque like WeCom's: masked position + a MAC, so a client cannot craft or edit one.
        raw = struct.pack(f">{len(values)}q", *values)
        tag = hmac.new(self._cursor_key, raw, hashlib.sha256).digest()[:6]
        return base64.urlsafe_b64encode(self._mask(raw) + tag).decode().rstrip("=")

    def _read_cursor(self, cursor: str | None, n: int) -> tuple[int, ...] | None:
        if not cursor:
            return None
        try:
            blob = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            raw, tag = self._mask(blob[: 8 * n]), blob[8 * n :]
            if len(raw) != 8 * n or not hmac.compare_digest(
                tag, hmac.new(self._cursor_key, raw, hashlib.sha256).digest()[:6]
            ):
                raise ValueError
            return struct.unpack(f">{n}q", raw)
        except (ValueError, struct.error):
            raise WeComAPIError(40058, "invalid cursor") from None

    # == API handlers ===============================================================================
    def _follow_user_list(self, q: dict, body: dict) -> dict[str, Any]:
        return {
            "follow_user": [self.users[u]["userid"] for u in range(self.n_users) if self._user_contacts[u]]
        }

    def _list(self, q: dict, body: dict) -> dict[str, Any]:
        u = self._user(q.get("userid", ""))
        return {"external_userid": [self._ext_ids.encode(i) for i in self._user_contacts[u]]}

    def _get(self, q: dict, body: dict) -> dict[str, Any]:
        i = self._index_of(q.get("external_userid", ""))
        users = self._followers(i)
        if not users:
            raise WeComAPIError(84061)
        start = 0
        cur = self._read_cursor(q.get("cursor"), 1)
        if cur is not None:
            start = cur[0]
        page = users[start : start + GET_FOLLOW_PAGE]
        out: dict[str, Any] = {
            "external_contact": self._contact(i),
            "follow_user": [self._follow_with_tag_names(i, u) for u in page],
        }
        if start + GET_FOLLOW_PAGE < len(users):
            out["next_cursor"] = self._make_cursor(start + GET_FOLLOW_PAGE)
        return out

    def _batch_get_by_user(self, q: dict, body: dict) -> dict[str, Any]:
        ids = body.get("userid_list")
        if ids is None and body.get("userid"):
            ids = [body["userid"]]  # the older single-user request shape (wechatpy)
        if not isinstance(ids, list) or not ids or len(ids) > MAX_BATCH_USERS:
            raise WeComAPIError(40058, "userid_list must hold 1..100 userids")
        limit = body.get("limit", 50)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_BATCH_LIMIT:
            raise WeComAPIError(40058, "limit must be 1..100")
        users = [self._user(x) for x in ids]
        pos, last = self._read_cursor(body.get("cursor"), 2) or (0, -1)
        items: list[dict[str, Any]] = []
        while pos < len(users) and len(items) < limit:
            u = users[pos]
            lst = self._user_contacts[u]
            k = bisect.bisect_right(lst, last)
            take = lst[k : k + (limit - len(items))]
            for i in take:
                contact = self._contact(i)
                items.append({"external_contact": contact, "follow_info": self._follow(i, u, dict(contact))})
            if k + len(take) < len(lst):
                last = take[-1]
                break
            pos, last = pos + 1, -1
        nxt = self._make_cursor(pos, last) if pos < len(users) else ""
        return {"external_contact_list": items, "next_cursor": nxt}

    def _render_group(self, g: _TagGroup, tag_filter: set[str] | None) -> dict[str, Any]:
        tags = [dict(t) for t in g.tags if tag_filter is None or t["id"] in tag_filter]
        return {
            "group_id": g.group_id,
            "group_name": g.group_name,
            "create_time": g.create_time,
            "order": g.order,
            "tag": tags,
        }

    def _get_corp_tag_list(self, q: dict, body: dict) -> dict[str, Any]:
        tag_ids = set(body.get("tag_id") or [])
        group_ids = set(body.get("group_id") or [])
        out = []
        for g in self._tag_groups:
            if group_ids and g.group_id not in group_ids:
                continue
            if tag_ids:
                grp = self._render_group(g, tag_ids)
                if grp["tag"]:
                    out.append(grp)
            else:
                out.append(self._render_group(g, None))
        return {"tag_group": out}

    def _add_corp_tag(self, q: dict, body: dict) -> dict[str, Any]:
        names = [t.get("name") for t in body.get("tag") or []]
        if not names or not all(isinstance(n, str) and n for n in names):
            raise WeComAPIError(40058, "tag.name required")
        group = self._find_or_create_group(body.get("group_id"), body.get("group_name"))
        created = []
        for t in body.get("tag") or []:
            if any(x["name"] == t["name"] for x in group.tags):
                raise WeComAPIError(40071)
            created.append(self._new_tag(group, t["name"], t.get("order", len(group.tags))))
        return {
            "tag_group": {
                "group_id": group.group_id,
                "group_name": group.group_name,
                "create_time": group.create_time,
                "order": group.order,
                "tag": [dict(t) for t in created],
            }
        }

    def _edit_corp_tag(self, q: dict, body: dict) -> dict[str, Any]:
        ent = self._tags.get(body.get("id", ""))
        if ent is None:
            raise WeComAPIError(40068)
        if body.get("name"):
            ent[1]["name"] = body["name"]
        if "order" in body:
            ent[1]["order"] = body["order"]
        return {}

    def _del_corp_tag(self, q: dict, body: dict) -> dict[str, Any]:
        for tid in body.get("tag_id") or []:
            self._delete_tag(tid)
        return {}

    def _mark_tag(self, q: dict, body: dict) -> dict[str, Any]:
        u = self._user(body.get("userid", ""))
        i = self._index_of(body.get("external_userid", ""))
        add, remove = list(body.get("add_tag") or []), list(body.get("remove_tag") or [])
        if not add and not remove:
            raise WeComAPIError(40058, "add_tag and remove_tag cannot both be empty")
        if u not in self._followers(i):
            raise WeComAPIError(84061)
        for t in add + remove:
            if t not in self._tags:
                raise WeComAPIError(40068)
        f = self._follow(i, u)
        tags = [t for t in f["tag_id"] if t not in remove]
        tags += [t for t in add if t not in tags]
        f["tag_id"] = tags
        self._follow_over[(i, u)] = f
        return {}  # API writes produce no callback

    def _remark(self, q: dict, body: dict) -> dict[str, Any]:
        u = self._user(body.get("userid", ""))
        i = self._index_of(body.get("external_userid", ""))
        if u not in self._followers(i):
            raise WeComAPIError(84061)
        f = self._follow(i, u)
        for src, dst in (
            ("remark", "remark"),
            ("description", "description"),
            ("remark_company", "remark_corp_name"),
            ("remark_mobiles", "remark_mobiles"),
        ):
            if src in body:
                f[dst] = body[src]
        self._follow_over[(i, u)] = f
        return {}

    # -- group chats --
    def _generated_chat(self, c: int) -> dict[str, Any]:
        s = self.seed
        owner = sd.mix(s, c, 601) % self.n_users
        created = sd.epoch_in_span(s, c, 602)
        members = [{"userid": self.users[owner]["userid"], "type": 1, "join_time": created, "join_scene": 1}]
        for k in range(sd.mix(s, c, 603) % 3):
            u = sd.mix(s, c, 604, k) % self.n_users
            if all(m["userid"] != self.users[u]["userid"] for m in members):
                members.append(
                    {
                        "userid": self.users[u]["userid"],
                        "type": 1,
                        "join_time": created + 60 * (k + 1),
                        "join_scene": 1,
                        "invitor": {"userid": self.users[owner]["userid"]},
                    }
                )
        for k in range(2 + sd.mix(s, c, 605) % 14):
            i = sd.mix(s, c, 606, k) % max(1, self.records)
            ext = self._ext_ids.encode(i)
            if any(m["userid"] == ext for m in members):
                continue
            m = {
                "userid": ext,
                "type": 2,
                "join_time": created + 3600 * (k + 1),
                "join_scene": sd.pick((1, 2, 3), s, c, 607, k),
                "invitor": {"userid": self.users[owner]["userid"]},
                "group_nickname": "",
                "name": self._contact(i)["name"],
            }
            members.append(m)
        comp = sd.company(s, sd.mix(s, c, 608) % self.n_companies)
        return {
            "chat_id": self._chat_ids.encode(c),
            "name": comp.short_name + sd.pick(sd.CHAT_SUFFIXES, s, c, 609),
            "owner": self.users[owner]["userid"],
            "create_time": created,
            "notice": sd.pick(sd.NOTICES, s, c, 610),
            "member_list": members,
            "admin_list": [],
        }

    def _chat_owner(self, c: int) -> str | None:
        # Cheap existence/owner test: paging must not generate every chat it skips.
        if c in self._chat_over:
            over = self._chat_over[c]
            return None if over is None else over["owner"]
        if c >= self._n_chats:
            return None
        return self.users[sd.mix(self.seed, c, 601) % self.n_users]["userid"]

    def _chat(self, c: int) -> dict[str, Any] | None:
        if c in self._chat_over:
            over = self._chat_over[c]
            return None if over is None else json.loads(json.dumps(over))
        if c >= self._n_chats:
            return None
        return self._generated_chat(c)

    def _groupchat_list(self, q: dict, body: dict) -> dict[str, Any]:
        limit = body.get("limit", 100)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_CHAT_LIMIT:
            raise WeComAPIError(40058, "limit must be 1..1000")
        owners = set((body.get("owner_filter") or {}).get("userid_list") or [])
        if not owners and self.n_users > 1000:
            raise WeComAPIError(81017)
        status_filter = int(body.get("status_filter", 0))
        (start,) = self._read_cursor(body.get("cursor"), 1) or (0,)
        out: list[dict[str, Any]] = []
        c = start

        def visible(k: int) -> bool:
            owner = self._chat_owner(k)
            # every simulated chat is 跟进人正常 (status 0)
            return owner is not None and (not owners or owner in owners) and status_filter == 0

        while c < self._next_chat and len(out) < limit:
            if visible(c):
                out.append({"chat_id": self._chat_ids.encode(c), "status": 0})
            c += 1
        while c < self._next_chat and not visible(c):
            c += 1  # an exact "" on the last page saves the client one empty call
        return {"group_chat_list": out, "next_cursor": self._make_cursor(c) if c < self._next_chat else ""}

    def _groupchat_get(self, q: dict, body: dict) -> dict[str, Any]:
        c = self._chat_ids.decode(body.get("chat_id", ""))
        chat = None if c is None or c >= self._next_chat else self._chat(c)
        if chat is None:
            raise WeComAPIError(86001)
        if not body.get("need_name"):
            for m in chat["member_list"]:
                m.pop("name", None)
        return {"group_chat": chat}

    def _user_list(self, q: dict, body: dict) -> dict[str, Any]:
        return {"userlist": [dict(u) for u in self.users]}

    _ROUTES: dict[str, tuple[str, str]] = {
        "user/list": ("GET", "_user_list"),
        "externalcontact/get_follow_user_list": ("GET", "_follow_user_list"),
        "externalcontact/list": ("GET", "_list"),
        "externalcontact/get": ("GET", "_get"),
        "externalcontact/batch/get_by_user": ("POST", "_batch_get_by_user"),
        "externalcontact/get_corp_tag_list": ("ANY", "_get_corp_tag_list"),
        "externalcontact/add_corp_tag": ("POST", "_add_corp_tag"),
        "externalcontact/edit_corp_tag": ("POST", "_edit_corp_tag"),
        "externalcontact/del_corp_tag": ("POST", "_del_corp_tag"),
        "externalcontact/mark_tag": ("POST", "_mark_tag"),
        "externalcontact/remark": ("POST", "_remark"),
        "externalcontact/groupchat/list": ("POST", "_groupchat_list"),
        "externalcontact/groupchat/get": ("POST", "_groupchat_get"),
    }

    def _error_body(self, code: int, detail: str = "") -> dict[str, Any]:
        msg = _ERRMSG.get(code, "error") + (f": {detail}" if detail else "")
        hint = f"[{int(time.time())}_{secrets.token_hex(4)}]"
        return {
            "errcode": code,
            "errmsg": f"{msg}, hint: {hint}, from ip: 127.0.0.1, "
            f"more info at https://open.work.weixin.qq.com/devtool/query?e={code}",
        }

    def handle(self, method: str, api: str, query: dict[str, str], raw_body: bytes) -> dict[str, Any]:
        """Answer one API call (the HTTP layer and tests call this); never raises WeComAPIError."""
        try:
            with self._lock:
                self.calls[api] += 1
                if api == "gettoken":
                    if method != "GET":
                        raise WeComAPIError(43001)
                    return {"errcode": 0, "errmsg": "ok", **self._gettoken(query)}
                route = self._ROUTES.get(api)
                if route is None:
                    raise WeComAPIError(48001, f"unknown api {api}")
                want, fn = route
                if want != "ANY" and method != want:
                    raise WeComAPIError(43001 if want == "GET" else 43002)
                self._check_token(query)
                self._limits(api)
                body: dict[str, Any] = {}
                if method == "POST" and raw_body.strip():
                    try:
                        body = json.loads(raw_body)
                    except ValueError:
                        raise WeComAPIError(47001) from None
                    if not isinstance(body, dict):
                        raise WeComAPIError(47001)
                return {"errcode": 0, "errmsg": "ok", **getattr(self, fn)(query, body)}
        except WeComAPIError as exc:
            return self._error_body(exc.errcode, exc.detail)

    # == truth changes that WeCom reports with callbacks ============================================
    def add_external_contact(
        self,
        userid: str | None = None,
        external_userid: str | None = None,
        *,
        remark: str | None = None,
        description: str | None = None,
        tags: list[str] | None = None,
        state: str | None = None,
        add_way: int = 1,
        callback: bool = True,
        **profile: Any,
    ) -> str:
        """A customer adds an employee (or is added): a new relation, and a new contact if needed.

        Without ``external_userid`` a brand-new contact is created (its profile generated, then
        ``profile`` fields such as ``name`` / ``corp_full_name`` applied). Sends ``add_external_contact``.
        """
        with self._lock:
            if external_userid is None:
                i = self._next_index
                self._next_index += 1
                external_userid = self._ext_ids.encode(i)
            else:
                i = self._index_of(external_userid)
            users = self._followers(i)
            u = self._user(userid) if userid else (sd.mix(self.seed, i, 109) % self.n_users)
            if profile:
                c = self._contact(i)
                c.update(profile)
                self._contact_over[i] = c
            f = self._generated_follow(i, u)
            f["createtime"] = int(time.time())
            f["add_way"] = add_way
            if remark is not None:
                f["remark"] = remark
            if description is not None:
                f["description"] = description
            if tags is not None:
                f["tag_id"] = list(tags)
            if state:
                f["state"] = state
            self._follow_over[(i, u)] = f
            if u not in users:
                self._set_followers(i, [*users, u])
            fields = {"UserID": self.users[u]["userid"], "ExternalUserID": external_userid}
            if state:
                fields["State"] = state
            fields["WelcomeCode"] = secrets.token_urlsafe(16)
        if callback:
            self._emit("change_external_contact", "add_external_contact", fields)
        return external_userid

    def edit_external_contact(
        self,
        external_userid: str,
        userid: str | None = None,
        *,
        remark: str | None = None,
        description: str | None = None,
        remark_corp_name: str | None = None,
        remark_mobiles: list[str] | None = None,
        add_tags: list[str] | None = None,
        remove_tags: list[str] | None = None,
        callback: bool = True,
    ) -> None:
        """An employee edits a contact's remark / tags in the WeCom app (``edit_external_contact``).

        As in WeCom, an edit that only changes ``remark_mobiles`` sends no callback.
        """
        with self._lock:
            i = self._index_of(external_userid)
            users = self._followers(i)
            if not users:
                raise KeyError(f"{external_userid} has no follow user")
            u = self._user(userid) if userid else users[0]
            if u not in users:
                raise KeyError(f"{userid} does not follow {external_userid}")
            f = self._follow(i, u)
            reported = False
            for key, value in (
                ("remark", remark),
                ("description", description),
                ("remark_corp_name", remark_corp_name),
            ):
                if value is not None:
                    f[key] = value
                    reported = True
            if remark_mobiles is not None:
                f["remark_mobiles"] = list(remark_mobiles)
            if add_tags or remove_tags:
                tags = [t for t in f["tag_id"] if t not in (remove_tags or [])]
                tags += [t for t in (add_tags or []) if t not in tags]
                f["tag_id"] = tags
                reported = True
            self._follow_over[(i, u)] = f
            fields = {"UserID": self.users[u]["userid"], "ExternalUserID": external_userid}
        if callback and reported:
            self._emit("change_external_contact", "edit_external_contact", fields)

    def update_profile(self, external_userid: str, **fields: Any) -> None:
        """The customer changes their own WeChat profile (name, avatar, position…): WeCom sends no callback."""
        with self._lock:
            i = self._index_of(external_userid)
            c = self._contact(i)
            c.update(fields)
            self._contact_over[i] = c

    def del_external_contact(
        self,
        external_userid: str,
        userid: str | None = None,
        *,
        source: str | None = None,
        callback: bool = True,
    ) -> None:
        """An employee deletes the customer (``del_external_contact``)."""
        self._remove_relation(external_userid, userid, "del_external_contact", source, callback)

    def del_follow_user(
        self, external_userid: str, userid: str | None = None, *, callback: bool = True
    ) -> None:
        """The customer deletes the employee (``del_follow_user``)."""
        self._remove_relation(external_userid, userid, "del_follow_user", None, callback)

    def _remove_relation(
        self, external_userid: str, userid: str | None, change: str, source: str | None, callback: bool
    ) -> None:
        with self._lock:
            i = self._index_of(external_userid)
            users = self._followers(i)
            if not users:
                raise KeyError(f"{external_userid} has no follow user")
            u = self._user(userid) if userid else users[0]
            if u not in users:
                raise KeyError(f"{userid} does not follow {external_userid}")
            self._set_followers(i, [x for x in users if x != u])
            self._follow_over.pop((i, u), None)
            fields = {"UserID": self.users[u]["userid"], "ExternalUserID": external_userid}
            if source:
                fields["Source"] = source
        if callback:
            self._emit("change_external_contact", change, fields)

    # -- corp tags (changes made in the admin console: WeCom sends change_external_tag) --
    def _find_or_create_group(self, group_id: str | None, group_name: str | None) -> _TagGroup:
        for g in self._tag_groups:
            if (group_id and g.group_id == group_id) or (
                not group_id and group_name and g.group_name == group_name
            ):
                return g
        if group_id:
            raise WeComAPIError(40068, "group_id not found")
        if not group_name:
            raise WeComAPIError(40058, "group_id or group_name required")
        g = _TagGroup(
            self._tag_codec.encode(10_000 + self._next_group),
            group_name,
            int(time.time()),
            self._next_group + 1,
        )
        self._next_group += 1
        self._tag_groups.append(g)
        return g

    def _new_tag(self, group: _TagGroup, name: str, order: int) -> dict[str, Any]:
        tag = {
            "id": self._tag_codec.encode(self._next_tag),
            "name": name,
            "create_time": int(time.time()),
            "order": order,
        }
        self._next_tag += 1
        group.tags.append(tag)
        self._tags[tag["id"]] = (group, tag)
        return tag

    def _delete_tag(self, tag_id: str) -> None:
        ent = self._tags.pop(tag_id, None)
        if ent is None:
            raise WeComAPIError(40068)
        group, tag = ent
        group.tags.remove(tag)
        if not group.tags:
            self._tag_groups.remove(group)

    def create_corp_tag(self, group_name: str, tag_name: str, *, callback: bool = True) -> str:
        """An admin adds a corp tag in the console (``change_external_tag`` / ``create``)."""
        with self._lock:
            tag = self._new_tag(self._find_or_create_group(None, group_name), tag_name, 99)
        if callback:
            self._emit("change_external_tag", "create", {"Id": tag["id"], "TagType": "tag"})
        return tag["id"]

    def update_corp_tag(self, tag_id: str, name: str, *, callback: bool = True) -> None:
        """An admin renames a corp tag (``change_external_tag`` / ``update``)."""
        with self._lock:
            ent = self._tags.get(tag_id)
            if ent is None:
                raise KeyError(tag_id)
            ent[1]["name"] = name
        if callback:
            self._emit("change_external_tag", "update", {"Id": tag_id, "TagType": "tag"})

    def delete_corp_tag(self, tag_id: str, *, callback: bool = True) -> None:
        """An admin deletes a corp tag (``change_external_tag`` / ``delete``); it leaves every contact."""
        with self._lock:
            self._delete_tag(tag_id)
        if callback:
            self._emit("change_external_tag", "delete", {"Id": tag_id, "TagType": "tag"})

    # -- group chats --
    def create_group_chat(
        self, owner: str, external_userids: list[str], name: str = "客户交流群", *, callback: bool = True
    ) -> str:
        """An employee creates a customer group chat (``change_external_chat`` / ``create``)."""
        with self._lock:
            c = self._next_chat
            self._next_chat += 1
            now = int(time.time())
            members = [{"userid": owner, "type": 1, "join_time": now, "join_scene": 1}]
            for ext in external_userids:
                i = self._index_of(ext)
                members.append(
                    {
                        "userid": ext,
                        "type": 2,
                        "join_time": now,
                        "join_scene": 1,
                        "invitor": {"userid": owner},
                        "group_nickname": "",
                        "name": self._contact(i)["name"],
                    }
                )
            chat = {
                "chat_id": self._chat_ids.encode(c),
                "name": name,
                "owner": owner,
                "create_time": now,
                "notice": "",
                "member_list": members,
                "admin_list": [],
            }
            self._chat_over[c] = chat
        if callback:
            self._emit("change_external_chat", "create", {"ChatId": chat["chat_id"]})
        return chat["chat_id"]

    def update_group_chat(
        self,
        chat_id: str,
        *,
        name: str | None = None,
        add_external: list[str] | None = None,
        remove_external: list[str] | None = None,
        callback: bool = True,
    ) -> None:
        """Members join or leave, or the chat is renamed (``change_external_chat`` / ``update``)."""
        with self._lock:
            c = self._chat_ids.decode(chat_id)
            chat = None if c is None else self._chat(c)
            if chat is None or c is None:
                raise KeyError(chat_id)
            detail = "change_name"
            if name is not None:
                chat["name"] = name
            now = int(time.time())
            for ext in add_external or []:
                i = self._index_of(ext)
                chat["member_list"].append(
                    {
                        "userid": ext,
                        "type": 2,
                        "join_time": now,
                        "join_scene": 3,
                        "group_nickname": "",
                        "name": self._contact(i)["name"],
                    }
                )
                detail = "add_member"
            if remove_external:
                chat["member_list"] = [
                    m for m in chat["member_list"] if m["userid"] not in set(remove_external)
                ]
                detail = "del_member"
            self._chat_over[c] = chat
        if callback:
            fields: dict[str, Any] = {"ChatId": chat_id, "UpdateDetail": detail}
            if detail in ("add_member", "del_member"):
                fields["MemChangeCnt"] = len(add_external or remove_external or [])
            self._emit("change_external_chat", "update", fields)

    def dismiss_group_chat(self, chat_id: str, *, callback: bool = True) -> None:
        """The owner dismisses the chat (``change_external_chat`` / ``dismiss``)."""
        with self._lock:
            c = self._chat_ids.decode(chat_id)
            if c is None or self._chat_owner(c) is None:
                raise KeyError(chat_id)
            self._chat_over[c] = None
        if callback:
            self._emit("change_external_chat", "dismiss", {"ChatId": chat_id})

    # == callbacks ==================================================================================
    def set_callback(self, url: str | None, *, verify: bool = True) -> None:
        """Point callbacks at ``url``; with ``verify`` do WeCom's echostr check first (as saving it in
        the admin console does) and raise if the receiver does not echo the plaintext back."""
        if url and verify:
            plain = str(secrets.randbelow(10**18))
            msg = self._crypt.echostr(plain)
            resp = httpx.get(url, params={**msg.query, "echostr": msg.encrypt}, timeout=5)
            if resp.status_code != 200 or resp.text != plain:
                raise RuntimeError(f"callback URL verification failed (HTTP {resp.status_code})")
        with self._lock:
            self._callback.url = url

    @property
    def callback_url(self) -> str | None:
        """Where callbacks go (None: nowhere)."""
        return self._callback.url

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

    def _emit(self, event: str, change_type: str, fields: dict[str, Any]) -> CallbackRecord:
        now = time.time()
        plain = self._event_xml(event, change_type, fields, int(now))
        key = str(fields.get("ExternalUserID") or fields.get("ChatId") or fields.get("Id") or "")
        with self._lock:
            self._cb_seq += 1
            rec = CallbackRecord(
                self._cb_seq, event, change_type, key, now, hashlib.sha1(plain.encode()).hexdigest()
            )
            self.callback_log.append(rec)
            url = self._callback.url
            drop = self.faults.enabled("drop_callbacks") and self._rng.random() < self.faults.value(
                "drop_callbacks"
            )
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
            f = self.faults
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

    def wait_callbacks(self, timeout: float = 30.0) -> bool:
        """Block until every queued callback was delivered or gave up; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cb_cond:
            while self._cb_pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cb_cond.wait(left)
        return True

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

    def build_app(self) -> Starlette:
        """The ASGI app: ``/cgi-bin/...`` (the API) and ``/_sim/...`` (control for tests)."""

        async def api(request: Request) -> Response:
            name = request.path_params["api"]
            raw = await request.body() if request.method == "POST" else b""
            query = dict(request.query_params)
            latency = self.faults.value("latency_ms", 0) / 1000.0
            self._in_flight += 1
            try:
                if latency:
                    await asyncio.sleep(latency)
                out = self.handle(request.method, name, query, raw)
            finally:
                self._in_flight -= 1
            return Response(_dumps(out), media_type="application/json; charset=utf-8")

        async def control(request: Request) -> Response:
            action = request.path_params["action"]
            if action == "state":
                info = {
                    "contacts": self.contact_count,
                    "follow_pairs": self.follow_pair_count,
                    "group_chats": self.group_chat_count,
                    "calls": dict(self.calls),
                    "callbacks": collections.Counter(r.status for r in self.callback_log),
                }
                return Response(_dumps(info), media_type="application/json")
            if action not in self._CONTROL:
                return Response(
                    _dumps({"error": f"unknown action {action}"}),
                    status_code=404,
                    media_type="application/json",
                )
            kwargs = json.loads(await request.body() or b"{}")
            result = await asyncio.get_running_loop().run_in_executor(
                None, lambda: getattr(self, action)(**kwargs)
            )
            return Response(_dumps({"result": result}), media_type="application/json")

        return Starlette(
            routes=[
                Route("/cgi-bin/{api:path}", api, methods=["GET", "POST"]),
                Route("/_sim/{action}", control, methods=["GET", "POST"]),
            ]
        )

    def stop(self) -> None:
        """Stop serving and the callback senders."""
        super().stop()
        with self._lock:
            pool, http = self._cb_pool, self._cb_http
            self._cb_pool = self._cb_http = None
        for lane in pool or []:
            lane.shutdown(wait=False, cancel_futures=True)
        if http is not None:
            http.close()


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


if __name__ == "__main__":
    main()
