"""The declaration of a two-way sync: which object, which systems, and a rule per field.

It sits in the mapping file beside the field mappings, under a top-level ``sync:`` key::

    sync:
      - name: accounts_kingdee
        object: accounts
        systems: [kingdee]
        match_on: [credit_code, number]      # identity keys that link records created on both sides
        create_in: [kingdee]                 # where a hub record missing there is created
        on_delete: delete_wins               # or void_notify
        fields:
          name: {}                           # two-way, conflicts to review (the default)
          phone: {nulls: ignore}             # an empty value never blanks a filled one
          grade: {survivorship: set_if_empty}
          credit_limit: {owner: kingdee}     # ERP-owned: edits elsewhere are reverted
          address: {on_conflict: prefer:kingdee}

Unknown keys are errors, with the line and a suggestion.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipelines.sync.engine import SyncPair
from pipelines.sync.policy import FieldRule, Nulls, ObjectPolicy, OnDelete, PolicyError, Survivorship
from tongbu.hub.models import HUB_OBJECTS


class SyncConfigError(ValueError):
    """A ``sync:`` declaration that cannot be used; the message names the pair and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldRuleSpec(_Strict):
    """One field's rule as written in the file."""

    survivorship: Literal["two_way", "owner", "set_if_empty"] | None = None
    owner: str | None = None
    nulls: Literal["propagate", "ignore"] = "propagate"
    on_conflict: str = "review"
    systems: list[str] | None = None


class SyncSpec(_Strict):
    """One ``sync:`` entry."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    object: str
    systems: list[str] = Field(min_length=1)
    match_on: list[str] = Field(default_factory=list)
    create_in: list[str] = Field(default_factory=list)
    on_delete: Literal["delete_wins", "void_notify"] = "delete_wins"
    fields: dict[str, FieldRuleSpec] = Field(min_length=1)

    @field_validator("object")
    @classmethod
    def _known_object(cls, value: str) -> str:
        if value not in HUB_OBJECTS:
            raise ValueError(f"unknown CRM object {value!r}; known objects: {', '.join(sorted(HUB_OBJECTS))}")
        return value


def build_pairs(raw: Any, where: str = "<sync>") -> list[SyncPair]:
    """Sync pairs from the parsed ``sync:`` value of a mapping file."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise SyncConfigError(f"{where}: 'sync' must be a list of sync declarations")
    pairs = []
    for i, item in enumerate(raw):
        try:
            spec = SyncSpec.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise SyncConfigError(f"{where}: sync[{i}].{loc}: {first['msg']}") from None
        pairs.append(_pair(spec, where))
    names = [p.name for p in pairs]
    if len(set(names)) != len(names):
        raise SyncConfigError(f"{where}: two sync declarations share a name")
    return pairs


def _pair(spec: SyncSpec, where: str) -> SyncPair:
    columns = {c.name for c in HUB_OBJECTS[spec.object].__table__.columns}  # type: ignore[attr-defined]
    for name in [*spec.fields, *spec.match_on]:
        if name not in columns:
            raise SyncConfigError(f"{where}: sync {spec.name!r}: {spec.object} has no field {name!r}")
    unknown = sorted(set(spec.create_in) - set(spec.systems))
    if unknown:
        raise SyncConfigError(
            f"{where}: sync {spec.name!r}: create_in names {unknown[0]!r}, not one of its systems"
        )
    try:
        rules = list(_rules(spec.fields.items()))
        policy = ObjectPolicy.build(
            spec.object, rules, systems=spec.systems, on_delete=OnDelete(spec.on_delete)
        )
    except PolicyError as exc:
        raise SyncConfigError(f"{where}: sync {spec.name!r}: {exc}") from None
    return SyncPair(
        name=spec.name,
        object=spec.object,
        fields=tuple(spec.fields),
        policy=policy,
        match_on=tuple(spec.match_on),
        create_in=frozenset(spec.create_in),
    )


def _rules(items: Iterable[tuple[str, FieldRuleSpec]]) -> Iterable[FieldRule]:
    for name, r in items:
        survivorship = (
            Survivorship(r.survivorship)
            if r.survivorship
            else (Survivorship.OWNER if r.owner else Survivorship.TWO_WAY)
        )
        yield FieldRule(
            name,
            survivorship,
            owner=r.owner,
            nulls=Nulls(r.nulls),
            on_conflict=r.on_conflict,
            systems=frozenset(r.systems) if r.systems is not None else None,
        )
