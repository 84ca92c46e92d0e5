"""The field-level three-way merge of one entity across the hub and its linked systems.

The hub holds the merged record. Each linked system has a **base**: the values last successfully
applied to, or read from, that system. Comparing a system's current values with its base tells what
*that system* changed; comparing the hub with the same base tells what changed *elsewhere* since the
two last agreed. So, field by field, for a value read from system S:

============================  ==========================================================
S unchanged (current = base)   nothing comes in from S (the hub may still go out to S)
only S changed                 the hub takes S's value; S's base moves with it
both changed, to one value     they agree: S's base moves, nothing is written
both changed, differently      a true conflict: the field's rule settles it, or it goes to
                               review and is frozen everywhere until a person decides
============================  ==========================================================

Then every linked system is sent exactly the fields where the hub differs from its base. After a
write succeeds the caller moves that system's base to what was written (:func:`apply_write`), so the
system's echo of our own write reads as "unchanged" and is never written back: echo suppression by
construction, derived fields included (a field the ERP computes is owned by the ERP and never sent to
it). A missing base (a system not linked yet) is an all-empty base, so linking two existing records
takes every value only one side has and treats every differing value as a conflict.

Everything here is a pure function of its inputs: the engine around it loads the views, persists the
outcome and performs the writes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pipelines.sync.policy import HUB_ORIGIN, Nulls, ObjectPolicy, OnDelete, Survivorship


@dataclass(frozen=True, slots=True)
class FieldStamp:
    """Who last changed a hub field, and when (by the clock of the system it came from)."""

    origin: str
    at: dt.datetime | None = None
    author: str | None = None


@dataclass(frozen=True)
class SpokeView:
    """One linked system's side of an entity in this cycle."""

    system: str
    #: Values last agreed with the system; None when the entity is not linked to it yet.
    base: Mapping[str, Any] | None
    #: Values read from the system in this cycle; None when nothing was read (no change seen).
    current: Mapping[str, Any] | None = None
    modified_at: dt.datetime | None = None
    author: str | None = None
    #: The system reports the record deleted or voided.
    deleted: bool = False
    #: The system already knows of the entity's deletion (a delete or void was applied to it).
    delete_applied: bool = False

    @property
    def linked(self) -> bool:
        """True when the entity has a link (and so a base) in this system."""
        return self.base is not None


@dataclass(frozen=True)
class EntityView:
    """The hub's side of an entity: merged values, who set them, open conflicts, tombstone."""

    hub: Mapping[str, Any]
    spokes: Sequence[SpokeView]
    stamps: Mapping[str, FieldStamp] = field(default_factory=dict)
    open_conflicts: frozenset[str] = frozenset()
    deleted: bool = False


@dataclass(frozen=True)
class Conflict:
    """A true same-field conflict, with everything a reviewer needs to decide it."""

    field: str
    base: Any
    hub_value: Any
    hub_origin: str | None
    hub_author: str | None
    hub_at: dt.datetime | None
    system: str
    system_value: Any
    system_author: str | None
    system_at: dt.datetime | None


@dataclass(frozen=True)
class MergeEvent:
    """Something the merge decided that the audit log keeps (reverts, policy decisions, ignores)."""

    kind: str  # reverted | resolved | ignored_null | ignored_not_empty | ignored_deleted | conflict_pending
    field: str | None
    system: str
    detail: str
    old: Any = None
    new: Any = None


@dataclass(frozen=True)
class FieldChange:
    """One hub field changed by the merge."""

    old: Any
    new: Any
    stamp: FieldStamp


@dataclass
class MergeOutcome:
    """What one merge decided; the engine persists it and performs the writes."""

    hub: dict[str, Any]
    changed: dict[str, FieldChange]
    stamps: dict[str, FieldStamp]
    bases: dict[str, dict[str, Any]]
    #: Per system, the fields to send (only those that differ from its base).
    writes: dict[str, dict[str, Any]]
    #: Systems where the entity is to be created (it is not linked there yet).
    creates: set[str]
    conflicts: list[Conflict]
    events: list[MergeEvent]
    #: Per system, ``delete`` or ``void`` to apply there.
    deletes: dict[str, str]
    hub_deleted: bool
    open_conflicts: set[str]

    @property
    def quiet(self) -> bool:
        """True when the merge changes nothing anywhere."""
        return not (
            self.changed or any(self.writes.values()) or self.conflicts or self.deletes or self.creates
        )


def same(a: Any, b: Any) -> bool:
    """Value equality across the types systems send: 1 == 1.0 == Decimal('1.00'), '' is not None."""
    if a is None or b is None:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float | Decimal) and isinstance(b, int | float | Decimal):
        return Decimal(str(a)) == Decimal(str(b))
    if isinstance(a, dt.datetime) and isinstance(b, dt.datetime):
        if (a.tzinfo is None) != (b.tzinfo is None):
            return False
        return a == b
    return bool(a == b)


