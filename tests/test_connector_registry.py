"""The connector registry finds connectors by their folders (or entry points): no list to edit."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest

import connectors
from connectors import registry
from connectors.registry import connector, load_class
from connectors.registry import connectors as known_connectors

TAP = """
from singer_sdk import Tap
from singer_sdk import typing as th


class Tap{cls}(Tap):
    name = "tap-{name}"
    config_jsonschema = th.PropertiesList(th.Property("base_url", th.StringType)).to_dict()

    def discover_streams(self):
        return []
"""


def test_the_shipped_connectors_are_found_with_their_classes() -> None:
    found = known_connectors()
    assert {"crm", "kingdee", "synthetic", "wecom"} <= set(found)
    assert load_class(found["kingdee"].tap or "").__name__ == "TapKingdee"
    assert load_class(found["wecom"].target or "").__name__ == "TargetWeCom"
    assert found["crm"].target_executable == "target-crm"
    assert load_class(found["kingdee"].target or "").__name__ == "TargetKingdee"  # found without a list entry
    assert found["synthetic"].target is None
    assert "kit" not in found and "registry" not in found


def test_an_unknown_connector_is_one_line_with_a_did_you_mean() -> None:
    with pytest.raises(KeyError) as caught:
        connector("kingde")
    assert caught.value.args[0].startswith("unknown connector 'kingde'; did you mean 'kingdee'? known: ")


@pytest.fixture
def extra_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder searched as part of the ``connectors`` package (as a new connectors/<name>/ would be)."""
    monkeypatch.setattr(connectors, "__path__", [*connectors.__path__, str(tmp_path)])
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith(("connectors.shop", "connectors.twotaps"))]:
        del sys.modules[name]


def test_a_new_connector_folder_is_found_without_registering_it(extra_package: Path) -> None:
    (extra_package / "shop").mkdir()
    (extra_package / "shop/__init__.py").write_text("", encoding="utf-8")
    (extra_package / "shop/tap.py").write_text(TAP.format(cls="Shop", name="shop"), encoding="utf-8")
    info = connector("shop")
    assert (info.tap, info.target, info.tap_executable) == ("connectors.shop.tap", None, "tap-shop")
    assert load_class(info.tap or "").__name__ == "TapShop"
    assert "shop" in known_connectors()


def test_a_tap_module_with_two_taps_is_refused_by_name(extra_package: Path) -> None:
    (extra_package / "twotaps").mkdir()
    (extra_package / "twotaps/__init__.py").write_text("", encoding="utf-8")
    source = TAP.format(cls="One", name="one") + TAP.format(cls="Two", name="two")
    (extra_package / "twotaps/tap.py").write_text(source, encoding="utf-8")
    with pytest.raises(
        ImportError, match=r"exactly one singer-sdk Tap or Target class \(found TapOne, TapTwo\)"
    ):
        load_class(connector("twotaps").tap or "")


def test_an_entry_point_contributes_a_connector(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = metadata.EntryPoint("erp2", "connectors.kingdee", registry.ENTRY_POINT_GROUP)
    real = metadata.entry_points

    def entry_points(**kwargs):
        return [ep] if kwargs.get("group") == registry.ENTRY_POINT_GROUP else real(**kwargs)

    monkeypatch.setattr(registry.metadata, "entry_points", entry_points)
    info = connector("erp2")
    assert info.tap == "connectors.kingdee.tap" and info.tap_executable == "tap-erp2"
