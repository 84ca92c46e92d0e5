"""MQTT plumbing any connector can use: broker addresses, paho clients with durable sessions, a
batching consumer that acknowledges only after its batch is committed, and an embedded broker.

Why these choices:

* **Durable session, manual acks.** A consumer connects with a fixed client id, ``clean_start``
  false and a session that outlives the connection (MQTT 5 ``SessionExpiryInterval``; MQTT 3.1.1
  ``clean_session=False``), subscribes at QoS 1 and acknowledges a message (PUBACK) only after the
  batch holding it is committed. A consumer killed mid-batch therefore loses nothing: the broker
  redelivers every unacknowledged message on reconnect (which is why the writer must be idempotent).
* **MQTT 5 against real brokers.** Mosquitto caps unacknowledged messages in flight to a client at
  ``max_inflight_messages`` (20) for 3.1.1 clients, which would cap a batch at 20 messages; an MQTT 5
  client announces its own ``Receive Maximum`` instead. The embedded broker (amqtt) speaks 3.1.1
  only, so the protocol follows the URL scheme: ``mqtt://`` = 5, ``mqtt311://`` = 3.1.1.
* **Embedded broker.** :class:`EmbeddedBroker` runs amqtt (pure Python) on a background thread, so a
  demo or a fresh machine needs no broker installed. It is for demos and small installations: a
  production site runs Mosquitto, EMQX or the IoT platform's own broker.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = [
    "BatchingConsumer",
    "BrokerAddress",
    "EmbeddedBroker",
    "MqttError",
    "broker_reachable",
    "make_client",
]

log = logging.getLogger(__name__)

#: the longest session a broker keeps for an offline consumer (MQTT 5: 0xFFFFFFFF = never expires)
SESSION_EXPIRY_S = 7 * 24 * 3600
#: how many unacknowledged QoS 1 messages a consumer accepts in flight (MQTT 5 Receive Maximum)
RECEIVE_MAXIMUM = 65535


class MqttError(RuntimeError):
    """A broker could not be reached or refused us; one line, never a password."""


@dataclass(frozen=True)
class BrokerAddress:
    """Where a broker listens and how to speak to it (parsed from ``mqtt://user:pass@host:port``)."""

    host: str = "127.0.0.1"
    port: int = 1883
    protocol: int = 5  # 5 or 311
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """``mqtt://host:1883`` (MQTT 5) or ``mqtt311://host:1883`` (3.1.1); anything else is an error."""
        parts = urlsplit(url)
        schemes = {"mqtt": 5, "mqtt5": 5, "mqtt311": 311, "tcp": 5}
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"broker {url!r}: expected mqtt://host:port or mqtt311://host:port")
        try:
            port = parts.port or 1883
        except ValueError:
            raise ValueError(f"broker {url!r}: the port is not a number") from None
        return cls(
            host=parts.hostname,
            port=port,
            protocol=schemes[parts.scheme],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    @property
    def url(self) -> str:
        """The address without credentials (safe to log)."""
        return f"{'mqtt' if self.protocol == 5 else 'mqtt311'}://{self.host}:{self.port}"


def broker_reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at ``host:port`` (a cheap pre-flight check)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def make_client(
    address: BrokerAddress,
    client_id: str,
    *,
    durable: bool = False,
    manual_ack: bool = False,
    username: str | None = None,
    password: str | None = None,
) -> paho.Client:
    """A paho 2.x client for ``address``; ``durable`` keeps the session across disconnects.

    Connect with :func:`connect` (it passes the session properties the protocol needs).
    """
    version = MQTTProtocolVersion.MQTTv5 if address.protocol == 5 else MQTTProtocolVersion.MQTTv311
    kwargs: dict[str, Any] = {}
    if version == MQTTProtocolVersion.MQTTv311:
        kwargs["clean_session"] = not durable
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=version,
        manual_ack=manual_ack,
        **kwargs,
    )
    user = username if username is not None else address.username
    if user is not None:
        client.username_pw_set(user, password if password is not None else address.password)
    # paho's own queue of outgoing messages is unbounded by default; in-flight is what the broker sees
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client._tongbu_durable = durable  # type: ignore[attr-defined]  # read by connect()
    return client