def _empty(value: Any) -> bool:
    return value is None or value == ""


def merge(policy: ObjectPolicy, entity: EntityView) -> MergeOutcome:
    """Merge one entity: inbound changes into the hub, then what each linked system must receive."""
    out = MergeOutcome(
        hub=dict(entity.hub),
        changed={},
        stamps=dict(entity.stamps),
        bases={s.system: dict(s.base or {}) for s in entity.spokes},
        writes={},
        creates=set(),
        conflicts=[],
        events=[],
        deletes={},
        hub_deleted=entity.deleted,
        open_conflicts=set(entity.open_conflicts),
    )
    if entity.deleted or any(s.deleted for s in entity.spokes):
        return _merge_delete(policy, entity, out)
    for spoke in entity.spokes:
        if spoke.current is not None:
            _inbound(policy, spoke, out)
    _revert_owned(policy, entity, out)
    for spoke in entity.spokes:
        _outbound(policy, spoke, out)
    return out


def _take(out: MergeOutcome, name: str, value: Any, spoke: SpokeView) -> None:
    stamp = FieldStamp(spoke.system, spoke.modified_at, spoke.author)
    old = out.hub.get(name)
    if name in out.changed:  # a second system in the same cycle: keep the first old value
        old = out.changed[name].old
    out.hub[name] = value
    out.stamps[name] = stamp
    out.changed[name] = FieldChange(old, value, stamp)


def _inbound(policy: ObjectPolicy, spoke: SpokeView, out: MergeOutcome) -> None:
    base = out.bases[spoke.system]
    assert spoke.current is not None
    for name, value in spoke.current.items():
        rule = policy.rule(name)
        if not rule.carried_by(spoke.system):
            continue
        old_base = base.get(name)
        if same(value, old_base):
            continue  # this system did not change the field
        hub_value = out.hub.get(name)
        if value is None and rule.nulls is Nulls.IGNORE:
            out.events.append(MergeEvent("ignored_null", name, spoke.system, "cleared, nulls are not synced"))
            continue
        if rule.survivorship is Survivorship.OWNER and rule.owner != spoke.system:
            # A non-owner's edit: S's base records what S holds now, so the outbound step sends the
            # owner's value back to S in this same cycle.
            base[name] = value
            if not same(hub_value, value):
                out.events.append(
                    MergeEvent(
                        "reverted",
                        name,
                        spoke.system,
                        f"owned by {rule.owner}; the edit is reverted",
                        old=value,
                        new=hub_value,
                    )
                )
            continue
        if (
            rule.survivorship is Survivorship.SET_IF_EMPTY
            and not _empty(hub_value)
            and not same(hub_value, value)
        ):
            base[name] = value
            out.events.append(
                MergeEvent(
                    "ignored_not_empty",
                    name,
                    spoke.system,
                    "set only while empty; the hub's value is kept",
                    old=value,
                    new=hub_value,
                )
            )
            continue
        hub_changed = not same(hub_value, old_base)
        if not hub_changed or same(hub_value, value):
            if not same(hub_value, value):
                _take(out, name, value, spoke)
            base[name] = value
            continue
        _conflict(policy, spoke, out, name, old_base, value)


def _conflict(
    policy: ObjectPolicy, spoke: SpokeView, out: MergeOutcome, name: str, old_base: Any, value: Any
) -> None:
    rule = policy.rule(name)
    stamp = out.stamps.get(name)
    hub_origin = stamp.origin if stamp else None
    base = out.bases[spoke.system]
    if name in out.open_conflicts:
        out.events.append(MergeEvent("conflict_pending", name, spoke.system, "awaiting review", new=value))
        return
    winner: str | None = None
    if rule.survivorship is Survivorship.OWNER:
        winner = rule.owner
    elif rule.on_conflict == "latest":
        theirs, ours = spoke.modified_at, stamp.at if stamp else None
        if theirs is not None and ours is not None and theirs != ours:
            winner = spoke.system if theirs > ours else hub_origin
    elif rule.preferred is not None:
        winner = rule.preferred
    if winner == spoke.system:
        previous = out.hub.get(name)
        _take(out, name, value, spoke)
        base[name] = value
        out.events.append(
            MergeEvent(
                "resolved", name, spoke.system, f"{rule.on_conflict}: {spoke.system} wins", previous, value
            )
        )
        return
    if winner is not None and winner == (hub_origin or HUB_ORIGIN):
        base[name] = value  # S holds its own value; the outbound step overwrites it with the hub's
        out.events.append(
            MergeEvent(
                "resolved",
                name,
                spoke.system,
                f"{rule.on_conflict}: {winner} wins",
                value,
                out.hub.get(name),
            )
        )
        return
    out.open_conflicts.add(name)
    out.conflicts.append(
        Conflict(
            field=name,
            base=old_base,
            hub_value=out.hub.get(name),
            hub_origin=hub_origin,
            hub_author=stamp.author if stamp else None,
            hub_at=stamp.at if stamp else None,
            system=spoke.system,
            system_value=value,
            system_author=spoke.author,
            system_at=spoke.modified_at,
        )
    )


