"""A local IoT devices (MQTT) server for tests, demos and ``tongbu simulate iot`` (see :mod:`.app`)."""

from connectors.iot.simulator.app import IotSimulator
from connectors.iot.simulator.data import IotStore

SIMULATOR = IotSimulator

__all__ = ["SIMULATOR", "IotSimulator", "IotStore"]
