"""Bad input to a device: a corrupt config, unknown and malformed messages, a bundle for
newer firmware. The device answers with a reason, keeps its show, and counts the error."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from gridcast.agent import deploy
from gridcast.agent.transport import open_transport
from gridcast.hil.bundles import make_bundle
from gridcast.hil.scenario_helpers import run, wait_for
from gridcast.protocol import bundle_builder, keys, messages, reasons, topics

pytestmark = pytest.mark.sim_only


async def _replies(t, device_id: str, n: int, timeout_s: float = 10.0) -> list:
    queue = t.queue(device_id)
    out: list[messages.Message] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                out.append(messages.decode((await queue.get()).payload))
        except TimeoutError:
            break
    return out


def test_unknown_and_malformed_messages_get_reasons_and_the_show_stays(broker, simulator,
                                                                       key):
    sim = simulator(1, f"127.0.0.1:{broker.port}")
    dev = sim.devices[0]
    good = make_bundle(key, 1)
    newer = bundle_builder.BundleSource("hil-song", bytes(32), 2, 0, 30.0, 120.0, [0.5, 1.0],
                                        [1, 2], [1.0, 1.0], 50.0, ([0.1], [0.1], [0.1]),
                                        min_firmware=0x020000)
    too_new = bundle_builder.build(newer, key, keys.key_id(key))

    async def scenario():
        async with open_transport(broker.url) as t:
            await t.wait_online([dev.id])
            assert (await deploy.deploy(t, [dev.id], good, "hil-song", 1))[0].ok
            cmd = topics.CMD
            await t.send(dev.id, cmd, b"\x93\x63\x01\x02")  # tag 99: unknown
            await t.send(dev.id, cmd, b"\xc1garbage")  # not msgpack at all
            await t.send(dev.id, cmd, messages.encode("telemetry", seq=1))  # wrong direction
            got = await _replies(t, dev.id, 3)
            result = (await deploy.deploy(t, [dev.id], too_new, "hil-song", 2))[0]
            return got, result

    got, result = run(scenario())
    assert [m.reason for m in got] == [reasons.UNKNOWN_MESSAGE, reasons.MALFORMED,
                                       reasons.UNKNOWN_MESSAGE]
    assert not result.ok and result.reason == "firmware_too_old"
    assert dev.alive
    with open(os.path.join(dev.folder, "bundles", "active.gcb"), "rb") as f:
        assert f.read() == good


def test_a_corrupt_config_keeps_the_device_up_and_says_why(broker, simulator, key):
    sim = simulator(1, f"127.0.0.1:{broker.port}")
    dev = sim.devices[0]
    dev.kill()
    with open(os.path.join(dev.folder, "config.json"), "w") as f:
        f.write(json.dumps({"device_id": "has spaces!", "key_hex": "zz"}))
    dev.start()
    log = Path(dev.folder) / "device.log"
    wait_for(lambda: log.exists() and "config.json" in log.read_text(), 10,
             "the device to log its config error")
    time.sleep(1.0)
    assert dev.alive  # no broker or key it can use, but it runs (serial only) and said why
    assert "device_id must be 1-32" in log.read_text()