def _revert_owned(policy: ObjectPolicy, entity: EntityView, out: MergeOutcome) -> None:
    """An owned field changed in the hub by anyone but its owner goes back to the owner's value."""
    linked = {s.system for s in entity.spokes if s.linked or s.current is not None}
    for name, rule in policy.fields.items():
        if rule.survivorship is not Survivorship.OWNER or rule.owner not in linked:
            continue
        owner_value = out.bases[rule.owner].get(name)
        if name in out.hub and not same(out.hub[name], owner_value):
            stamp = out.stamps.get(name)
            previous = out.hub[name]
            origin = stamp.origin if stamp else HUB_ORIGIN
            out.hub[name] = owner_value
            out.stamps[name] = FieldStamp(rule.owner)
            out.changed[name] = FieldChange(previous, owner_value, out.stamps[name])
            out.events.append(
                MergeEvent(
                    "reverted",
                    name,
                    origin,
                    f"owned by {rule.owner}; the edit is reverted",
                    old=previous,
                    new=owner_value,
                )
            )


def _outbound(policy: ObjectPolicy, spoke: SpokeView, out: MergeOutcome) -> None:
    base = out.bases[spoke.system]
    create = not spoke.linked and spoke.current is None
    writes: dict[str, Any] = {}
    for name, value in out.hub.items():
        rule = policy.rule(name)
        if not rule.carried_by(spoke.system) or name in out.open_conflicts:
            continue
        if rule.survivorship is Survivorship.OWNER and rule.owner == spoke.system:
            continue  # never send an owner its own field: that would be an echo
        if create and value is None:
            continue
        if same(value, base.get(name)):
            continue
        if value is None and rule.nulls is Nulls.IGNORE:
            continue
        writes[name] = value
    if create:
        if writes:
            out.creates.add(spoke.system)
            out.writes[spoke.system] = writes
    elif writes:
        out.writes[spoke.system] = writes


def _merge_delete(policy: ObjectPolicy, entity: EntityView, out: MergeOutcome) -> MergeOutcome:
    """A delete on any side ends the entity everywhere; later edits never resurrect it."""
    origin = next((s.system for s in entity.spokes if s.deleted), HUB_ORIGIN)
    action = "void" if policy.on_delete is OnDelete.VOID_NOTIFY else "delete"
    for spoke in entity.spokes:
        if spoke.current is not None and not spoke.deleted and entity.deleted:
            out.events.append(
                MergeEvent(
                    "ignored_deleted", None, spoke.system, "edited after the entity was deleted; ignored"
                )
            )
        if spoke.linked and not spoke.deleted and not spoke.delete_applied:
            out.deletes[spoke.system] = action
    if not entity.deleted:
        out.hub_deleted = True
        edited = [s.system for s in entity.spokes if s.current is not None and not s.deleted]
        detail = f"deleted in {origin}" + (f" while edited in {', '.join(edited)}" if edited else "")
        kind = "void_notify" if policy.on_delete is OnDelete.VOID_NOTIFY else "deleted"
        out.events.append(MergeEvent(kind, None, origin, f"{detail}; {policy.on_delete.value}"))
    return out


def apply_write(base: Mapping[str, Any], written: Mapping[str, Any]) -> dict[str, Any]:
    """A system's base after a successful write of ``written`` to it."""
    merged = dict(base)
    merged.update(written)
    return merged


def resolve(conflict: Conflict, choice: str, value: Any = None) -> tuple[Any, Any]:
    """A reviewer's decision: (the hub's new value, the conflicting system's new base).

    ``choice`` is ``hub`` (keep the hub's value), ``system`` (take the system's) or ``value`` (a value
    the reviewer typed). The system's base becomes what it holds now, so only systems that differ from
    the decision are written to.
    """
    if choice == "hub":
        decided = conflict.hub_value
    elif choice == "system":
        decided = conflict.system_value
    elif choice == "value":
        decided = value
    else:
        raise ValueError(f"choice must be 'hub', 'system' or 'value', not {choice!r}")
    return decided, conflict.system_value
