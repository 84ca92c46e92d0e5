"""One shape for an external contact, whichever WeCom endpoint it came from.

The full rescan reads ``batch/get_by_user`` (one item per *relation*, tags as bare ids) and the
real-time path reads ``externalcontact/get`` (one contact with every follow user, tags with names).
Both are turned into the same record here — follow users sorted, corp tags only, tag names resolved,
optional fields present as null — so the mapping and the hub's content hash see identical input and a
contact the event path already wrote costs the rescan nothing.

Derived top-level fields (``owner_userid``, ``remark``, ``tag_names``, ``mobile``...) save every
mapping from re-implementing "which follow user counts": the owner is whoever added the contact
first (ties broken by userid), which is stable under later additions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: Profile fields copied from ``external_contact`` (WeCom omits the optional ones; we store nulls).
PROFILE_FIELDS = ("name", "type", "gender", "avatar", "unionid", "position", "corp_name", "corp_full_name")

TagResolver = Callable[[str], tuple[str, str] | None]  # tag_id -> (group_name, tag_name)


def _follow(raw: Mapping[str, Any], tags: list[dict[str, str]]) -> dict[str, Any]:
    mobiles = raw.get("remark_mobiles") or []
    return {
        "userid": str(raw.get("userid") or ""),
        "remark": raw.get("remark") or None,
        "description": raw.get("description") or None,
        "createtime": int(raw["createtime"]) if raw.get("createtime") is not None else None,
        "tags": sorted(tags, key=lambda t: t["tag_id"]),
        "remark_corp_name": raw.get("remark_corp_name") or None,
        # The old API (and wechatpy's fixture) sends integers; the current one strings.
        "remark_mobiles": [str(m) for m in mobiles if m not in (None, "")],
        "add_way": int(raw["add_way"]) if raw.get("add_way") is not None else None,
        "state": raw.get("state") or None,
        "oper_userid": raw.get("oper_userid") or None,
    }


def follow_from_batch(follow_info: Mapping[str, Any], resolve_tag: TagResolver) -> dict[str, Any]:
    """A ``batch/get_by_user`` ``follow_info`` (tag ids only) in the common follow shape."""
    tags = []
    for tag_id in follow_info.get("tag_id") or []:
        found = resolve_tag(tag_id)
        if found is not None:  # a tag deleted since the tag list was read: WeCom drops it too
            tags.append({"tag_id": tag_id, "group_name": found[0], "tag_name": found[1]})
    return _follow(follow_info, tags)


def follow_from_get(follow_user: Mapping[str, Any]) -> dict[str, Any]:
    """An ``externalcontact/get`` ``follow_user`` entry in the common follow shape (corp tags only)."""
    tags = [
        {"tag_id": t["tag_id"], "group_name": t.get("group_name") or "", "tag_name": t.get("tag_name") or ""}
        for t in follow_user.get("tags") or []
        if t.get("type", 1) == 1 and t.get("tag_id")  # personal tags (type 2) have no id and are per-employee
    ]
    return _follow(follow_user, tags)


def contact_record(external_contact: Mapping[str, Any], follows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The ``external_contacts`` stream record for a contact and its (common-shape) follow users."""
    follow_user = sorted(follows, key=lambda f: f["userid"])
    rec: dict[str, Any] = {"external_userid": str(external_contact["external_userid"])}
    for key in PROFILE_FIELDS:
        rec[key] = external_contact.get(key)
    rec["external_profile"] = external_contact.get("external_profile")
    rec["follow_user"] = follow_user
    owner = min(follow_user, key=lambda f: (f["createtime"] or 0, f["userid"])) if follow_user else None
    rec["owner_userid"] = owner["userid"] if owner else None
    rec["follow_userids"] = [f["userid"] for f in follow_user]
    rec["remark"] = owner["remark"] if owner else None
    rec["description"] = owner["description"] if owner else None
    rec["first_added_at"] = owner["createtime"] if owner else None
    names: set[str] = set()
    ids: set[str] = set()
    mobiles: list[str] = []
    ordered = [owner, *[f for f in follow_user if f is not owner]] if owner else []
    for f in ordered:
        for t in f["tags"]:
            names.add(t["tag_name"])
            ids.add(t["tag_id"])
        for m in f["remark_mobiles"]:
            if m not in mobiles:
                mobiles.append(m)
    rec["tag_names"] = sorted(names)
    rec["tag_ids"] = sorted(ids)
    rec["remark_mobiles"] = mobiles
    rec["mobile"] = mobiles[0] if mobiles else None
    rec["remark_corp_name"] = next((f["remark_corp_name"] for f in ordered if f["remark_corp_name"]), None)
    # The company a contact works for: their own WeCom profile, else what a sales rep noted down.
    rec["company_name"] = external_contact.get("corp_full_name") or rec["remark_corp_name"] or None
    return rec


def contact_from_get(detail: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise an ``externalcontact/get`` response body."""
    return contact_record(
        detail["external_contact"], (follow_from_get(f) for f in detail.get("follow_user") or [])
    )


def tag_rows(tag_groups: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``get_corp_tag_list`` groups flattened to one ``corp_tags`` record per tag."""
    rows = []
    for g in tag_groups:
        for t in g.get("tag") or []:
            rows.append(
                {
                    "tag_id": t["id"],
                    "tag_name": t.get("name"),
                    "order": t.get("order"),
                    "create_time": t.get("create_time"),
                    "deleted": bool(t.get("deleted", False)),
                    "group_id": g.get("group_id"),
                    "group_name": g.get("group_name"),
                    "group_order": g.get("order"),
                    "group_create_time": g.get("create_time"),
                }
            )
    return rows


def group_chat_record(chat: Mapping[str, Any], status: int | None = None) -> dict[str, Any]:
    """A ``groupchat/get`` object as a ``group_chats`` record (members sorted by userid)."""
    members = sorted(
        (
            {
                "userid": m.get("userid"),
                "type": m.get("type"),
                "join_time": m.get("join_time"),
                "join_scene": m.get("join_scene"),
                "invitor": (m.get("invitor") or {}).get("userid"),
                "group_nickname": m.get("group_nickname") or None,
                "name": m.get("name"),
            }
            for m in chat.get("member_list") or []
        ),
        key=lambda m: str(m["userid"]),
    )
    return {
        "chat_id": chat["chat_id"],
        "name": chat.get("name"),
        "owner": chat.get("owner"),
        "create_time": chat.get("create_time"),
        "notice": chat.get("notice") or None,
        "status": status,
        "member_count": len(members),
        "external_member_count": sum(1 for m in members if m["type"] == 2),
        "member_list": members,
        "admin_list": sorted(a.get("userid") for a in chat.get("admin_list") or []),
    }
