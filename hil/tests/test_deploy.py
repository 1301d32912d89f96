"""Deploy and verify; power cuts at random points of a transfer."""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from gridcast.agent import deploy
from gridcast.agent.transport import open_transport
from gridcast.hil.bundles import make_bundle
from gridcast.hil.scenario_helpers import hello_of, run
from gridcast.protocol import bundle_reader, keys

pytestmark = pytest.mark.sim_only
CUTS = int(os.environ.get("GRIDCAST_HIL_CUTS", "100"))


def active_bytes(dev) -> bytes | None:
    path = os.path.join(dev.folder, "bundles", "active.gcb")
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return f.read()


def test_deploy_then_reboot_keeps_the_bundle(broker, simulator, key):
    sim = simulator(2, f"127.0.0.1:{broker.port}")
    bundle = make_bundle(key, 5)
    ids = [d.id for d in sim.devices]

    async def scenario():
        async with open_transport(broker.url) as t:
            await t.wait_online(ids)
            results = await deploy.deploy(t, ids, bundle, "hil-song", 1)
            assert all(r.ok for r in results), [r.error for r in results]
            sim.devices[0].kill()
            sim.devices[0].start()
            hello = await hello_of(t, ids[0])
            assert (hello.active_track, hello.active_version) == ("hil-song", 1)

    run(scenario())
    for dev in sim.devices:
        assert active_bytes(dev) == bundle


def test_a_bundle_for_another_key_is_rejected_and_the_show_stays(broker, simulator, key):
    sim = simulator(1, f"127.0.0.1:{broker.port}")
    good = make_bundle(key, 1)
    forged = make_bundle(b"x" * 32, 1, version=2)
    dev = sim.devices[0]

    async def scenario():
        async with open_transport(broker.url) as t:
            await t.wait_online([dev.id])
            assert (await deploy.deploy(t, [dev.id], good, "hil-song", 1))[0].ok
            bad = (await deploy.deploy(t, [dev.id], forged, "hil-song", 2))[0]
            assert not bad.ok and bad.reason == "unknown_key"

    run(scenario())
    assert active_bytes(dev) == good


def test_power_cuts_at_random_points_never_leave_a_mix(broker, simulator, key):
    """100 power cuts during transfers and activations: after every reboot the device
    holds a valid active bundle that is exactly the old one or exactly the new one."""
    rng = random.Random(42)
    bundles = {v: make_bundle(key, 2, version=v, seed=v) for v in range(1, CUTS + 2)}
    sim = simulator(1, f"127.0.0.1:{broker.port}")
    dev = sim.devices[0]
    outcomes = {"old": 0, "new": 0}

    async def scenario():
        async with open_transport(broker.url) as t:
            await t.wait_online([dev.id])
            assert (await deploy.deploy(t, [dev.id], bundles[1], "hil-song", 1))[0].ok
            version = 1
            for cut in range(CUTS):
                new = bundles[version + 1]
                old = active_bytes(dev)
                # Cut anywhere in the transfer, or after the last byte (during activation).
                cut_at = rng.randint(0, len(new) + len(new) // 8)
                done = asyncio.Event()

                def progress(_dev: str, n: int, sent=[0], cut_at=cut_at,  # noqa: B006
                             done=done) -> None:
                    sent[0] += n
                    if sent[0] >= cut_at and not done.is_set():
                        done.set()
                        dev.kill()

                if cut_at == 0:
                    dev.kill()
                    done.set()
                transfer = asyncio.create_task(deploy.deploy_one(
                    t, dev.id, new, "hil-song", version + 1, progress=progress))
                cut_task = asyncio.create_task(done.wait())
                await asyncio.wait([transfer, cut_task], timeout=60,
                                   return_when=asyncio.FIRST_COMPLETED)
                assert transfer.done() or cut_task.done(), f"cut {cut}: transfer stalled"
                for task in (transfer, cut_task):
                    task.cancel()
                await asyncio.gather(transfer, cut_task, return_exceptions=True)
                dev.kill()
                dev.start()
                await t.wait_online([dev.id], count_earlier=False)
                now = active_bytes(dev)
                assert now is not None and now in (old, new), \
                    f"cut {cut}: active bundle is neither old nor new"
                with open(os.path.join(dev.folder, "bundles", "active.gcb"), "rb") as f:
                    bundle_reader.verify(f, len(now), {keys.key_id(key): key}, 0x000100)
                outcomes["new" if now == new and now != old else "old"] += 1
                if now == new:
                    version += 1

    run(scenario())
    assert sum(outcomes.values()) == CUTS
    assert outcomes["new"] > 0 and outcomes["old"] > 0
