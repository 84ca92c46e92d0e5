"""A local Youzan 有赞 server for tests, demos and ``tongbu simulate youzan`` (see :mod:`.app`)."""

from connectors.youzan.simulator.app import YouzanSimulator
from connectors.youzan.simulator.data import YouzanStore

SIMULATOR = YouzanSimulator

__all__ = ["SIMULATOR", "YouzanSimulator", "YouzanStore"]
