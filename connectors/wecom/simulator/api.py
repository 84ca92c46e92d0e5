"""The 客户联系 API handlers: one method per WeCom API path, and the dispatch that checks method,
token and limits first (mixed into :class:`WeComSimulator`)."""

from __future__ import annotations

import bisect
import collections
import json
import time
from typing import TYPE_CHECKING, Any

from connectors.kit.simulator import FaultConfig
from connectors.wecom.simulator.corp import CorpData
from connectors.wecom.simulator.cursors import CursorCodec
from connectors.wecom.simulator.errors import WeComAPIError, error_body
from connectors.wecom.simulator.messages import MessageDesk
from connectors.wecom.simulator.tokens import TokenDesk

MAX_BATCH_LIMIT = 100
MAX_BATCH_USERS = 100
MAX_CHAT_LIMIT = 1000
GET_FOLLOW_PAGE = 500  # externalcontact/get pages follow_user beyond 500 entries

_CONCURRENCY_LIMITED = frozenset(
    {
        "externalcontact/batch/get_by_user",
        "externalcontact/list",
        "externalcontact/get",
        "externalcontact/groupchat/list",
        "externalcontact/groupchat/get",
    }
)


def _object(raw_body: bytes) -> dict[str, Any]:
    """A POST body as WeCom reads it: a JSON object, else 47001."""
    try:
        body = json.loads(raw_body or b"{}")
    except ValueError:
        raise WeComAPIError(47001) from None
    if not isinstance(body, dict):
        raise WeComAPIError(47001)
    return body


class ApiHandlers(CorpData):
    """WeCom's API over the corp data."""

    # provided by the simulator
    faults: FaultConfig
    calls: collections.Counter[str]
    _minute: dict[str, collections.deque[float]]
    _in_flight: int
    _tokens: TokenDesk
    _cursors: CursorCodec
    desk: MessageDesk

    if TYPE_CHECKING:

        def chance(self, name: str) -> bool: ...

    def _limits(self, api: str) -> None:
        f = self.faults
        if self.chance("token_invalid"):
            raise WeComAPIError(40014)
        if self.chance("busy"):
            raise WeComAPIError(-1)
        if self.chance("throttle"):
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
            if self.chance("concurrency_rate"):
                raise WeComAPIError(45033)

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
        cur = self._cursors.read(q.get("cursor"), 1)
        if cur is not None:
            start = cur[0]
        page = users[start : start + GET_FOLLOW_PAGE]
        out: dict[str, Any] = {
            "external_contact": self._contact(i),
            "follow_user": [self._follow_with_tag_names(i, u) for u in page],
        }
        if start + GET_FOLLOW_PAGE < len(users):
            out["next_cursor"] = self._cursors.make(start + GET_FOLLOW_PAGE)
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
        pos, last = self._cursors.read(body.get("cursor"), 2) or (0, -1)
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
        nxt = self._cursors.make(pos, last) if pos < len(users) else ""
        return {"external_contact_list": items, "next_cursor": nxt}

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

    def _groupchat_list(self, q: dict, body: dict) -> dict[str, Any]:
        limit = body.get("limit", 100)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_CHAT_LIMIT:
            raise WeComAPIError(40058, "limit must be 1..1000")
        owners = set((body.get("owner_filter") or {}).get("userid_list") or [])
        if not owners and self.n_users > 1000:
            raise WeComAPIError(81017)
        status_filter = int(body.get("status_filter", 0))
        (start,) = self._cursors.read(body.get("cursor"), 1) or (0,)
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
        return {"group_chat_list": out, "next_cursor": self._cursors.make(c) if c < self._next_chat else ""}

    def _groupchat_get(self, q: dict, body: dict) -> dict[str, Any]:
        c = self._chat_ids.decode(body.get("chat_id", ""))
        chat = None if c is None or c >= self._next_chat else self._chat(c)
        if chat is None:
            raise WeComAPIError(86001)
        if not body.get("need_name"):
            for m in chat["member_list"]:
                m.pop("name", None)
        return {"group_chat": chat}

    def _message_send(self, q: dict, body: dict) -> dict[str, Any]:
        return self.desk.send(body)

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
        "message/send": ("POST", "_message_send"),
    }

    def handle(self, method: str, api: str, query: dict[str, str], raw_body: bytes) -> dict[str, Any]:
        """Answer one API call (the HTTP layer and tests call this); never raises WeComAPIError."""
        try:
            with self._lock:
                self.calls[api] += 1
                if api == "gettoken":
                    if method != "GET":
                        raise WeComAPIError(43001)
                    return {
                        "errcode": 0,
                        "errmsg": "ok",
                        **self._tokens.gettoken(query, int(self.faults.value("token_ttl", 7200))),
                    }
                if api == "webhook/send":  # the group robot: its key authenticates, no access_token
                    if method != "POST":
                        raise WeComAPIError(43002)
                    return {
                        "errcode": 0,
                        "errmsg": "ok",
                        **self.desk.robot_send(query.get("key", ""), _object(raw_body)),
                    }
                route = self._ROUTES.get(api)
                if route is None:
                    raise WeComAPIError(48001, f"unknown api {api}")
                want, fn = route
                if want != "ANY" and method != want:
                    raise WeComAPIError(43001 if want == "GET" else 43002)
                self._tokens.check(query, int(self.faults.value("session_expiry", 0)))
                self._limits(api)
                body = _object(raw_body) if method == "POST" and raw_body.strip() else {}
                return {"errcode": 0, "errmsg": "ok", **getattr(self, fn)(query, body)}
        except WeComAPIError as exc:
            return error_body(exc.errcode, exc.detail)