def connect(
    client: paho.Client,
    address: BrokerAddress,
    *,
    keepalive: int = 30,
    receive_maximum: int = RECEIVE_MAXIMUM,
) -> None:
    """Connect (blocking until the TCP connection is up; CONNACK arrives on the network loop).

    ``receive_maximum`` (MQTT 5) bounds the unacknowledged messages the broker sends us at once, and
    so the memory a consumer that falls behind holds.
    """
    durable = bool(getattr(client, "_tongbu_durable", False))
    kwargs: dict[str, Any] = {}
    if client.protocol == MQTTProtocolVersion.MQTTv5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.ReceiveMaximum = max(1, min(receive_maximum, RECEIVE_MAXIMUM))
        if durable:
            props.SessionExpiryInterval = SESSION_EXPIRY_S
        kwargs = {"clean_start": not durable, "properties": props}
    try:
        client.connect(address.host, address.port, keepalive=keepalive, **kwargs)
    except OSError as exc:
        raise MqttError(f"MQTT broker {address.url} unreachable: {exc.strerror or exc}") from None


@dataclass
class Delivery:
    """One message as the consumer hands it to the batch handler."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool
    dup: bool
    received_at: float


BatchHandler = Callable[[list[Delivery]], None]


class BatchingConsumer:
    """Subscribe at QoS 1 on a durable session; hand messages to ``handler`` in batches; ack after.

    ``handler(batch)`` must commit the batch (and be idempotent: a message delivered again after a
    crash carries the same content). Only when it returns are the batch's messages acknowledged; if
    it raises, the consumer disconnects without acking, so the broker redelivers the lot on
    reconnect. A batch closes at ``max_batch`` messages or ``max_wait_s`` after its first message.
    Reconnects after a lost connection (broker restart) with backoff, on the same session.
    """

    def __init__(
        self,
        address: BrokerAddress,
        client_id: str,
        topics: Sequence[str],
        handler: BatchHandler,
        *,
        max_batch: int = 5000,
        max_wait_s: float = 0.05,
        qos: int = 1,
    ) -> None:
        self.address = address
        self.client_id = client_id
        self.topics = list(topics)
        self.handler = handler
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.qos = qos
        self._inbox: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._failed: BaseException | None = None
        self._worker: threading.Thread | None = None
        self.stats = {"received": 0, "acked": 0, "batches": 0, "reconnects": 0, "handler_errors": 0}
        self._client = make_client(address, client_id, durable=True, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        # paho annotates whole seconds but sleeps any float: retry fast after a broker restart
        self._client.reconnect_delay_set(min_delay=0.2, max_delay=2)  # type: ignore[arg-type]

    # paho callbacks (network thread) ------------------------------------------------------------------
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %s refused the consumer: %s", self.address.url, reason)
            return
        # Subscribing again on a resumed session is harmless and covers a broker that lost it.
        client.subscribe([(t, self.qos) for t in self.topics])
        self._connected.set()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            self.stats["reconnects"] += 1
            log.info(
                "MQTT connection to %s lost (%s); reconnecting on the same session", self.address.url, reason
            )

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self._inbox.put(
            Delivery(
                msg.topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.retain), bool(msg.dup), time.time()
            )
        )

    # lifecycle -----------------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        """Connect, subscribe and start the batch worker; raises :class:`MqttError` if not connected."""
        # Two batches in flight: the next fills while one commits, and memory stays bounded.
        connect(self._client, self.address, receive_maximum=max(1000, 2 * self.max_batch))
        self._client.loop_start()
        if not self._connected.wait(timeout):
            self._client.loop_stop()
            raise MqttError(
                f"MQTT broker {self.address.url} did not accept the consumer within {timeout:g} s"
            )
        self._worker = threading.Thread(target=self._run, name=f"mqtt-batch-{self.client_id}", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        """Finish the current batch, then disconnect (unacked messages stay with the broker)."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(30)
        self._client.disconnect()
        self._client.loop_stop()

    def wait_connected(self, timeout: float) -> bool:
        """Block until the consumer is (re)connected."""
        return self._connected.wait(timeout)

    @property
    def failed(self) -> BaseException | None:
        """The error that stopped the worker, if any."""
        return self._failed

    def _take_batch(self) -> list[Delivery]:
        try:
            first = self._inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                batch.append(self._inbox.get_nowait() if left <= 0 else self._inbox.get(timeout=left))
            except queue.Empty:
                break
            if left <= 0 and self._inbox.empty():
                break
        return batch

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._take_batch()
            if not batch:
                continue
            self.stats["received"] += len(batch)
            try:
                self.handler(batch)
            except Exception as exc:  # noqa: BLE001 - the batch is redelivered; say why once
                self.stats["handler_errors"] += 1
                log.error("IoT batch of %d not committed (%s); the broker will redeliver it", len(batch), exc)
                # Drop the connection without acking: the broker redelivers this batch and everything
                # after it that was already received (those sit unacked in our inbox).
                self._drain_inbox()
                self._client.reconnect()
                time.sleep(0.5)
                continue
            self.stats["batches"] += 1
            for d in batch:
                if d.qos > 0:
                    self._client.ack(d.mid, d.qos)
            self.stats["acked"] += len(batch)

    def _drain_inbox(self) -> None:
        while True:
            try:
                self._inbox.get_nowait()
            except queue.Empty:
                return


