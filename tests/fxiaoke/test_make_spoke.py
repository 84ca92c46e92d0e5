"""A project's ``syncs:`` reach Fxiaoke through the registry's ``make_spoke`` hook, like Kingdee."""

from __future__ import annotations

from connectors import registry
from connectors.fxiaoke.simulator import FxiaokeSimulator
from connectors.fxiaoke.spoke import FxiaokeSpoke


def test_the_registry_builds_a_working_fxiaoke_spoke_from_a_connection_config(fx: FxiaokeSimulator) -> None:
    assert "fxiaoke" in registry.spokes()
    make_spoke = registry.load_spoke_factory("fxiaoke")
    spoke = make_spoke({**fx.tap_config(), "backoff_base": 0.01}, system="fx_sales")
    try:
        assert isinstance(spoke, FxiaokeSpoke) and spoke.system == "fx_sales"
        assert spoke.trigger_approval is False and spoke.trigger_workflow is True
        records, cursor = spoke.changes("accounts", None)  # a full pull, then the change feed's mark
        live = sorted(str(r["_id"]) for r in fx.truth("AccountObj") if not r.get("_malformed"))
        assert live and sorted(r.external_id for r in records) == live and spoke.rejected == []
        newest = max(int(r["last_modified_time"]) for r in fx.truth("AccountObj"))
        assert cursor is not None and cursor["t"] == newest
    finally:
        spoke.close()
