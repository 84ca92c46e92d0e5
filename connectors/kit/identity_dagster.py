"""Dagster pieces for shop connectors: buyer identity resolution after the buyers land in the hub.

Per connection ``<c>`` of the connector: an asset ``<c>/buyer_identity`` downstream of ``crm/contacts``
that runs :class:`connectors.kit.identity.IdentityResolver` for the connection's buyers (matched,
new, sent to review), and a check that warns while reviews are open. A connector's ``dagster.py`` returns
:func:`identity_parts` (the generic per-stream sync assets come from ``dagster_project``).

No ``from __future__ import annotations``: Dagster inspects the real annotation of ``context``.
"""

from typing import Any

import dagster as dg

from connectors.kit.dagster import RESOURCE_KEY, DefinitionParts, hub_key


def _connections(project: Any, connector: str) -> list[str]:
    return [name for name, conn in project.connections.items() if conn.connector == connector]


def _identity_asset(connection: str) -> dg.AssetsDefinition:
    @dg.asset(
        required_resource_keys={RESOURCE_KEY},
        key=dg.AssetKey([connection, "buyer_identity"]),
        deps=[hub_key("contacts")],
        group_name=connection,
        kinds={"python"},
        description="Shop buyers → CRM persons: phone (normalised), e-mail, name + address; masked phones "
        "never merge alone; doubtful buyers go to the identity review queue.",
    )
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:  # type: ignore[type-arg]
        from connectors.kit.identity import IdentityResolver
        from tongbu.db import get_engine

        resolver = IdentityResolver(get_engine(), tenant=context.resources.tongbu.project().tenant)
        counts = resolver.resolve(connection)
        context.log.info(f"{connection} buyers: {counts}")
        return dg.MaterializeResult(
            metadata={
                **{k: dg.MetadataValue.int(v) for k, v in counts.items()},
                "open_reviews": dg.MetadataValue.int(len(resolver.open_reviews(connection))),
            }
        )

    return _asset


def _reviews_check(connection: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey([connection, "buyer_identity"]),
        name="no_open_identity_reviews",
        required_resource_keys={RESOURCE_KEY},
        description="Warns while buyers wait in the identity review queue.",
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        from connectors.kit.identity import IdentityResolver
        from tongbu.db import get_engine

        open_ = IdentityResolver(get_engine(), tenant=context.resources.tongbu.project().tenant).open_reviews(
            connection
        )
        return dg.AssetCheckResult(
            passed=not open_,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"open_reviews": dg.MetadataValue.int(len(open_))},
        )

    return _check


def identity_parts(project: Any, connector: str) -> DefinitionParts:
    """The buyer-identity asset and check of every connection of ``connector``."""
    parts = DefinitionParts()
    for connection in _connections(project, connector):
        parts.assets.append(_identity_asset(connection))
        parts.asset_checks.append(_reviews_check(connection))
    return parts
