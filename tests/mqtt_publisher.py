"""A plain paho publisher for tests that play a device or a client, closed after each test
(tests/conftest.py): left running, their network threads would share the test process's
GIL with the audio callbacks of later tests."""

from __future__ import annotations

import contextlib
import time

import paho.mqtt.client as mqtt

_open: list[mqtt.Client] = []


def publisher(broker) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{time.monotonic()}")
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    _open.append(client)
    return client


def publish_all(client: mqtt.Client, items: list[tuple[str, bytes]], retain: bool = False) -> None:
    infos = [client.publish(topic, payload, qos=1, retain=retain) for topic, payload in items]
    for info in infos:
        info.wait_for_publish(10)


def close_publishers() -> None:
    """Disconnect and stop every publisher opened since the last call."""
    while _open:
        client = _open.pop()
        with contextlib.suppress(Exception):
            client.disconnect()
        client.loop_stop()
