"""The layers contracts of ``pyproject.toml`` (``[tool.importlinter]``) hold, and they can fail.

* ``lint-imports`` (import-linter's own command, unchanged) passes on the repository;
* each contract breaks when an import of the kind it forbids is added to the real graph: an upward
  import between layers (also from a connector that does not exist yet, and under ``TYPE_CHECKING``),
  one connector importing another, a cycle inside ``tongbu``, a module of ``tongbu`` placed in no layer;
* the app and core lists, written twice in the configuration, agree.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import grimp
import pytest
from importlinter.adapters.user_options import TomlFileUserOptionReader
from importlinter.configuration import configure
from importlinter.contracts.acyclic_siblings import AcyclicSiblingsContract
from importlinter.contracts.independence import IndependenceContract
from importlinter.contracts.layers import LayersContract

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
# the options as import-linter itself reads them (it passes every value to its fields as text)
configure()  # what `lint-imports` does first (the file system and readers it uses)
OPTIONS = TomlFileUserOptionReader().read_options(config_filename=str(ROOT / "pyproject.toml"))
KINDS = {
    "layers": LayersContract,
    "independence": IndependenceContract,
    "acyclic_siblings": AcyclicSiblingsContract,
}


def _contract(contract_id: str) -> Any:
    assert OPTIONS is not None
    (options,) = [c for c in OPTIONS.contracts_options if c["id"] == contract_id]
    opts = {k: v for k, v in options.items() if k not in ("id", "name", "type")}
    return KINDS[options["type"]](options["name"], OPTIONS.session_options, opts)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*CONFIG["root_packages"], cache_dir=None, exclude_type_checking_imports=False)


def _kept(contract_id: str, graph: grimp.ImportGraph) -> bool:
    return bool(_contract(contract_id).check(copy.deepcopy(graph), verbose=False).kept)


def _with(graph: grimp.ImportGraph, *edges: tuple[str, str]) -> grimp.ImportGraph:
    g = copy.deepcopy(graph)
    for importer, imported in edges:
        for m in (importer, imported):
            parts = m.split(".")
            for depth in range(1, len(parts) + 1):  # a new module comes with its packages
                if ".".join(parts[:depth]) not in g.modules:
                    g.add_module(".".join(parts[:depth]))
        g.add_import(importer=importer, imported=imported, line_number=1, line_contents=f"import {imported}")
    return g


def test_lint_imports_passes() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize("contract_id", [c["id"] for c in CONFIG["contracts"]])
def test_each_contract_is_kept(graph: grimp.ImportGraph, contract_id: str) -> None:
    assert _kept(contract_id, graph)


@pytest.mark.parametrize(
    "importer, imported",
    [
        ("tongbu.hub.store", "mappings.engine"),  # core -> mappings
        ("tongbu.state.store", "connectors.kit.http"),  # core -> connectors
        ("tongbu.inbox", "tongbu.serve.app"),  # core -> app
        ("mappings.engine", "connectors.kingdee.tap"),  # mappings -> connectors
        ("connectors.kit.http", "pipelines.runner"),  # connectors -> pipelines
        ("connectors.acme.tap", "pipelines.runner"),  # a connector written later is covered by prefix
        ("connectors.wecom.hub", "tongbu.serve.app"),  # connectors -> app
        ("pipelines.runner", "dagster_project.assets"),  # pipelines -> app
        ("pipelines.runner", "tongbu.cli"),
    ],
)
def test_upward_import_breaks_the_layers(graph: grimp.ImportGraph, importer: str, imported: str) -> None:
    assert not _kept("layers", _with(graph, (importer, imported)))


def test_type_checking_imports_count(tmp_path: Path) -> None:
    # The decision in pyproject.toml: a type-only import is still a dependency. Shown on a tiny tree:
    # the same graph builder, with the same option, sees an import under `if TYPE_CHECKING:`.
    assert CONFIG["exclude_type_checking_imports"] is False
    pkg = tmp_path / "lowpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import lowpkg.b\n")
    (pkg / "b.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    try:
        g = grimp.build_graph("lowpkg", cache_dir=None, exclude_type_checking_imports=False)
    finally:
        sys.path.remove(str(tmp_path))
    assert g.direct_import_exists(importer="lowpkg.a", imported="lowpkg.b")


def test_connector_importing_another_breaks_independence(graph: grimp.ImportGraph) -> None:
    assert not _kept(
        "connectors-independent", _with(graph, ("connectors.wecom.client", "connectors.kingdee.client"))
    )
    assert not _kept(
        "connectors-independent", _with(graph, ("connectors.acme.tap", "connectors.wecom.client"))
    )
    assert not _kept(
        "connectors-independent", _with(graph, ("connectors.kit.http", "connectors.wecom.client"))
    )
    # using the kit is what connectors are for
    assert _kept("connectors-independent", _with(graph, ("connectors.acme.tap", "connectors.kit.http")))


@pytest.mark.parametrize(
    "a, b",
    [
        ("tongbu.hub.store", "tongbu.state.store"),  # two core packages
        ("tongbu.serve.config", "tongbu.serve.app"),  # inside one app package
        ("pipelines.runner", "pipelines.project"),
    ],
)
def test_cycle_breaks_acyclic(graph: grimp.ImportGraph, a: str, b: str) -> None:
    assert not _kept("acyclic", _with(graph, (a, b), (b, a)))


def test_new_tongbu_module_must_be_placed(graph: grimp.ImportGraph) -> None:
    g = copy.deepcopy(graph)
    g.add_module("tongbu.newthing")
    assert not _kept("tongbu-placed", g)


def test_app_and_core_lists_agree() -> None:
    (placed,) = [c for c in CONFIG["contracts"] if c["id"] == "tongbu-placed"]
    (layers,) = [c for c in CONFIG["contracts"] if c["id"] == "layers"]

    def names(layer: str, prefix: str = "") -> set[str]:
        return {prefix + n.strip() for n in layer.split(":")}

    apps, core = (names(x, "tongbu.") for x in placed["layers"])
    assert names(layers["layers"][0]) - {"dagster_project"} == apps
    assert names(layers["layers"][-1]) == core
    assert [n.strip() for n in layers["layers"][1:-1]] == ["pipelines", "connectors", "mappings"]
