"""The kit's batching consumer: a batch whose commit fails is redelivered by the broker, then applied."""

from __future__ import annotations

import threading
import uuid

from connectors.kit.mqtt import BatchingConsumer, BrokerAddress, connect, make_client
from tests.iot.test_mqtt_e2e import wait_until


def test_a_failed_batch_is_not_acked_and_comes_back(mosquitto: BrokerAddress) -> None:
    topic = f"tongbu-test/{uuid.uuid4().hex[:8]}/t"
    handled: list[bytes] = []
    failures = []
    lock = threading.Lock()

    def handler(batch) -> None:
        with lock:
            if not failures:
                failures.append(len(batch))
                raise RuntimeError("database is locked")  # nothing committed: must come back
            handled.extend(d.payload for d in batch)

    consumer = BatchingConsumer(mosquitto, f"kit-{uuid.uuid4().hex[:8]}", [topic], handler, max_wait_s=0.2)
    consumer.start()
    pub = make_client(mosquitto, f"kitpub-{uuid.uuid4().hex[:8]}")
    connect(pub, mosquitto)
    pub.loop_start()
    try:
        for i in range(50):
            pub.publish(topic, str(i).encode(), qos=1).wait_for_publish(10)
        wait_until(lambda: len(set(handled)) == 50, timeout=30, what="every message after the failed batch")
    finally:
        pub.disconnect()
        pub.loop_stop()
        consumer.stop()
    assert failures and consumer.stats["handler_errors"] == 1
    assert {int(p) for p in handled} == set(range(50))
