"""The three-way merge as a specification: disjoint edits, conflicts, ownership, nulls, echoes, deletes."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.sync.merge import EntityView, FieldStamp, SpokeView, apply_write, merge, resolve, same
from pipelines.sync.policy import FieldRule, Nulls, ObjectPolicy, OnDelete, PolicyError, Survivorship

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
BASE = {
    "name": "上海甲公司",
    "phone": "021-1",
    "grade": "A",
    "address": "浦东",
    "credit_limit": Decimal("100"),
}


def policy(**overrides: FieldRule) -> ObjectPolicy:
    rules = {
        "credit_limit": FieldRule("credit_limit", Survivorship.OWNER, owner="erp"),
        **overrides,
    }
    return ObjectPolicy.build("accounts", rules.values(), systems=("erp", "crm"))


def test_disjoint_edits_merge_field_by_field_and_converge() -> None:
    erp_now = {**BASE, "grade": "B", "address": "徐汇"}  # the ERP edits C, D
    hub = {**BASE, "name": "上海甲有限公司", "phone": "021-2"}  # the CRM edited A, B in the hub
    stamps = {"name": FieldStamp("hub"), "phone": FieldStamp("hub")}
    out = merge(policy(), EntityView(hub, [SpokeView("erp", BASE, erp_now)], stamps))

    assert out.conflicts == []
    assert out.hub == {**BASE, "name": "上海甲有限公司", "phone": "021-2", "grade": "B", "address": "徐汇"}
    assert out.writes == {"erp": {"name": "上海甲有限公司", "phone": "021-2"}}  # only what the ERP lacks
    # The ERP applies the write; its echo (everything we wrote, FModifyDate bumped) changes nothing.
    erp_base = apply_write(out.bases["erp"], out.writes["erp"])
    echo = {**erp_now, **out.writes["erp"]}
    again = merge(policy(), EntityView(out.hub, [SpokeView("erp", erp_base, echo)], out.stamps))
    assert again.quiet


def test_true_conflict_goes_to_review_with_both_values_and_freezes_the_field() -> None:
    hub = {**BASE, "phone": "021-crm"}
    stamps = {"phone": FieldStamp("hub", T0, "alice")}
    erp = SpokeView("erp", BASE, {**BASE, "phone": "021-erp"}, modified_at=T0, author="bob")
    out = merge(policy(), EntityView(hub, [erp], stamps))

    [conflict] = out.conflicts
    assert (conflict.field, conflict.base, conflict.hub_value, conflict.system_value) == (
        "phone",
        "021-1",
        "021-crm",
        "021-erp",
    )
    assert (conflict.hub_author, conflict.system_author) == ("alice", "bob")
    assert out.hub["phone"] == "021-crm"  # no silent overwrite in either direction
    assert "phone" not in out.writes.get("erp", {})
    assert out.open_conflicts == {"phone"}
    # Seen again before review: still one conflict, still frozen, nothing written.
    again = merge(policy(), EntityView(out.hub, [erp], out.stamps, frozenset(out.open_conflicts)))
    assert again.conflicts == [] and "phone" not in again.writes.get("erp", {})
    # A reviewer takes the ERP's value: the hub takes it and the ERP (which holds it) is not written to.
    value, erp_base = resolve(conflict, "system")
    hub_after = {**out.hub, "phone": value}
    bases = {**out.bases["erp"], "phone": erp_base}
    done = merge(policy(), EntityView(hub_after, [SpokeView("erp", bases, erp.current)], out.stamps))
    assert done.quiet


def test_prefer_policy_settles_a_conflict_and_audits_it() -> None:
    rules = policy(phone=FieldRule("phone", on_conflict="prefer:erp"))
    hub = {**BASE, "phone": "021-crm"}
    out = merge(rules, EntityView(hub, [SpokeView("erp", BASE, {**BASE, "phone": "021-erp"})]))
    assert out.hub["phone"] == "021-erp" and not out.conflicts
    assert [e.kind for e in out.events] == ["resolved"]

    rules = policy(phone=FieldRule("phone", on_conflict="prefer:hub"))
    out = merge(
        rules,
        EntityView(hub, [SpokeView("erp", BASE, {**BASE, "phone": "021-erp"})], {"phone": FieldStamp("hub")}),
    )
    assert out.hub["phone"] == "021-crm"
    assert out.writes == {"erp": {"phone": "021-crm"}}  # the ERP is overwritten, by policy, audited


def test_latest_policy_uses_the_systems_clocks() -> None:
    rules = policy(phone=FieldRule("phone", on_conflict="latest"))
    hub = {**BASE, "phone": "021-crm"}
    stamps = {"phone": FieldStamp("hub", T0)}
    later = SpokeView("erp", BASE, {**BASE, "phone": "021-erp"}, modified_at=T0 + dt.timedelta(seconds=1))
    assert merge(rules, EntityView(hub, [later], stamps)).hub["phone"] == "021-erp"
    earlier = SpokeView("erp", BASE, {**BASE, "phone": "021-erp"}, modified_at=T0 - dt.timedelta(seconds=1))
    out = merge(rules, EntityView(hub, [earlier], stamps))
    assert out.hub["phone"] == "021-crm" and out.writes == {"erp": {"phone": "021-crm"}}


def test_owned_field_edited_elsewhere_is_reverted_in_the_same_cycle() -> None:
    # Edited in the CRM (the hub) directly:
    hub = {**BASE, "credit_limit": Decimal("999")}
    out = merge(
        policy(), EntityView(hub, [SpokeView("erp", BASE, None)], {"credit_limit": FieldStamp("hub")})
    )
    assert out.hub["credit_limit"] == Decimal("100")
    assert [(e.kind, e.field, e.system) for e in out.events] == [("reverted", "credit_limit", "hub")]
    assert out.writes == {}  # the owner is never sent its own field

    # Edited in a non-owning system (an external CRM spoke): the owner's value is written back to it.
    crm = SpokeView("crm", BASE, {**BASE, "credit_limit": Decimal("5")})
    out = merge(policy(), EntityView(BASE, [SpokeView("erp", BASE), crm]))
    assert out.hub["credit_limit"] == Decimal("100")
    assert out.writes == {"crm": {"credit_limit": Decimal("100")}}
    assert out.events[0].kind == "reverted"

    # The owner itself changes it: it flows to the hub and to the other systems, never back.
    erp = SpokeView("erp", BASE, {**BASE, "credit_limit": Decimal("200")})
    out = merge(policy(), EntityView(BASE, [erp, SpokeView("crm", BASE)]))
    assert out.hub["credit_limit"] == Decimal("200")
    assert out.writes == {"crm": {"credit_limit": Decimal("200")}}


def test_a_null_never_blanks_a_value_when_nulls_are_ignored() -> None:
    rules = policy(phone=FieldRule("phone", nulls=Nulls.IGNORE))
    out = merge(rules, EntityView(BASE, [SpokeView("erp", BASE, {**BASE, "phone": None})]))
    assert out.hub["phone"] == "021-1" and out.writes == {} and out.events[0].kind == "ignored_null"
    # With propagate (the default), clearing is a change like any other.
    out = merge(policy(), EntityView(BASE, [SpokeView("erp", BASE, {**BASE, "phone": None})]))
    assert out.hub["phone"] is None


def test_set_if_empty_fills_blanks_only() -> None:
    rules = policy(address=FieldRule("address", Survivorship.SET_IF_EMPTY))
    hub = {**BASE, "address": None}
    base = {**BASE, "address": None}
    out = merge(rules, EntityView(hub, [SpokeView("erp", base, {**base, "address": "静安"})]))
    assert out.hub["address"] == "静安"
    out = merge(rules, EntityView(BASE, [SpokeView("erp", BASE, {**BASE, "address": "静安"})]))
    assert out.hub["address"] == "浦东" and out.writes == {"erp": {"address": "浦东"}}


def test_first_link_takes_one_sided_values_and_flags_differences() -> None:
    hub = {"name": "甲", "phone": None, "grade": "A"}
    erp = SpokeView("erp", None, {"name": "甲", "phone": "021-9", "grade": "B"})
    out = merge(policy(), EntityView(hub, [erp], {"grade": FieldStamp("hub")}))
    assert out.hub["phone"] == "021-9"
    assert [c.field for c in out.conflicts] == ["grade"]


def test_create_in_an_unlinked_system_sends_every_filled_field() -> None:
    out = merge(policy(), EntityView({"name": "甲", "phone": None}, [SpokeView("erp", None)]))
    assert out.creates == {"erp"} and out.writes == {"erp": {"name": "甲"}}


def test_delete_wins_and_nothing_resurrects() -> None:
    erp = SpokeView("erp", BASE, deleted=True)
    crm = SpokeView("crm", BASE, {**BASE, "phone": "edited meanwhile"})
    out = merge(policy(), EntityView(BASE, [erp, crm]))
    assert out.hub_deleted and out.deletes == {"crm": "delete"} and out.writes == {}
    # Three more cycles of edits on the other side: the entity stays deleted, nothing is written.
    for _ in range(3):
        crm_done = SpokeView("crm", BASE, {**BASE, "phone": "again"}, delete_applied=True)
        later = merge(
            policy(), EntityView(BASE, [SpokeView("erp", BASE, deleted=True), crm_done], deleted=True)
        )
        assert later.hub_deleted and later.writes == {} and later.deletes == {}
        assert any(e.kind == "ignored_deleted" for e in later.events)


def test_void_policy_voids_elsewhere_and_notifies() -> None:
    rules = ObjectPolicy.build("sales_orders", [], systems=("erp", "crm"), on_delete=OnDelete.VOID_NOTIFY)
    out = merge(rules, EntityView(BASE, [SpokeView("erp", BASE), SpokeView("crm", BASE, deleted=True)]))
    assert out.deletes == {"erp": "void"} and out.events[0].kind == "void_notify"


def test_bad_policies_are_refused_with_a_reason() -> None:
    with pytest.raises(PolicyError, match="needs an owner"):
        FieldRule("x", Survivorship.OWNER)
    with pytest.raises(PolicyError, match="on_conflict"):
        FieldRule("x", on_conflict="newest")
    with pytest.raises(PolicyError, match="not a linked system"):
        ObjectPolicy.build("a", [FieldRule("x", Survivorship.OWNER, owner="sap")], systems=("erp",))


def test_same_compares_values_as_systems_send_them() -> None:
    assert same(1, Decimal("1.00")) and same(1.5, Decimal("1.5"))
    assert not same(None, "") and not same(0, False) and not same(True, 1)


# ---- properties over random edits -------------------------------------------------------------------

FIELDS = ("a", "b", "c", "d", "e", "f")
values = st.one_of(st.none(), st.sampled_from(["x", "y", "z", "w"]))


@settings(max_examples=2000, deadline=None)
@given(
    base=st.fixed_dictionaries({f: values for f in FIELDS}),
    hub_edits=st.dictionaries(st.sampled_from(FIELDS), values),
    erp_edits=st.dictionaries(st.sampled_from(FIELDS), values),
)
def test_every_edit_lands_or_is_queued_and_the_systems_converge(base, hub_edits, erp_edits) -> None:
    """No lost edit, no silent overwrite, no echo: after the writes, a second cycle is quiet."""
    rules = ObjectPolicy.build("t", [], systems=("erp",))
    hub = {**base, **hub_edits}
    stamps = {f: FieldStamp("hub") for f in hub_edits}
    erp_now = {**base, **erp_edits}
    out = merge(rules, EntityView(hub, [SpokeView("erp", base, erp_now)], stamps))

    conflicted = {c.field for c in out.conflicts}
    for f in FIELDS:
        hub_changed = not same(hub[f], base[f])
        erp_changed = not same(erp_now[f], base[f])
        if f in conflicted:
            assert hub_changed and erp_changed and not same(hub[f], erp_now[f])
            assert out.hub[f] == hub[f] and f not in out.writes.get("erp", {})  # nothing overwritten
        elif erp_changed:
            assert same(out.hub[f], erp_now[f])  # the ERP's edit landed
        elif hub_changed:
            assert same(out.hub[f], hub[f]) and same(out.writes["erp"][f], hub[f])  # the CRM's edit goes out
    # The ERP applies exactly what it was sent; its echo comes back: nothing more is written anywhere.
    written = out.writes.get("erp", {})
    erp_after = {**erp_now, **written}
    again = merge(
        rules,
        EntityView(
            out.hub,
            [SpokeView("erp", apply_write(out.bases["erp"], written), erp_after)],
            out.stamps,
            frozenset(out.open_conflicts),
        ),
    )
    assert not again.changed and not again.writes and not again.conflicts
    for f in FIELDS:
        if f not in conflicted:
            assert same(erp_after[f], again.hub[f])  # both systems equal outside open conflicts


def test_record_level_lww_loses_about_half_the_edits_that_the_merge_keeps() -> None:
    """The baseline the engine beats, on §3.6's workload (6 fields, each side edits each with p=0.3)."""
    rng = random.Random(7)
    rules = ObjectPolicy.build("t", [], systems=("erp",))
    lost_lww = lost_merge = edits = 0
    for _ in range(2000):
        base = {f: f"v0-{f}" for f in FIELDS}
        hub_edits = {f: f"crm-{f}" for f in FIELDS if rng.random() < 0.3}
        erp_edits = {f: f"erp-{f}" for f in FIELDS if rng.random() < 0.3}
        edits += len(hub_edits) + len(erp_edits)
        hub, erp_now = {**base, **hub_edits}, {**base, **erp_edits}
        winner = hub if rng.random() < 0.5 else erp_now  # record-level last writer wins
        lost_lww += sum(1 for f, v in {**hub_edits}.items() if winner[f] != v)
        lost_lww += sum(1 for f, v in {**erp_edits}.items() if winner[f] != v)
        out = merge(
            rules,
            EntityView(hub, [SpokeView("erp", base, erp_now)], {f: FieldStamp("hub") for f in hub_edits}),
        )
        queued = {c.field for c in out.conflicts}
        final_erp = {**erp_now, **out.writes.get("erp", {})}
        for f, v in hub_edits.items():
            lost_merge += f not in queued and (final_erp[f] != v or out.hub[f] != v)
        for f, v in erp_edits.items():
            lost_merge += f not in queued and out.hub[f] != v
    assert lost_merge == 0
    assert 0.4 < lost_lww / edits < 0.6, lost_lww / edits
