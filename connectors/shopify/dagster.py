"""Dagster pieces of the shopify connector beyond the generic per-stream sync assets: buyer identity.

See :mod:`connectors.kit.identity_dagster` (the asset ``<connection>/buyer_identity`` and its check).
"""

from typing import Any

from connectors.kit.dagster import DefinitionParts
from connectors.kit.identity_dagster import identity_parts


def dagster_definitions(project: Any) -> DefinitionParts:
    """The buyer-identity asset and check of each shopify connection."""
    return identity_parts(project, "shopify")
