"""Per-field ownership and survivorship rules of a bi-directional sync, and per-object delete rules.

A rule says who may change a field and what happens when two systems change it in one window:

* ``two_way`` — any linked system may change the field; a true conflict (two systems changed it to
  different values since they last agreed) is settled by ``on_conflict``;
* ``owner`` — only ``owner`` may change it (an ERP's credit limit, a receivable balance, totals the ERP
  computes); an edit made anywhere else is reverted in the same cycle and audited;
* ``set_if_empty`` — a system's value is taken only while the hub's value is empty ("prefer X unless
  blank"); otherwise the edit is ignored, never written back.

``nulls`` says whether clearing a field is a change: ``propagate`` (clearing it on one side clears it
everywhere) or ``ignore`` ("don't sync nulls": an empty value never blanks a filled one).

``on_conflict`` is ``review`` (both values, the base, the authors and the times go to the review queue;
the field is frozen everywhere until a person decides), ``prefer:<system>`` (that system's value
wins; the other side is overwritten and the decision audited) or ``latest`` (the later change by the
systems' own clocks wins; documented as sensitive to clock skew).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

#: The origin label of edits made in the embedded CRM (the hub's own API).
HUB_ORIGIN = "hub"


class Survivorship(StrEnum):
    """Who may change a field (see the module docstring)."""

    TWO_WAY = "two_way"
    OWNER = "owner"
    SET_IF_EMPTY = "set_if_empty"


class Nulls(StrEnum):
    """Whether clearing a field is a change that propagates."""

    PROPAGATE = "propagate"
    IGNORE = "ignore"


class OnDelete(StrEnum):
    """What a delete (or void) on one side does to the entity everywhere else."""

    DELETE_WINS = "delete_wins"  # tombstone in the hub, delete in every linked system, later edits ignored
    VOID_NOTIFY = "void_notify"  # void in every linked system and notify a person; later edits ignored


class PolicyError(ValueError):
    """A sync policy that cannot be applied (unknown system, owner missing, bad conflict rule)."""


@dataclass(frozen=True, slots=True)
class FieldRule:
    """The survivorship rule of one hub field."""

    name: str
    survivorship: Survivorship = Survivorship.TWO_WAY
    owner: str | None = None
    nulls: Nulls = Nulls.PROPAGATE
    on_conflict: str = "review"
    #: Systems that carry the field (None: every linked system). A field outside a system's mapping
    #: is neither read from nor written to it.
    systems: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.survivorship is Survivorship.OWNER and not self.owner:
            raise PolicyError(f"field {self.name!r}: survivorship 'owner' needs an owner system")
        if self.survivorship is not Survivorship.OWNER and self.owner:
            raise PolicyError(
                f"field {self.name!r}: 'owner: {self.owner}' only goes with survivorship 'owner'"
            )
        rule = self.on_conflict
        if rule not in ("review", "latest") and not (
            rule.startswith("prefer:") and len(rule) > len("prefer:")
        ):
            raise PolicyError(
                f"field {self.name!r}: on_conflict must be 'review', 'latest' or 'prefer:<system>', not {rule!r}"
            )

    @property
    def preferred(self) -> str | None:
        """The system named by ``prefer:<system>``, else None."""
        return self.on_conflict.split(":", 1)[1] if self.on_conflict.startswith("prefer:") else None

    def carried_by(self, system: str) -> bool:
        """True when ``system`` reads and writes this field."""
        return self.systems is None or system in self.systems


@dataclass(frozen=True)
class ObjectPolicy:
    """The rules of one synced object: a rule per field and what deletes do."""

    object: str
    fields: Mapping[str, FieldRule]
    on_delete: OnDelete = OnDelete.DELETE_WINS
    #: Field that records a void in systems that void instead of delete (e.g. ``status``), with its value.
    void_field: str | None = None
    void_value: Any = None
    systems: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def build(
        cls,
        object: str,
        rules: Iterable[FieldRule],
        *,
        systems: Iterable[str] = (),
        on_delete: OnDelete | str = OnDelete.DELETE_WINS,
        void_field: str | None = None,
        void_value: Any = None,
    ) -> ObjectPolicy:
        """Build and check a policy: owners and preferred systems must be linked systems."""
        by_name: dict[str, FieldRule] = {}
        for rule in rules:
            if rule.name in by_name:
                raise PolicyError(f"object {object!r}: field {rule.name!r} has two rules")
            by_name[rule.name] = rule
        known = tuple(systems)
        if known:
            allowed = set(known) | {HUB_ORIGIN}
            for rule in by_name.values():
                for named in (rule.owner, rule.preferred):
                    if named is not None and named not in allowed:
                        raise PolicyError(
                            f"object {object!r}, field {rule.name!r}: {named!r} is not a linked system "
                            f"(linked: {', '.join(sorted(allowed))})"
                        )
        return cls(
            object=object,
            fields=by_name,
            on_delete=OnDelete(on_delete),
            void_field=void_field,
            void_value=void_value,
            systems=known,
        )

    def rule(self, name: str) -> FieldRule:
        """The rule of ``name``; fields without a declared rule are two-way with review on conflict."""
        found = self.fields.get(name)
        return found if found is not None else FieldRule(name)
