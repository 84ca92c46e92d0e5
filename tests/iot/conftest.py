"""Fixtures of the IoT tests: the machine's Mosquitto, a private restartable one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.kit.mqtt import BrokerAddress
from tests.helpers.mqtt import OwnMosquitto, require_system_broker


@pytest.fixture
def mosquitto() -> BrokerAddress:
    """The local Mosquitto (a failure in CI when it is down)."""
    return require_system_broker()


@pytest.fixture
def own_mosquitto(tmp_path: Path) -> Iterator[OwnMosquitto]:
    """A Mosquitto process of this test's own on a free port (restartable)."""
    broker = OwnMosquitto(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
