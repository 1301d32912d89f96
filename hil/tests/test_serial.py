"""The serial path: corrupted frames by the thousand, and throughput at 115200 baud."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from gridcast.agent import deploy
from gridcast.agent.transport_serial import SerialTransport
from gridcast.hil.bundles import make_bundle
from gridcast.hil.faults import SerialPair, corrupted_frames
from gridcast.hil.scenario_helpers import run
from gridcast.protocol import messages, reasons

pytestmark = pytest.mark.sim_only


@pytest.fixture
def serial_device(simulator):
    """One simulated device with only a serial link, and the pair of ptys."""

    def start(baud: int | None = None):
        pair = SerialPair(baud).start()
        sim = simulator(1, "", serial_paths=[pair.device_path])
        return sim.devices[0], pair

    made: list[SerialPair] = []

    def wrapped(baud: int | None = None):
        dev, pair = start(baud)
        made.append(pair)
        return dev, pair

    yield wrapped
    for pair in made:
        pair.stop()


def test_ten_thousand_corrupted_frames_are_all_refused(serial_device, key):
    # At a real line rate: an unthrottled pty drops bytes when its reader falls behind.
    dev, pair = serial_device(baud=921600)
    rng = random.Random(5)
    n = 10_000
    payloads = [messages.encode("chunk", transfer_id=rng.randrange(1, 100), offset=0,
                                data=bytes(rng.randrange(256) for _ in range(rng.randrange(40))))
                for _ in range(200)]

    async def scenario():
        async with SerialTransport(pair.agent_path) as t:
            telemetry = t.listen_all()
            port = t.port
            assert port is not None
            for _ in range(0, n, 200):
                port.write(corrupted_frames(payloads, rng))
                await asyncio.sleep(0.01)
            # Every corrupted frame carried a chunk for transfers 1-99, which the device
            # would answer with chunk_nack had it accepted one.
            accepted = 0
            # Still alive and still correct: a real transfer over the same link works.
            bundle = make_bundle(key, 1)
            result = (await deploy.deploy(t, [str(t.device_id)], bundle, "hil-song", 1))[0]
            assert result.ok, result.error
            deadline = time.monotonic() + 30
            refused = 0
            while time.monotonic() < deadline and refused < n:
                item = await telemetry.get()
                msg = messages.decode(item.payload)
                if msg.kind == "chunk_nack" and msg.transfer_id < 100:
                    accepted += 1
                if item.leaf == "telemetry":
                    pairs = msg.error_counts
                    counts = dict(zip(pairs[::2], pairs[1::2], strict=True))
                    refused = counts.get(reasons.BAD_FRAME, 0) + counts.get(reasons.TOO_LARGE, 0)
            return refused, accepted

    refused, accepted = run(scenario())
    assert dev.alive
    # Every corrupted frame was noticed and refused (a corrupted length may make one frame
    # cost two resyncs, hence the small margin); none was accepted.
    assert n <= refused <= n + n // 100
    assert accepted == 0


def test_deploy_over_serial_at_115200_baud_keeps_the_line_busy(serial_device, key):
    _dev, pair = serial_device(baud=115200)
    bundle = make_bundle(key, 5)

    async def scenario():
        async with SerialTransport(pair.agent_path) as t:
            started = time.monotonic()
            result = (await deploy.deploy(t, [str(t.device_id)], bundle, "hil-song", 1))[0]
            return result, time.monotonic() - started

    result, seconds = run(scenario())
    assert result.ok, result.error
    utilisation = len(bundle) / (seconds * 115200 / 10)
    print(f"\n{len(bundle)} bytes in {seconds:.2f} s at 115200 baud: "
          f"{100 * utilisation:.1f}% of the line")
    assert utilisation >= 0.85
