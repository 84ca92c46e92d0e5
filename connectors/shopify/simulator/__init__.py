"""A local Shopify server for tests, demos and ``tongbu simulate shopify`` (see :mod:`.app`)."""

from connectors.shopify.simulator.app import ShopifySimulator
from connectors.shopify.simulator.data import ShopifyStore

SIMULATOR = ShopifySimulator

__all__ = ["SIMULATOR", "ShopifySimulator", "ShopifyStore"]
