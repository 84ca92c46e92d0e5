"""Changes people make in WeCom itself (not through the API), which WeCom reports with callbacks.

Each method changes the truth, then (``callback=True``) emits the callback WeCom would send; the
silent ones (``update_profile``, an edit of only ``remark_mobiles``) send none, as in WeCom.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from connectors.wecom import simdata as sd
from connectors.wecom.simulator.callbacks import CallbackRecord
from connectors.wecom.simulator.corp import CorpData


class CorpChanges(CorpData):
    """Truth changes with their callbacks (mixed into :class:`WeComSimulator`)."""

    def _relation(self, external_userid: str, userid: str | None) -> tuple[int, int, list[int]]:
        """(contact index, follow user index, all follow users); KeyError when there is none."""
        i = self._index_of(external_userid)
        users = self._followers(i)
        if not users:
            raise KeyError(f"{external_userid} has no follow user")
        u = self._user(userid) if userid else users[0]
        if u not in users:
            raise KeyError(f"{userid} does not follow {external_userid}")
        return i, u, users

    if TYPE_CHECKING:

        def _emit(self, event: str, change_type: str, fields: dict[str, Any]) -> CallbackRecord: ...

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
            i, u, users = self._relation(external_userid, userid)
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
            i, u, users = self._relation(external_userid, userid)
            self._set_followers(i, [x for x in users if x != u])
            self._follow_over.pop((i, u), None)
            fields = {"UserID": self.users[u]["userid"], "ExternalUserID": external_userid}
            if source:
                fields["Source"] = source
        if callback:
            self._emit("change_external_contact", change, fields)

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