class EmbeddedBroker:
    """A pure-Python MQTT 3.1.1 broker (amqtt) on a background thread: ``start()``, ``stop()``.

    ``authenticate(client_id, username, password) -> bool`` (optional) decides CONNECTs, so a demo can
    check device credentials the way the IoT platform would.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        authenticate: Callable[[str, str | None, str | None], bool] | None = None,
    ) -> None:
        from connectors.kit.server import free_port

        self.host = host
        self.port = port or free_port(host)
        self.authenticate = authenticate
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def address(self) -> BrokerAddress:
        """How a client reaches it (MQTT 3.1.1)."""
        return BrokerAddress(self.host, self.port, protocol=311)

    def _config(self) -> dict[str, Any]:
        plugins: dict[str, Any] = {}  # no $SYS plugin: nothing here reads broker statistics
        if self.authenticate is not None:
            plugins["connectors.kit.mqtt_auth.CallbackAuthPlugin"] = {"broker": f"{self.host}:{self.port}"}
        else:
            plugins["amqtt.plugins.authentication.AnonymousAuthPlugin"] = {"allow_anonymous": True}
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": plugins,
        }

    def start(self, timeout: float = 15.0) -> BrokerAddress:
        """Start serving; returns the address once it accepts connections."""
        self._thread = threading.Thread(target=self._serve, name="amqtt-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise MqttError(f"embedded MQTT broker did not start on {self.host}:{self.port}: {self._error}")
        return self.address

    def _serve(self) -> None:
        from amqtt.broker import Broker

        from connectors.kit import mqtt_auth

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        mqtt_auth.CALLBACKS[f"{self.host}:{self.port}"] = self.authenticate
        try:
            self._broker = Broker(self._config(), loop=loop)
            loop.run_until_complete(self._broker.start())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    def stop(self) -> None:
        """Shut the broker down (sessions are in memory: a restart forgets them)."""
        loop, broker = self._loop, self._broker
        if loop is None or broker is None:
            return
        fut = asyncio.run_coroutine_threadsafe(broker.shutdown(), loop)
        try:
            fut.result(10)
        except Exception as exc:  # noqa: BLE001 - shutting down anyway
            log.debug("embedded broker shutdown: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = self._broker = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
