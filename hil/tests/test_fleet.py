"""Fleet scenarios: telemetry across a broker restart, deploying to 100 devices, heap use."""

from __future__ import annotations

import asyncio
import os
import re
import time

import paho.mqtt.client as mqtt
import pytest

from gridcast.agent import deploy, playback
from gridcast.agent.broker import Mosquitto
from gridcast.agent.sync_responder import SyncResponder
from gridcast.agent.transport import open_transport
from gridcast.hil.bundles import make_bundle
from gridcast.hil.scenario_helpers import run, wait_for
from gridcast.protocol import messages, topics

pytestmark = pytest.mark.sim_only


class TelemetryCollector:
    """A persistent-session subscriber: the broker keeps its QoS 1 messages across restarts."""

    def __init__(self, broker: Mosquitto) -> None:
        self.seqs: dict[str, list[int]] = {}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id="hil-telemetry-collector", clean_session=False)
        self.client.on_connect = lambda c, *a: c.subscribe(
            topics.PREFIX + "/dev/+/" + topics.TELEMETRY, 1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        if broker.ca_file:  # pytest hil --mqtts
            self.client.tls_set(ca_certs=broker.ca_file)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        device = topics.parse_device_topic(msg.topic)[0]
        self.seqs.setdefault(device, []).append(messages.decode(msg.payload).seq)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_telemetry_survives_a_broker_restart_without_a_gap(broker, simulator):
    sim = simulator(2, f"127.0.0.1:{broker.port}")
    collector = TelemetryCollector(broker)
    try:
        wait_for(lambda: all(len(collector.seqs.get(d.id, [])) >= 3 for d in sim.devices),
                 20, "telemetry before the restart")
        before = {d.id: max(collector.seqs[d.id]) for d in sim.devices}
        broker.restart(down_s=2.0)  # devices buffer what they measure meanwhile
        wait_for(lambda: all(max(collector.seqs.get(d.id, [0])) >= before[d.id] + 6
                             for d in sim.devices), 30, "telemetry after the restart")
    finally:
        collector.stop()
    for dev in sim.devices:
        seen = sorted(set(collector.seqs[dev.id]))
        missing = set(range(seen[0], seen[-1] + 1)) - set(seen)
        assert not missing, f"{dev.id} lost telemetry batches {sorted(missing)}"


def test_deploy_a_five_minute_bundle_to_100_devices_in_under_10_s(broker, simulator, key):
    # The unix port compiles the firmware into its heap (141 KB of code since sealed
    # commands, TLS and sections; frozen into flash on a board): 256 KB leaves the data room.
    sim = simulator(100, f"127.0.0.1:{broker.port}", heap="256K")
    ids = [d.id for d in sim.devices]
    bundle = make_bundle(key, 5)

    async def scenario():
        async with open_transport(broker.url) as t:
            await t.wait_online(ids, timeout_s=60)
            started = time.monotonic()
            results = await deploy.deploy(t, ids, bundle, "hil-song", 1)
            return results, time.monotonic() - started

    results, seconds = run(scenario())
    failed = [r.error for r in results if not r.ok]
    print(f"\n{len(bundle)} bytes to {len(ids)} devices in {seconds:.2f} s")
    assert not failed
    assert seconds <= 10.0


def test_heap_in_use_stays_under_64_kb_playing_a_ten_minute_bundle(broker, simulator, key):
    heap_kb = 256
    sim = simulator(1, f"127.0.0.1:{broker.port}", heap=f"{heap_kb}K")
    dev = sim.devices[0]
    bundle = make_bundle(key, 10)
    free: list[int] = []

    async def scenario():
        async with open_transport(broker.url) as t:
            responder = SyncResponder(t)
            responder.start()
            telemetry = t.listen_all()
            await t.wait_online([dev.id])
            assert (await deploy.deploy(t, [dev.id], bundle, "hil-song", 1))[0].ok
            await playback.play(t, [dev.id], "hil-song", lead_s=1.0)
            deadline = time.monotonic() + 12
            while time.monotonic() < deadline:
                try:
                    async with asyncio.timeout(deadline - time.monotonic()):
                        item = await telemetry.get()
                except TimeoutError:
                    break
                if item.leaf == topics.TELEMETRY:
                    free.append(messages.decode(item.payload).free_mem)
            await playback.stop(t, [dev.id])
            await responder.stop()

    run(scenario())
    assert len(free) >= 5
    with open(os.path.join(dev.folder, "device.log")) as f:
        code = int(re.findall(r"heap: code (\d+) bytes", f.read())[-1])
    used_kb = (heap_kb * 1024 - min(free)) / 1024
    data_kb = used_kb - code / 1024
    print(f"\nlive heap while playing a {len(bundle)}-byte (10-minute) bundle: {used_kb:.1f} KB "
          f"of {heap_kb} KB = {code / 1024:.1f} KB of code (frozen into flash on a board) + "
          f"{data_kb:.1f} KB of data")
    assert data_kb <= 64
