"""The shop connectors in Dagster: generic sync assets per stream, plus ``<connection>/buyer_identity``."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml

from connectors.shopify.simulator import ShopifySimulator
from dagster_project.assets import build_definitions

ROOT = Path(__file__).resolve().parents[2]


def test_buyer_identity_asset_runs_after_the_buyers_sync(tmp_path: Path, monkeypatch) -> None:
    with ShopifySimulator(records=60, leak_rate=500.0) as sim:
        monkeypatch.setenv("TONGBU_SHOP_SECRET", sim.CLIENT_SECRET)
        config = {**sim.tap_config(), "client_secret": "${TONGBU_SHOP_SECRET}"}
        path = tmp_path / "tongbu.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "connections": {"shop": {"connector": "shopify", "config": config}},
                    "pipelines": {
                        "shop_customers": {
                            "source": {"connection": "shop", "stream": "customers"},
                            "mapping": str(ROOT / "mappings/library/shopify_to_crm.yaml"),
                            "target": {"object": "contacts"},
                        }
                    },
                }
            ),
            encoding="utf-8",
        )
        monkeypatch.setenv("TONGBU_PROJECT", str(path))
        defs = build_definitions()
        graph = defs.resolve_asset_graph()
        identity = dg.AssetKey(["shop", "buyer_identity"])
        assert dg.AssetKey(["crm", "contacts"]) in graph.get(identity).parent_keys
        instance = dg.DagsterInstance.ephemeral()
        assert defs.resolve_job_def("sync_shop_customers").execute_in_process(instance=instance).success
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[identity]
        )
        assert result.success
        [mat] = result.asset_materializations_for_node("shop__buyer_identity")
        md = {k: v.value for k, v in mat.metadata.items()}
        assert md["match"] + md["new"] + md["review"] == 60
