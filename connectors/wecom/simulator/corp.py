"""The simulated corp: employees, external contacts and their follow relations, corp tags, group chats.

Nothing is stored per contact: a contact, its relations and a group chat are pure functions of
``(seed, index)`` (see :mod:`connectors.wecom.simdata`); only changes are kept, as overrides.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import random
import threading
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from connectors.wecom import simdata as sd
from connectors.wecom.simulator.errors import WeComAPIError


@dataclass
class _TagGroup:
    group_id: str
    group_name: str
    create_time: int
    order: int
    tags: list[dict[str, Any]] = field(default_factory=list)


class CorpData:
    """The corp's data model and read helpers (mixed into :class:`WeComSimulator`).

    Expects ``seed``, ``records``, ``n_users``, ``n_companies``, ``_lock``, ``_ext_ids`` and
    ``_chat_ids`` on the instance; :meth:`_build_corp` creates the rest.
    """

    seed: int
    records: int
    n_users: int
    n_companies: int
    _lock: threading.RLock
    _ext_ids: sd.IdCodec
    _chat_ids: sd.IdCodec

    def _build_corp(self, group_chats: int | None) -> None:
        self._build_users()
        self._build_tags()
        self._build_relations()
        self._n_chats = group_chats if group_chats is not None else max(1, self.records // 50)
        self._next_chat = self._n_chats
        self._chat_over: dict[int, dict[str, Any] | None] = {}

    def _build_users(self) -> None:
        users: list[dict[str, Any]] = []
        self._user_index: dict[str, int] = {}
        for u in range(self.n_users):
            who = sd.person(self.seed, u, 501)
            name, py = who.name, who.pinyin
            userid = py
            n = 2
            while userid in self._user_index:
                userid = f"{py}{n}"
                n += 1
            self._user_index[userid] = u
            users.append(
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
        # Employees are listed in userid order, so "earliest added, then lowest userid" (how the
        # owner of a contact is chosen) agrees with index order when two adds share a second.
        self.users = sorted(users, key=lambda user: user["userid"])
        self._user_index = {user["userid"]: u for u, user in enumerate(self.users)}

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
        cn = sd.person(s, i, 202).name
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
            c["corp_full_name"] = comp.name
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
        surname = sd.person(s, i, 202).surname  # the real surname, even behind a nickname
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

    def _render_group(self, g: _TagGroup, tag_filter: set[str] | None) -> dict[str, Any]:
        tags = [dict(t) for t in g.tags if tag_filter is None or t["id"] in tag_filter]
        return {
            "group_id": g.group_id,
            "group_name": g.group_name,
            "create_time": g.create_time,
            "order": g.order,
            "tag": tags,
        }

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
