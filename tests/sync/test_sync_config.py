"""The ``sync:`` declaration: rules built from the file, every mistake one clear line."""

from __future__ import annotations

import pytest
import yaml

from pipelines.sync.config import SyncConfigError, build_pairs
from pipelines.sync.policy import Nulls, OnDelete, Survivorship

GOOD = """
- name: accounts_kingdee
  object: accounts
  systems: [kingdee]
  match_on: [credit_code, number]
  create_in: [kingdee]
  on_delete: void_notify
  fields:
    name: {}
    phone: {nulls: ignore}
    grade: {survivorship: set_if_empty}
    credit_limit: {owner: kingdee}
    address: {on_conflict: "prefer:kingdee"}
"""


def test_a_declaration_becomes_a_pair_with_its_rules() -> None:
    [pair] = build_pairs(yaml.safe_load(GOOD))
    assert pair.fields == ("name", "phone", "grade", "credit_limit", "address")
    assert pair.match_on == ("credit_code", "number") and pair.create_in == {"kingdee"}
    rules = pair.policy
    assert rules.on_delete is OnDelete.VOID_NOTIFY
    assert rules.rule("credit_limit").survivorship is Survivorship.OWNER
    assert rules.rule("credit_limit").owner == "kingdee"
    assert rules.rule("phone").nulls is Nulls.IGNORE
    assert rules.rule("grade").survivorship is Survivorship.SET_IF_EMPTY
    assert rules.rule("address").preferred == "kingdee"
    assert rules.rule("name").survivorship is Survivorship.TWO_WAY


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("object: accounts", "object: acounts"), "unknown CRM object 'acounts'"),
        (("phone: {nulls: ignore}", "phone: {nuls: ignore}"), "fields.phone.nuls: Extra inputs"),
        (("name: {}", "nmae: {}"), "accounts has no field 'nmae'"),
        (("credit_limit: {owner: kingdee}", "credit_limit: {owner: sap}"), "'sap' is not a linked system"),
        (("create_in: [kingdee]", "create_in: [fxiaoke]"), "create_in names 'fxiaoke'"),
        (('{on_conflict: "prefer:kingdee"}', "{on_conflict: newest}"), "on_conflict must be"),
        (("on_delete: void_notify", "on_delete: keep"), "on_delete"),
    ],
)
def test_mistakes_are_one_line_naming_the_place(change: tuple[str, str], message: str) -> None:
    with pytest.raises(SyncConfigError, match=message) as err:
        build_pairs(yaml.safe_load(GOOD.replace(*change)), "mappings/x.yaml")
    assert "\n" not in str(err.value) and str(err.value).startswith("mappings/x.yaml")
