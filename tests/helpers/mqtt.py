"""MQTT brokers for tests: the machine's Mosquitto (127.0.0.1:1883), and a private Mosquitto process
on a free port that a test may restart (never restart the system one)."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from connectors.kit.mqtt import BrokerAddress, broker_reachable
from connectors.kit.server import free_port

SYSTEM_BROKER = os.environ.get("TONGBU_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")


def require_system_broker() -> BrokerAddress:
    """The local Mosquitto; a failure in CI (TONGBU_REQUIRE_SERVICES), a skip on a laptop without one."""
    from tests.conftest import services_required

    address = BrokerAddress.parse(SYSTEM_BROKER)
    if not broker_reachable(address.host, address.port):
        message = f"MQTT broker {address.url} is required but unreachable (start: mosquitto -d -c /etc/mosquitto/mosquitto.conf)"
        if services_required():
            pytest.fail(message)
        pytest.skip(message)
    return address


class OwnMosquitto:
    """A Mosquitto of our own (persistent sessions, unbounded offline queue) that can be restarted."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.folder = folder
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            # Run as whoever we are: as root Mosquitto would switch to user `mosquitto`, which cannot
            # write its persistence file into this test's folder (and so would forget every session).
            f"user {getpass.getuser()}\n"
            f"persistence true\npersistence_location {folder}/\nautosave_interval 1\n"
            # An offline durable consumer's messages are all kept (the default drops beyond 1000).
            "max_queued_messages 0\nmax_inflight_messages 0\n"
            f"log_dest file {folder}/mosquitto.log\n"
        )

    @property
    def address(self) -> BrokerAddress:
        return BrokerAddress("127.0.0.1", self.port, protocol=5)

    def start(self) -> None:
        if not os.path.exists(self.exe):
            pytest.fail("mosquitto is not installed (Debian package mosquitto)")
        self.proc = subprocess.Popen([self.exe, "-c", str(self.folder / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 10
        while not broker_reachable("127.0.0.1", self.port, 0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"own mosquitto did not start on {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its persistence file (sessions, queued messages) on the way out."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(15)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
